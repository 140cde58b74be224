"""`ScrapeCache`, the per-target hot path, against its own API (no loop, no HTTP).

The loop tests (`test_loop.py`, `test_limits.py`, `test_fastpath_loop.py`) check what a
scrape commits; these check what the cache promises its caller: a hit costs no label parsing
and no relabeling (on the bulk path and on the per-sample one), drop verdicts are cached, the
``prev``/``cur`` staleness sets and `stale_markers`, `rollback`/`abandon`, eviction and the
forced-flush boundary, ref release (also of refs another holder keeps), timestamps and value
bits passed through untouched, metadata read only when asked for, and the bulk steady-state
path leaving exactly what the per-sample path leaves.
"""

from __future__ import annotations

import re
import struct
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from collector.errors import ParseError, ScrapeError
from collector.model.textparse import Metadata, parse
from collector.model.value import NORMAL_NAN_BITS, STALE_NAN_BITS, float_bits, is_stale
from collector.scrape.cache import (
    MAX_AHEAD_MS,
    AppendOptions,
    AppendResult,
    Exposition,
    ScrapeCache,
)
from collector.storage.appender import Sample
from collector.storage.series import NEVER, SeriesRegistry

NOW = 1_700_000_000_000
TARGET = (("instance", "h:1"), ("job", "j"))
_PAIR = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="([^"]*)"')


class CountingRelabeler:
    """A metric relabeler that counts its calls and drops ``__name__`` values in ``drop``."""

    def __init__(self, *drop: str) -> None:
        self.drop = set(drop)
        self.calls = 0

    def process(self, labels: dict[str, str]) -> dict[str, str] | None:
        """Count, then keep or drop."""
        self.calls += 1
        return None if labels.get("__name__") in self.drop else labels

    def __bool__(self) -> bool:
        return True


@dataclass
class Exp:
    """A hand-made `cache.Exposition` that counts ``labels`` and ``metadata`` calls."""

    rows: list[tuple[bytes, float, int | None]]
    meta: Mapping[str, object] = field(default_factory=dict)
    label_calls: int = 0
    meta_reads: int = 0
    keys: list[bytes] | None = None
    """The keys list `columns` hands out, when set: the same object every pass, as the
    steady-state parser hands out (else a new list each call)."""

    @property
    def samples(self) -> list[tuple[bytes, float, int | None]]:
        """The rows."""
        return self.rows

    def columns(self) -> tuple[list[bytes], list[float], list[int | None] | None]:
        """Keys, values and (when any is explicit) timestamps."""
        stamps = [t for _, _, t in self.rows]
        explicit = any(t is not None for t in stamps)
        return (
            [k for k, _, _ in self.rows] if self.keys is None else self.keys,
            [v for _, v, _ in self.rows],
            (stamps if explicit else None),
        )

    def labels(self, key: bytes) -> list[tuple[str, str]]:
        """``name{a="b",...}`` split as written, repeats included (counted: misses only)."""
        self.label_calls += 1
        text = key.decode()
        return [("__name__", text.split("{")[0]), *_PAIR.findall(text)]

    @property
    def metadata(self) -> Mapping[str, object]:
        """Counted reads."""
        self.meta_reads += 1
        return self.meta


def exp(*rows: tuple[bytes, float] | tuple[bytes, float, int | None]) -> Exp:
    """An `Exp` from ``(key, value[, ts])`` rows."""
    return Exp([(r[0], r[1], r[2] if len(r) == 3 else None) for r in rows])


class Scrapes:
    """One cache plus the bookkeeping of successive passes (``now`` advances 15 s each)."""

    def __init__(self, registry: SeriesRegistry | None = None, **options: Any) -> None:
        self.registry = SeriesRegistry() if registry is None else registry  # empty is falsy
        self.last_ts = self.registry.last_ts
        self.cache = ScrapeCache(registry=self.registry)
        options.setdefault("target_labels", TARGET)
        self.options = AppendOptions(**options)
        self.now = NOW
        self.committed: list[tuple[dict[str, str], float, int]] = []
        """The last ended pass's batch with refs resolved (before eviction, as a commit is)."""

    def append(
        self, e: Exposition, *, end: bool = True, flush: bool = True
    ) -> tuple[AppendResult, list[Sample]]:
        """One pass: append, staleness markers, then `iter_done` (unless ``end`` is False)."""
        batch: list[Sample] = []
        result = self.cache.append(e, now_ms=self.now, options=self.options, batch=batch)
        if end:
            self.cache.stale_markers(self.now, batch)
            self.committed = self.named(batch)
            self.cache.iter_done(flush=flush and result.error is None)
            self.now += 15_000
        return result, batch

    def named(self, batch: list[Sample]) -> list[tuple[dict[str, str], float, int]]:
        """The batch with refs resolved to label dicts."""
        out = []
        for ref, value, ts in batch:
            labels = self.registry.labels(ref)
            assert labels is not None
            out.append((dict(labels), value, ts))
        return out


