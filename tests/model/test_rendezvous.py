"""Rendezvous hashing: identity, balance, minimal movement, replication, the owner cache."""

from __future__ import annotations

from collections import Counter

import pytest

from collector.model.labels import Labels
from collector.model.rendezvous import LOCAL_LABEL, Ring, Sharder, is_local, shard_key, weight


def target_labels(i: int) -> Labels:
    """Final labels of a typical relabeled target (sorted, like `Labels`)."""
    address = f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}:9100"
    return (
        ("__address__", address),
        ("__metrics_path__", "/metrics"),
        ("__scheme__", "http"),
        ("__scrape_interval__", "15s"),
        ("__scrape_timeout__", "10s"),
        ("instance", address),
        ("job", "node"),
    )


KEYS = [shard_key("node", target_labels(i)) for i in range(20_000)]
MEMBERS = ("collector-0", "collector-1", "collector-2")


def owners(ring: Ring, keys: list[int] = KEYS) -> list[tuple[str, ...]]:
    return [ring.owners(k) for k in keys]


# ----------------------------------------------------------------------------- identity


def test_hashes_are_pinned_values() -> None:
    """Key, weight and ranking are fixed: members on different versions or hosts must agree."""
    assert shard_key("node", (("__address__", "a:1"), ("job", "node"))) == 0x97A24DF8D15C0058
    assert weight(0, 0) == 0
    assert weight(1, 0) == 0xB456BCFC34C2CB2C
    ring = Ring(reversed(MEMBERS), self_name="x", replication=3)
    assert ring.owners(12345) == ("collector-0", "collector-2", "collector-1")


def test_shard_key_ignores_interval_timeout_and_the_local_label() -> None:
    """Changing the scrape interval or timeout of a target does not move it."""
    base = (("__address__", "a:1"), ("job", "j"))
    with_timing = (
        ("__address__", "a:1"),
        ("__scrape_interval__", "1m"),
        ("__scrape_timeout__", "5s"),
        ("job", "j"),
    )
    assert shard_key("j", base) == shard_key("j", with_timing)
    assert shard_key("j", base) == shard_key("j", ((LOCAL_LABEL, "false"), *base))


@pytest.mark.parametrize(
    ("pool", "labels"),
    [
        ("other", (("__address__", "a:1"), ("job", "j"))),  # another scrape pool
        ("j", (("__address__", "a:2"), ("job", "j"))),  # another address
        ("j", (("__address__", "a:1"), ("__metrics_path__", "/m"), ("job", "j"))),
        ("j", (("__address__", "a:1"), ("__param_module", "x"), ("job", "j"))),
        ("j", (("__address__", "a:1"), ("job", "j"), ("zone", "b"))),  # a target label
    ],
)
def test_shard_key_covers_pool_and_every_other_final_label(pool: str, labels: Labels) -> None:
    """The key changes with the pool name and with any final label that is not excluded."""
    assert shard_key(pool, labels) != shard_key("j", (("__address__", "a:1"), ("job", "j")))


def test_name_value_boundaries_are_unambiguous() -> None:
    """The 0xFF separators keep ``a=bc`` and ``ab=c`` apart."""
    assert shard_key("j", (("a", "bc"),)) != shard_key("j", (("ab", "c"),))
    assert shard_key("j", (("a", "b"),)) != shard_key("ja", (("", "b"),))


def test_is_local_only_for_true() -> None:
    """Only ``__cluster_local__="true"`` opts a target out of sharding."""
    assert is_local(((LOCAL_LABEL, "true"), ("job", "j")))
    assert not is_local(((LOCAL_LABEL, "yes"),))
    assert not is_local((("job", "j"),))


# ----------------------------------------------------------------------------- the ring


def test_empty_ring_and_non_member_own_nothing() -> None:
    """No members: no owners; a self outside the members owns no key."""
    assert Ring((), self_name="a").owners(1) == ()
    outside = Ring(MEMBERS, self_name="collector-9")
    assert not outside.is_member
    assert not any(outside.owns(k) for k in KEYS[:1000])


def test_rings_compare_by_members_self_and_factor() -> None:
    """Order and duplicates of the input do not matter; self and the factor do."""
    a = Ring(["b", "a", "a"], self_name="a")
    assert a == Ring(["a", "b"], self_name="a")
    assert hash(a) == hash(Ring(["a", "b"], self_name="a"))
    assert a.members == ("a", "b")
    assert a != Ring(["a", "b"], self_name="b")
    assert a != Ring(["a", "b"], self_name="a", replication=2)
    assert a != "a"
    assert "members=['a', 'b']" in repr(a)


def test_replication_factor_must_be_positive() -> None:
    """R = 0 is refused."""
    with pytest.raises(ValueError, match="at least 1"):
        Ring(MEMBERS, self_name="a", replication=0)


