"""Rendezvous (highest-random-weight) hashing: which cluster members scrape which target.

Pure code (no I/O, no asyncio). Every member of a sharded cluster discovers every target and
relabels it the same way; then each one computes, for each target, the `Ring.owners` of the
target's `shard_key` and builds scrape loops only for the targets it owns. No coordination is
needed beyond agreeing on the member list (`collector.cluster` provides it).

Why rendezvous and not a token ring (Alloy, the OTel Target Allocator; prometheus-3x.md §9):
each (target, member) pair gets a pseudo-random weight and the R heaviest members own the
target. A member that joins takes exactly the targets where it is now among the R heaviest
(R/(N+1) of them in expectation), a member that leaves gives away exactly its own; nothing
else moves, with no virtual nodes, no partition table and no load factor to tune. The cost is
O(N) weights per target, computed once per membership change (the scrape pool caches owners).

Identity (`shard_key`): the scrape pool name, then the target's *final* labels, the ones that
relabeling left (``__address__``, ``__scheme__``, ``__metrics_path__``, ``__param_*``, ``job``,
``instance``, any ``__tmp_*`` ...), in their sorted order, serialised ``name 0xFF value 0xFF``
and hashed with BLAKE2b-64, minus three labels:

* ``__scrape_interval__`` and ``__scrape_timeout__``: a config change of the interval must not
  reshuffle every target across the cluster;
* `LOCAL_LABEL` (``__cluster_local__``): the opt-out itself.

Two targets with equal final labels are one target for the scrape pool (it dedupes them), so
they always land on one member. Relabeling changes that change the final labels may move a
target, exactly like they change its identity.

Weights: BLAKE2b-64 of each member name is computed once (its *seed*); the weight of a pair is
MurmurHash3's 64-bit finaliser of ``key XOR seed``, a bijection with full avalanche, so for a
random key the members come out in a uniformly random order and the order of one key says
nothing about another's. Builtin ``hash()`` is never used: it is salted per process and the
members would disagree (STYLE rule 9).

Prometheus counterpart: none (Prometheus shards statically with ``hashmod``, where any change
of the modulus moves almost every target).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from collector.model.labels import SCRAPE_INTERVAL, SCRAPE_TIMEOUT, Labels

__all__ = ["LOCAL_LABEL", "Ring", "Sharder", "Split", "is_local", "shard_key", "weight"]

LOCAL_LABEL = "__cluster_local__"
"""A target whose final labels carry ``__cluster_local__="true"`` is scraped by every member
that discovers it, outside the sharding: a member's own ``/metrics`` (``localhost:9099``), a
node-local exporter. Set it with a relabel rule (``target_label: __cluster_local__``,
``replacement: "true"``); like every ``__`` label it never reaches the samples."""

_EXCLUDED = frozenset({SCRAPE_INTERVAL, SCRAPE_TIMEOUT, LOCAL_LABEL})
_SEP = b"\xff"
_MASK64 = 0xFFFFFFFFFFFFFFFF


def _blake64(data: bytes) -> int:
    return int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "big")


def shard_key(scrape_pool: str, labels: Labels) -> int:
    """The 64-bit sharding identity of a target (see the module docstring for what it covers)."""
    h = hashlib.blake2b(digest_size=8)
    h.update(scrape_pool.encode("utf-8", "surrogateescape"))
    h.update(_SEP)
    for name, value in labels:
        if name in _EXCLUDED:
            continue
        h.update(name.encode("utf-8", "surrogateescape"))
        h.update(_SEP)
        h.update(value.encode("utf-8", "surrogateescape"))
        h.update(_SEP)
    return int.from_bytes(h.digest(), "big")


def is_local(labels: Labels) -> bool:
    """True when the target opted out of sharding (`LOCAL_LABEL` is ``true``)."""
    for name, value in labels:
        if name == LOCAL_LABEL:
            return value == "true"
    return False


def weight(key: int, seed: int) -> int:
    """The weight of one (target key, member seed) pair: fmix64(key XOR seed)."""
    x = key ^ seed
    x ^= x >> 33
    x = (x * 0xFF51AFD7ED558CCD) & _MASK64
    x ^= x >> 33
    x = (x * 0xC4CEB9FE1A85EC53) & _MASK64
    x ^= x >> 33
    return x


class Ring:
    """One membership view: the members, which one is this agent, and the replication factor.

    Immutable; a membership change builds a new ring. Equal rings (same members, self and
    factor) assign every key identically, so re-announcing the same membership moves nothing.
    An empty ring owns nothing: a member that does not know the membership yet, or that is
    not in it (not ready, leaving), scrapes no sharded target.
    """

    __slots__ = ("_seeds", "honor_local", "members", "replication", "self_name")

    def __init__(
        self,
        members: Iterable[str],
        *,
        self_name: str,
        replication: int = 1,
        honor_local: bool = True,
    ) -> None:
        if replication < 1:
            raise ValueError(f"replication factor must be at least 1, got {replication}")
        self.members: tuple[str, ...] = tuple(sorted(set(members)))
        """Every member, sorted and deduplicated (this agent's name only if it is a member)."""
        self.self_name = self_name
        self.replication = replication
        """Members that scrape each target (capped at the member count)."""
        self.honor_local = honor_local
        """Whether `LOCAL_LABEL` targets are every member's (False: hashed like the rest, as
        scrape workers of one agent need: a target scraped by two workers is sent twice)."""
        self._seeds = tuple(
            (_blake64(name.encode("utf-8", "surrogateescape")), name) for name in self.members
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Ring):
            return NotImplemented
        return (self.members, self.self_name, self.replication, self.honor_local) == (
            other.members,
            other.self_name,
            other.replication,
            other.honor_local,
        )

    def __hash__(self) -> int:
        return hash((self.members, self.self_name, self.replication, self.honor_local))

    def __repr__(self) -> str:
        return (
            f"Ring(members={list(self.members)!r}, self_name={self.self_name!r}, "
            f"replication={self.replication})"
        )

    @property
    def is_member(self) -> bool:
        """Whether this agent is one of the members (else it owns nothing)."""
        return self.self_name in self.members

    def owners(self, key: int) -> tuple[str, ...]:
        """The members that scrape the target with this key, heaviest first.

        Ranked by ``(weight, name)`` descending: a tie (two names whose seeds collide, odds
        2**-64) goes to the larger name, so every member still agrees.
        """
        seeds = self._seeds
        if not seeds:
            return ()
        if self.replication == 1:  # the common case: one max, no sort
            return (max((weight(key, seed), name) for seed, name in seeds)[1],)
        ranked = sorted(((weight(key, seed), name) for seed, name in seeds), reverse=True)
        return tuple(name for _, name in ranked[: self.replication])

    def owns(self, key: int) -> bool:
        """Whether this agent is among the owners of ``key``."""
        return self.self_name in self.owners(key)


@dataclass(frozen=True, slots=True, kw_only=True)
class Split:
    """One scrape pool's targets under one ring."""

    own: frozenset[int]
    """Fingerprints of the targets this member scrapes (its share plus the local ones)."""
    shares: Mapping[str, int]
    """Every member's count of the pool's sharded targets (a member with none has 0)."""
    local: int = 0
    """Targets outside the sharding (`LOCAL_LABEL`), scraped here whatever the ring."""


class Sharder:
    """Splits one scrape pool's targets by a ring, remembering owners between syncs.

    A pool re-syncs whenever discovery sends (every few seconds); the owners of a target only
    change with the ring or the target's labels, so they are cached by fingerprint (which
    covers the labels) and the cache is dropped when the ring changes.
    """

    __slots__ = ("_owners", "_ring")

    def __init__(self) -> None:
        self._ring: Ring | None = None
        self._owners: dict[int, tuple[str, ...]] = {}

    def split(self, ring: Ring, targets: Iterable[tuple[int, str, Labels]]) -> Split:
        """``targets`` are ``(fingerprint, scrape pool, final labels)``."""
        if ring != self._ring:
            self._ring = ring
            self._owners = {}
        cached = self._owners
        owners_now: dict[int, tuple[str, ...]] = {}
        shares = dict.fromkeys(ring.members, 0)
        own: list[int] = []
        local = 0
        me = ring.self_name
        honor_local = ring.honor_local
        for fp, pool, labels in targets:
            if honor_local and is_local(labels):
                own.append(fp)
                local += 1
                continue
            owners = cached.get(fp)
            if owners is None:
                owners = ring.owners(shard_key(pool, labels))
            owners_now[fp] = owners
            for name in owners:
                shares[name] += 1
            if me in owners:
                own.append(fp)
        self._owners = owners_now  # vanished targets leave the cache with this sync
        return Split(own=frozenset(own), shares=shares, local=local)