def test_hits_skip_label_parsing_and_relabeling() -> None:
    """A second pass over the same keys calls neither labels() nor the relabeler, on the bulk
    path and on the per-sample path (forced here by a sample limit)."""
    for limit in (0, 100):
        relabeler = CountingRelabeler()
        s = Scrapes(metric_relabeler=relabeler, sample_limit=limit)
        first = exp((b'a{x="1"}', 1.0), (b"b", 2.0))
        result, _ = s.append(first)
        assert (first.label_calls, relabeler.calls, result.series_added) == (2, 2, 2)
        again = exp((b'a{x="1"}', 3.0), (b"b", 4.0))
        result, batch = s.append(again)
        assert (again.label_calls, relabeler.calls, result.series_added) == (0, 2, 0)
        assert result == AppendResult(scraped=2, post_relabel=2)
        assert [v for _, v, _ in batch] == [3.0, 4.0]


def test_target_labels_are_merged_once_per_series() -> None:
    """Series labels are body labels plus target labels, sorted; the ref is reused on hits."""
    s = Scrapes()
    _, batch = s.append(exp((b'm{job="inner",a=""}', 1.0)))
    ((labels, _, _),) = s.named(batch)
    assert labels == {"__name__": "m", "exported_job": "inner", "instance": "h:1", "job": "j"}
    _, again = s.append(exp((b'm{job="inner",a=""}', 2.0)))
    assert again[0][0] == batch[0][0]


@pytest.mark.parametrize(
    ("key", "honor", "expected"),
    [
        pytest.param(b'm{job=""}', False, {"job": "j"}, id="empty-scraped-value-is-absent"),
        pytest.param(b'm{job=""}', True, {"job": "j"}, id="honor-fills-an-empty-value"),
        pytest.param(b'm{instance="x"}', True, {"instance": "x", "job": "j"}, id="honor-keeps"),
        pytest.param(
            b'm{instance="i",job="x",exported_instance="e"}',
            False,
            {
                "instance": "h:1",
                "job": "j",
                "exported_job": "x",
                "exported_instance": "e",
                "exported_exported_instance": "i",
            },
            id="shorter-name-moves-first",
        ),
    ],
)
def test_honor_labels_merge(key: bytes, honor: bool, expected: dict[str, str]) -> None:
    """honor_labels: scraped labels win unless empty; otherwise target labels win and the
    scraped ones move to the first free exported_* name, shortest names first."""
    s = Scrapes(honor_labels=honor)
    _, batch = s.append(exp((key, 1.0)))
    ((labels, _, _),) = s.named(batch)
    assert labels == {"__name__": "m", "instance": "h:1", **expected}


def test_exported_names_are_taken_shortest_first() -> None:
    """Conflicts are resolved shortest name first, whatever the target's label order: here
    ``job`` takes ``exported_exported_job`` before ``exported_job`` can (§4.5 EMPIRICAL)."""
    target = (("exported_job", "t2"), ("instance", "h:1"), ("job", "j"))
    s = Scrapes(target_labels=target)
    _, batch = s.append(exp((b'm{job="x",exported_job="y"}', 1.0)))
    ((labels, _, _),) = s.named(batch)
    assert labels == {
        "__name__": "m",
        "instance": "h:1",
        "job": "j",
        "exported_job": "t2",
        "exported_exported_job": "x",
        "exported_exported_exported_job": "y",
    }


def test_drop_verdicts_are_cached() -> None:
    """A dropped series is cached as 0: relabeled once, never counted post-relabeling, kept
    while it is seen and forgotten (without a registry release) once it is not."""
    relabeler = CountingRelabeler("gone")
    s = Scrapes(metric_relabeler=relabeler)
    result, batch = s.append(exp((b"keep", 1.0), (b"gone", 2.0)))
    assert (result.scraped, result.post_relabel, len(batch)) == (2, 1, 1)
    assert s.cache.series[b"gone"] == 0
    result, _ = s.append(exp((b"keep", 1.0), (b"gone", 2.0)))
    assert (relabeler.calls, result.post_relabel) == (2, 1)
    assert b"gone" in s.cache.series
    s.append(exp((b"keep", 1.0)))
    assert b"gone" not in s.cache.series
    assert len(s.registry) == 1