def test_every_key_has_exactly_one_owner_and_shares_are_balanced() -> None:
    """R = 1: one owner per key, each member within 5 % of a third of 20 000 keys."""
    got = owners(Ring(MEMBERS, self_name="x"))
    assert all(len(o) == 1 for o in got)
    counts = Counter(o[0] for o in got)
    assert set(counts) == set(MEMBERS)
    for count in counts.values():
        assert abs(count - len(KEYS) / 3) < 0.05 * len(KEYS) / 3


def test_adding_a_member_moves_only_to_it_and_about_one_in_n_plus_one() -> None:
    """3 -> 4: a key moves only to the new member, and about a quarter of them do."""
    before = owners(Ring(MEMBERS, self_name="x"))
    after = owners(Ring((*MEMBERS, "collector-3"), self_name="x"))
    moved = [(b, a) for b, a in zip(before, after, strict=True) if a != b]
    assert all(a == ("collector-3",) for _, a in moved)
    assert 0.23 < len(moved) / len(KEYS) < 0.27


def test_removing_a_member_moves_only_its_own_keys() -> None:
    """4 -> 3: exactly the keys of the removed member move, and nothing else."""
    four = (*MEMBERS, "collector-3")
    before = owners(Ring(four, self_name="x"))
    after = owners(Ring(MEMBERS, self_name="x"))
    for b, a in zip(before, after, strict=True):
        assert (a != b) == (b == ("collector-3",))


def test_replication_gives_distinct_owners_and_a_join_replaces_at_most_one() -> None:
    """R = 2: two distinct owners per key; a join swaps in the new member for one old owner."""
    before = owners(Ring(MEMBERS, self_name="x", replication=2))
    after = owners(Ring((*MEMBERS, "collector-3"), self_name="x", replication=2))
    changed = 0
    for b, a in zip(before, after, strict=True):
        assert len(set(b)) == len(set(a)) == 2
        if set(a) != set(b):
            changed += 1
            assert set(a) - set(b) == {"collector-3"}
            assert len(set(b) - set(a)) == 1
    # The new member is among the top 2 of 4 for about half of the keys.
    assert 0.47 < changed / len(KEYS) < 0.53
    # Per (key, owner) assignment, a quarter moved.
    assert changed / (2 * len(KEYS)) == pytest.approx(0.25, abs=0.02)


def test_replication_beyond_members_means_everyone() -> None:
    """R larger than the member count: every member owns every key."""
    ring = Ring(["a", "b"], self_name="a", replication=5)
    assert sorted(ring.owners(KEYS[0])) == ["a", "b"]
    assert ring.owns(KEYS[0])


def test_owners_are_the_heaviest_members() -> None:
    """The definition: the R members of greatest weight, heaviest first."""
    ring = Ring(MEMBERS, self_name="x", replication=2)
    for key in KEYS[:200]:
        ranked = sorted(MEMBERS, key=lambda m: weight(key, _seed(ring, m)), reverse=True)
        assert ring.owners(key) == tuple(ranked[:2])
        one = Ring(MEMBERS, self_name="x").owners(key)
        assert one == (ranked[0],)


def _seed(ring: Ring, member: str) -> int:
    (seed,) = [s for s, name in ring._seeds if name == member]
    return seed


# ----------------------------------------------------------------------------- the sharder


def test_sharder_splits_counts_every_share_and_keeps_local_targets() -> None:
    """Own fingerprints, every member's count, and local targets kept whatever the ring."""
    items = [(i, "node", target_labels(i)) for i in range(300)]
    items.append((1000, "self", (("__address__", "localhost:9099"), (LOCAL_LABEL, "true"))))
    rings = {m: Ring(MEMBERS, self_name=m) for m in MEMBERS}
    splits = {m: Sharder().split(rings[m], items) for m in MEMBERS}
    owned = [fp for s in splits.values() for fp in s.own if fp != 1000]
    assert sorted(owned) == list(range(300)), "each target owned by exactly one member"
    for m, s in splits.items():
        assert 1000 in s.own
        assert s.local == 1
        assert s.shares[m] == len(s.own) - 1
        assert s.shares == splits["collector-0"].shares, "every member counts the same shares"
    assert sum(splits["collector-0"].shares.values()) == 300


def test_sharder_cache_follows_the_ring() -> None:
    """A new ring recomputes owners; targets that vanished leave the cache."""
    sharder = Sharder()
    items = [(i, "node", target_labels(i)) for i in range(100)]
    alone = sharder.split(Ring(["a"], self_name="a"), items)
    assert alone.own == frozenset(range(100))
    pair = sharder.split(Ring(["a", "b"], self_name="a"), items)
    assert 30 < len(pair.own) < 70
    assert pair.shares["a"] + pair.shares["b"] == 100
    expected = Counter(
        Ring(["a", "b"], self_name="a").owners(shard_key("node", labels))[0]
        for _, _, labels in items[:10]
    )
    few = sharder.split(Ring(["a", "b"], self_name="a"), items[:10])
    assert few.shares == {"a": expected["a"], "b": expected["b"]}
    assert len(sharder._owners) == 10
    assert sharder.split(Ring((), self_name="a"), items).own == frozenset()