def test_staleness_markers_for_series_that_disappear() -> None:
    """stale_markers writes one marker (stale NaN bits, scrape time) per series of the last
    pass missing from this one; the next pass has nothing more to mark."""
    s = Scrapes()
    s.append(exp((b"a", 1.0), (b"b", 2.0)))
    _, batch = s.append(exp((b"a", 1.0)))
    gone = [(labels["__name__"], ts) for labels, value, ts in s.committed if is_stale(value)]
    assert gone == [("b", NOW + 15_000)]
    assert float_bits(batch[-1][1]) == STALE_NAN_BITS
    assert s.cache.evicted == 1
    _, batch = s.append(exp((b"a", 1.0)))
    assert not any(is_stale(v) for _, v, _ in batch)


def test_marker_yields_to_a_newer_sample() -> None:
    """A series whose last sample is at or after the marker time gets no marker."""
    s = Scrapes()
    s.append(exp((b"a", 1.0)), end=False)
    s.cache.iter_done(flush=True)
    ref = s.cache.series[b"a"]
    s.last_ts[ref] = s.now + 60_000  # e.g. another loop wrote a later sample of the series
    batch: list[Sample] = []
    assert s.cache.stale_markers(s.now + 15_000, batch) == 0
    assert batch == []


@pytest.mark.parametrize("track", [False, True])
def test_explicit_timestamps_are_tracked_only_when_asked(track: bool) -> None:
    """Samples with explicit timestamps get staleness markers only with
    track_timestamps_staleness; they keep their timestamps either way."""
    s = Scrapes(track_timestamps_staleness=track)
    _, batch = s.append(exp((b"a", 1.0, NOW - 5_000)))
    assert batch[0][2] == NOW - 5_000
    _, batch = s.append(exp())
    assert len(batch) == (1 if track else 0)


def test_timestamps_bounds_order_and_honor() -> None:
    """now+10m is the last accepted timestamp; equal or older than the series' last sample is
    out of order; honor_timestamps=False stamps every sample with the scrape time."""
    s = Scrapes()
    result, batch = s.append(
        exp((b"ok", 1.0, NOW + MAX_AHEAD_MS), (b"late", 1.0, NOW + MAX_AHEAD_MS + 1)),
        end=False,
    )
    assert (result.out_of_bounds, [t for _, _, t in batch]) == (1, [NOW + MAX_AHEAD_MS])
    s.cache.iter_done(flush=True)
    result, batch = s.append(exp((b"ok", 2.0, NOW + MAX_AHEAD_MS)), end=False)
    assert (result.out_of_order, batch) == (1, [])
    s.cache.iter_done(flush=True)
    s = Scrapes(honor_timestamps=False)
    _, batch = s.append(exp((b"a", 1.0, 5)))
    assert batch[0][2] == NOW


def test_duplicates_in_one_pass() -> None:
    """Without timestamps the first sample of a series wins and the rest are duplicates; with
    increasing explicit timestamps every sample is kept."""
    s = Scrapes()
    result, batch = s.append(exp((b"a", 1.0), (b"b", 5.0), (b"a", 2.0)))
    assert (result.duplicates, result.post_relabel, [v for _, v, _ in batch]) == (1, 3, [1.0, 5.0])
    result, batch = s.append(exp((b"a", 1.0, s.now + 1), (b"a", 2.0, s.now + 2)))
    assert (result.duplicates, [v for _, v, _ in batch if not is_stale(v)]) == (0, [1.0, 2.0])


def test_values_pass_through_bit_for_bit() -> None:
    """The cache never touches a value: NaN payloads arrive as given."""
    odd_nan: float = struct.unpack("<d", struct.pack("<Q", 0x7FF8000000000123))[0]
    s = Scrapes()
    parsed = parse(b"a NaN\nb 1\n", openmetrics=False)
    _, batch = s.append(Exp([*parsed.samples, (b"c", odd_nan, None)]))
    assert [float_bits(v) for _, v, _ in batch] == [
        NORMAL_NAN_BITS,
        float_bits(1.0),
        0x7FF8000000000123,
    ]


def test_sample_limit_counts_and_keeps_series_alive() -> None:
    """Samples past sample_limit are not appended but their series stay cached and seen
    (not evicted), also when the series is new."""
    s = Scrapes(sample_limit=2)
    result, batch = s.append(exp((b"a", 1.0), (b"b", 1.0), (b"c", 1.0)))
    assert (len(batch), result.sample_limit_exceeded, result.over_sample_limit) == (2, True, 1)
    assert result.series_added == 2
    assert s.cache.series[b"c"] != 0
    assert s.cache.evicted == 0
    assert b"c" in s.cache.series


def test_series_error_stops_the_pass_and_rollback_restores_timestamps() -> None:
    """A series error ends the pass (counted as scraped, not post-relabeling); rollback undoes
    the explicit-timestamp updates; the series appended before keep their tracking."""
    s = Scrapes()
    s.append(exp((b"a", 1.0, NOW - 10_000), (b"b", 1.0), (b"c", 1.0)))
    ref_a = s.cache.series[b"a"]
    result, _ = s.append(
        exp((b"a", 2.0, NOW + 1_000), (b"b", 2.0), (b'bad{x="1",x="2"}', 1.0), (b"c", 1.0)),
        end=False,
    )
    assert isinstance(result.error, ScrapeError)
    assert str(result.error) == 'label name "x" is not unique: invalid sample'
    assert (result.scraped, result.post_relabel) == (3, 2)
    assert s.last_ts[ref_a] == NOW + 1_000
    s.cache.rollback()
    assert s.last_ts[ref_a] == NOW - 10_000
    batch: list[Sample] = []
    assert s.cache.stale_markers(s.now, batch) == 1  # c; b was appended: no marker (§4.8)
    assert s.named(batch)[0][0]["__name__"] == "c"


def test_parse_error_from_labels_stops_the_pass() -> None:
    """A labels() ParseError (duplicate names found by the parser) is the pass's error."""
    body = b'ok 1\nm{a="1",a="2"} 2\n'
    result, _ = Scrapes().append(parse(body, openmetrics=False))
    assert isinstance(result.error, ParseError)
    assert (result.scraped, result.post_relabel) == (2, 1)


def test_abandon_keeps_the_previous_pass() -> None:
    """A cancelled pass is forgotten (its explicit timestamps too): the last completed pass is
    what the next one (a successor loop reusing the cache) is compared with."""
    s = Scrapes()
    s.append(exp((b"a", 1.0), (b"b", 1.0), (b"c", 1.0, NOW - 1)))
    prev = set(s.cache.prev)
    ref_c = s.cache.series[b"c"]
    s.append(exp((b"a", 2.0), (b"c", 2.0, s.now)), end=False)
    s.cache.abandon()
    assert (s.cache.cur, s.cache.prev, s.last_ts[ref_c]) == (set(), prev, NOW - 1)
    s.now += 15_000
    s.append(exp((b"a", 3.0)))
    assert [labels["__name__"] for labels, v, _ in s.committed if is_stale(v)] == ["b"]


def test_forced_flush_boundary() -> None:
    """After failures the cache flushes once it holds more than 2 x (size at the last
    success) + 1000 entries, and says so."""
    s = Scrapes()
    s.append(exp((b"a", 1.0)))
    many = exp(*[(b'm{i="%d"}' % i, 1.0) for i in range(1001)])
    s.append(many, flush=False)
    assert len(s.cache) == 1002  # 1 + 1001 <= 2 * 1 + 1000: kept
    more = exp(*[(b'n{i="%d"}' % i, 1.0) for i in range(1)])
    s.cache.append(more, now_ms=s.now, options=s.options, batch=[])
    assert s.cache.iter_done(flush=False) is True
    assert len(s.cache) == 1  # only what this pass saw survives


def test_refs_are_released_but_shared_ones_survive() -> None:
    """Eviction and release_all release refs and forget last timestamps of freed series; a
    ref another holder still has stays alive, with its timestamp."""
    registry = SeriesRegistry()
    other = Scrapes(registry)
    other.append(exp((b"shared", 1.0)))
    s = Scrapes(registry)
    s.append(exp((b"shared", 1.0), (b"own", 1.0)))
    shared, own = s.cache.series[b"shared"], s.cache.series[b"own"]
    assert shared == other.cache.series[b"shared"]
    s.last_ts[shared] = 5
    s.append(exp((b"shared", 2.0)))  # "own" evicted
    assert registry.labels(own) is None
    assert s.last_ts[own] == NEVER
    s.cache.release_all()
    assert (len(s.cache), s.cache.prev) == (0, set())
    assert registry.labels(shared) is not None
    assert s.last_ts[shared] == s.now - 15_000  # the last pass's sample (now has moved on)
    other.cache.release_all()
    assert len(registry) == 0


def test_metadata_is_read_only_when_asked() -> None:
    """metadata_from keeps a source; the exposition's metadata is built on the first read,
    once; a structure-only source is preferred; the setter replaces it."""
    s = Scrapes()
    e = Exp([], meta={"a": Metadata(type="gauge")})
    s.cache.metadata_from(e)
    assert e.meta_reads == 0
    assert s.cache.metadata == {"a": Metadata(type="gauge")}
    assert s.cache.metadata == {"a": Metadata(type="gauge")}
    assert e.meta_reads == 1
    s.cache.metadata_from(parse(b"# TYPE c counter\nc 1\n", openmetrics=False))
    assert s.cache.metadata == {"c": Metadata(type="counter")}
    s.cache.metadata = {"z": Metadata()}
    assert s.cache.metadata == {"z": Metadata()}


# ----------------------------------------------------------------------------- bulk vs per-sample
_KEYS = [b"a", b"b", b'c{x="1"}', b'c{x="2"}', b"d", b"e"]
_ROW = st.tuples(
    st.integers(0, len(_KEYS) - 1),
    st.sampled_from([1.0, 2.5, -0.0]),
    st.one_of(st.none(), st.none(), st.integers(-20_000, 20_000)),
)
_PASS = st.tuples(
    st.lists(st.lists(_ROW, max_size=8), min_size=1, max_size=3),  # one append per segment
    st.sampled_from(["flush", "flush", "fail", "abandon"]),
    st.booleans(),  # explicit timestamps allowed (else the pass may go in bulk)
)
Pass = tuple[list[list[tuple[int, float, int | None]]], str, bool]


def _run_passes(
    passes: list[Pass], *, sample_limit: int, same_keys: bool = False
) -> list[tuple[object, ...]]:
    """Every observable of each pass: results, batch (markers sorted: a set's order), the
    cache's series, cur/prev, evictions and the timestamps it keeps. With ``same_keys`` an
    append whose keys were seen before gets the very same keys list (`IncrementalParser`)."""
    s = Scrapes(sample_limit=sample_limit)
    seen: list[tuple[object, ...]] = []
    lists: dict[tuple[bytes, ...], list[bytes]] = {}
    for segments, end, stamped in passes:
        batch: list[Sample] = []
        results: list[tuple[object, ...]] = []
        for rows in segments:
            e = exp(
                *[
                    (_KEYS[k], v, None if t is None or not stamped else s.now + t)
                    for k, v, t in rows
                ]
            )
            if same_keys:
                keys = tuple(_KEYS[k] for k, _, _ in rows)
                e.keys = lists.setdefault(keys, list(keys))
            result = s.cache.append(e, now_ms=s.now, options=s.options, batch=batch)
            results.append(
                (result.scraped, result.post_relabel, result.series_added, result.duplicates)
            )
            results.append((result.out_of_order, result.out_of_bounds, result.error))
            if result.error is not None:
                break
        state = (sorted(s.cache.cur), sorted(s.cache.prev))
        if end == "abandon":
            s.cache.abandon()
            markers: list[Sample] = []
        else:
            s.cache.stale_markers(s.now, batch)
            markers = sorted(b for b in batch if is_stale(b[1]))
            s.cache.iter_done(flush=end == "flush")
        samples = [b for b in batch if not is_stale(b[1])]
        last = {ref: ts for ref, ts in enumerate(s.last_ts) if ts != NEVER}
        after = (sorted(s.cache.cur), sorted(s.cache.prev), last)
        seen.append(
            (results, samples, markers, state, dict(s.cache.series), s.cache.evicted, after)
        )
        s.now += 15_000
    return seen


@given(st.lists(_PASS, min_size=1, max_size=8))
@settings(max_examples=300, deadline=None)
def test_bulk_path_is_the_per_sample_path(passes: list[Pass]) -> None:
    """The bulk steady-state path (with its list form of ``cur``/``prev``) and the per-sample
    path (forced by a sample limit nothing reaches) leave every observable identical, over
    passes of several appends (stream segments), failed and abandoned passes."""
    per_sample = _run_passes(passes, sample_limit=10**6)
    assert _run_passes(passes, sample_limit=0) == per_sample
    assert _run_passes(passes, sample_limit=0, same_keys=True) == per_sample


def test_the_same_keys_list_reuses_its_refs_until_the_cache_changes() -> None:
    """The steady-state parser's keys list, handed in again, is not looked up again; once an
    entry of the cache changed (here an eviction) it is, and the evicted series comes back
    with a new ref, counted as added."""
    s = Scrapes()
    keys = [b"a", b"b", b"c"]

    def same(*values: float) -> Exp:
        e = exp(*zip(keys, values, strict=True))
        e.keys = keys
        return e

    s.append(same(1.0, 1.0, 1.0))
    s.append(same(2.0, 2.0, 2.0))  # bulk: resolved and remembered
    looked_up: list[bytes] = []
    lookup = s.cache.series.get
    s.cache.series = _Spy(s.cache.series, looked_up)
    s.append(same(3.0, 3.0, 3.0))  # bulk with the remembered refs: no lookup
    assert looked_up == []
    assert [v for _, v, _ in s.committed] == [3.0, 3.0, 3.0]
    old_b = lookup(b"b")
    s.append(exp((b"a", 4.0), (b"c", 4.0)))  # b goes stale and is evicted
    assert b"b" not in s.cache.series
    result, _ = s.append(same(5.0, 5.0, 5.0))
    assert result.series_added == 1
    assert s.cache.series[b"b"] != old_b
    assert sorted((labels["__name__"], v) for labels, v, _ in s.committed) == [
        ("a", 5.0),
        ("b", 5.0),
        ("c", 5.0),
    ]


class _Spy(dict[bytes, int]):
    """The cache's series dict, recording the keys ``get`` was asked for."""

    def __init__(self, data: dict[bytes, int], log: list[bytes]) -> None:
        super().__init__(data)
        self.log = log

    def get(self, key: bytes, default: Any = None) -> Any:
        """Record, then look up."""
        self.log.append(key)
        return super().get(key, default)


def test_passes_keep_their_tracked_refs_as_a_list_not_a_set() -> None:
    """Between passes the cache holds the last pass's tracked refs as one list (8 B a series),
    whether that pass went in bulk (its resolved refs, no copy) or per sample (its set made a
    list: every target's first scrape is one), and staleness is computed right from it."""
    s = Scrapes()
    keys = [b'm{i="%d"}' % i for i in range(2000)]
    s.append(exp(*[(k, 1.0) for k in keys]))  # first scrape: per sample
    assert type(s.cache._prev) is list
    assert len(s.cache._prev) == 2000
    assert not s.cache._cur
    s.append(exp(*[(k, 2.0) for k in keys]))  # bulk
    s.append(exp(*[(k, 3.0) for k in keys]))  # bulk again: no markers, nothing evicted
    assert s.committed[-1][1] == 3.0
    assert not any(is_stale(v) for _, v, _ in s.committed)
    bulk = s.cache._bulk
    assert bulk is not None
    assert s.cache._prev is bulk[1]
    result, _ = s.append(exp(*[(k, 4.0) for k in keys[:-1]], (keys[0], 5.0)))
    assert result.duplicates == 1
    assert [labels["i"] for labels, v, _ in s.committed if is_stale(v)] == ["1999"]
    assert type(s.cache._prev) is list
    assert len(s.cache.prev) == 1999
    assert not s.cache._cur
    s.append(exp(*[(k, 6.0) for k in keys[1:]]))  # per sample: keys[0] goes stale
    assert [labels["i"] for labels, v, _ in s.committed[-1:] if is_stale(v)] == ["0"]


def test_tracked_is_the_live_set_after_a_bulk_append() -> None:
    """`tracked` hands appenders beside `append` (native histograms) the pass's set, with a
    bulk append's refs in it; what they add there counts as tracked for the rest of the pass."""
    for add_b in (False, True):
        s = Scrapes()
        s.append(exp((b"a", 1.0), (b"b", 1.0)))
        s.append(exp((b"a", 2.0)), end=False)  # bulk: b is not in this body
        ref_a, ref_b = s.cache.series[b"a"], s.cache.series[b"b"]
        tracked = s.cache.tracked()
        assert tracked == {ref_a}
        assert s.cache.tracked() is tracked
        result = s.cache.append(exp((b"a", 3.0)), now_ms=s.now, options=s.options, batch=[])
        assert result.duplicates == 1
        if add_b:
            tracked.add(ref_b)  # as a histogram appender does for its series
        batch: list[Sample] = []
        s.cache.stale_markers(s.now, batch)
        assert [ref for ref, v, _ in batch if is_stale(v)] == ([] if add_b else [ref_b])
