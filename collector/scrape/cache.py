"""The per-target scrape cache and the per-sample append path: THE hot path.

Steady state is the same series with new values, so everything is keyed by the raw series
bytes the parser hands out (``b'name{a="b"}'``): a hit is one dict lookup giving the series
``ref``, and the sample becomes one ``(ref, value, ts_ms)`` tuple in the scrape's batch. Label
parsing, target-label merging (honor_labels / ``exported_``), metric relabeling, validation,
label limits and ``SeriesRegistry.acquire`` happen only on a miss (`ScrapeCache._add_series`).

Per sample on a hit: the cache lookup, a duplicate check against this scrape's tracked set,
the optional sample limit, the out-of-bounds check, the out-of-order check against the series'
last committed timestamp (`SeriesRegistry.last_ts`, by ref, as the agent storage keeps one per
series),
and a set insert for staleness tracking. No per-sample objects beyond the tuple, no logging.

Staleness follows Prometheus's ``seriesPrev``/``seriesCur`` exactly, quirks included (spec §4.8):
a series is *tracked* (``cur``) when one of its samples without an explicit timestamp was
appended (with ``track_timestamps_staleness`` explicit ones too); `stale_markers` writes a marker
for every series in ``prev`` that is not in ``cur``; `iter_done` makes ``cur`` the next ``prev``.
``prev`` is always a list (8 bytes a series, not a set's 65): a pass that went in bulk keeps the
refs list it resolved, so the steady state holds one list and compares two lists where a set
difference would be; a per-sample pass's set is made a list at its end.

The options and result types and the miss-path series rules (target labels, name validity,
label limits) live in `collector.scrape.append_rules`; their names import from here as well.

Prometheus counterpart: ``scrapeCache`` and ``scrapeLoop.append`` in ``scrape/scrape.go``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from itertools import repeat
from typing import TYPE_CHECKING, Protocol, cast

from collector.errors import CollectorError, ParseError, ScrapeError
from collector.model.labels import from_dict
from collector.model.value import STALE_NAN
from collector.native import BulkAppend
from collector.native import bulk_append as _c_bulk_append
from collector.scrape.append_rules import (
    MAX_AHEAD_MS,
    AppendOptions,
    AppendResult,
    Exposition,
    LabelLimitError,
    attach_target_labels,
    validate,
)
from collector.storage.appender import Sample
from collector.storage.series import NEVER, SeriesRegistry

if TYPE_CHECKING:
    from collector.scrape.limits import SeriesLimiter

__all__ = [
    "MAX_AHEAD_MS",
    "AppendOptions",
    "AppendResult",
    "Exposition",
    "LastTimestamps",
    "ScrapeCache",
]

LastTimestamps = list[int]
"""By series ref, the timestamp (ms) of its last committed sample (`NEVER` before the first):
`SeriesRegistry.last_ts`, shared by every loop."""


def _py_bulk_append(
    refs: list[int], values: list[float], now_ms: int, last: LastTimestamps, batch: list[Sample]
) -> bool:
    """The steady-state append (the reference of ``bulk_append`` in ``collector/_native_append.c``):
    False, changing nothing, when a series already has a sample at ``now_ms`` or later; else
    every series' last timestamp becomes ``now_ms`` and its sample joins ``batch``."""
    if max(map(last.__getitem__, refs), default=NEVER) >= now_ms:
        return False
    for ref in refs:
        last[ref] = now_ms
    batch.extend(zip(refs, values, repeat(now_ms)))
    return True


_bulk_append: BulkAppend = _c_bulk_append or _py_bulk_append


class _MetadataSource(Protocol):
    @property
    def metadata(self) -> Mapping[str, object]: ...


class ScrapeCache:
    """One target's raw-series cache, staleness sets and metadata.

    Survives loop restarts when a pool reload allows it (spec §3.5). Refs are held in the
    `SeriesRegistry` from the first sight of a series until it is evicted: not seen in a
    successful scrape, or a forced flush after failures (spec §4.11).
    """

    __slots__ = (
        "_bulk",
        "_cur",
        "_cur_bulk",
        "_dropped_seen",
        "_gen",
        "_metadata",
        "_metadata_source",
        "_prev",
        "_seen",
        "_successful_count",
        "_undo",
        "evicted",
        "last_ts",
        "registry",
        "series",
        "series_limiter",
    )

    def __init__(
        self,
        *,
        registry: SeriesRegistry,
        series_limiter: SeriesLimiter | None = None,
    ) -> None:
        self.registry = registry
        self.last_ts: LastTimestamps = registry.last_ts
        self.series: dict[bytes, int] = {}
        """Raw series bytes -> ref; ``0`` marks a series dropped by metric relabeling."""
        # The tracked refs of this pass (cur): a set, or after a bulk pass the list of its refs
        # (distinct), never both non-empty; of the last completed pass (prev): that list, or
        # the set's refs made a list by `iter_done` (8 bytes a series instead of a set's 65).
        self._prev: list[int] = []
        self._cur: set[int] = set()
        self._cur_bulk: list[int] | None = None
        self._seen: set[int] = set()
        """Other refs seen in this pass (explicit timestamps, rejected samples): not evicted."""
        self._dropped_seen: set[bytes] = set()
        self._undo: list[tuple[int, int]] = []
        """Explicit-timestamp ``last_ts`` updates of this pass, undone on rollback."""
        self._successful_count = 0
        self._metadata: Mapping[str, object] = {}
        self._metadata_source: _MetadataSource | None = None
        self.series_limiter = series_limiter
        """``series_limit``: asked about new series only; travels with the cache on reloads."""
        self.evicted = 0
        """Series released by the last `iter_done` (the "removed" half of churn)."""
        self._gen = 0
        """Bumped whenever an entry of `series` is added, changed or removed."""
        self._bulk: tuple[list[bytes], list[int], int] | None = None
        """The keys list of the last bulk append, its refs and ``_gen`` when they were
        resolved (the refs list is the one ``_cur_bulk``/``_prev`` hold: no copy)."""

    @property
    def prev(self) -> set[int]:
        """Refs tracked in the last completed pass (a copy)."""
        return set(self._prev)

    @property
    def cur(self) -> set[int]:
        """Refs tracked so far in this pass (a copy)."""
        return set(self._cur if self._cur_bulk is None else self._cur_bulk)

    def tracked(self) -> set[int]:
        """This pass's tracked refs as the set itself, for appending beside `append` (native
        histograms): a bulk pass's list is turned into the set first."""
        bulk = self._cur_bulk
        if bulk is not None:
            self._cur.update(bulk)
            self._cur_bulk = None
        return self._cur

    @property
    def metadata(self) -> Mapping[str, object]:
        """Family name -> type/help/unit of the last successful scrape (resolved lazily)."""
        source = self._metadata_source
        if source is not None:
            self._metadata = source.metadata
            self._metadata_source = None
        return self._metadata

    @metadata.setter
    def metadata(self, value: Mapping[str, object]) -> None:
        self._metadata = value
        self._metadata_source = None

    def metadata_from(self, exp: Exposition) -> None:
        """Take ``exp``'s metadata as the target's, built only if somebody reads it (a scrape
        must not pay for folding HELP/TYPE/UNIT lines that nobody looks at).

        Only the structure is kept when ``exp`` can hand it out (``metadata_source``), not the
        samples: the cache would otherwise hold a values list per target between scrapes."""
        detach: Callable[[], _MetadataSource] | None = getattr(exp, "metadata_source", None)
        self._metadata_source = exp if detach is None else detach()

    def __len__(self) -> int:
        return len(self.series)

    def append(
        self,
        exp: Exposition,
        *,
        now_ms: int,
        options: AppendOptions,
        batch: list[Sample],
    ) -> AppendResult:
        """Turn every sample of ``exp`` into ``(ref, value, ts)`` tuples appended to ``batch``.

        ``now_ms`` is the scrape timestamp. A series error stops the pass and is returned in
        ``result.error``; the caller then rolls back (`rollback`) and reports. Sample-limit
        overflow keeps counting and sets ``sample_limit_exceeded``.
        """
        series_get = self.series.get
        cur = self._cur
        seen_add = self._seen.add
        dropped_add = self._dropped_seen.add
        last = self.last_ts
        undo_add = self._undo.append
        batch_append = batch.append
        labels_of = exp.labels
        honor = options.honor_timestamps
        track_explicit = options.track_timestamps_staleness
        limit = options.sample_limit
        max_ts = now_ms + MAX_AHEAD_MS
        limiter = self.series_limiter
        if limiter is not None:
            limiter.roll(now_ms, self.series, self.registry.labels)

        keys, values, stamps = exp.columns()
        if (stamps is None or not honor) and not limit and not cur and not self._cur_bulk:
            # Steady state in bulk: every key is a cached, kept series, none repeats, none has
            # a newer sample yet; then the per-sample rules below reduce to these C-level
            # passes (a timestamp of now_ms is never out of bounds), and the pass's tracked
            # refs are the list itself. Otherwise nothing was changed: go slow.
            refs = self._bulk_refs(keys)
            if refs is not None and _bulk_append(refs, values, now_ms, last, batch):
                self._cur_bulk = refs
                return AppendResult(scraped=len(refs), post_relabel=len(refs))
        self._bulk = None
        cur = self.tracked()  # an earlier append of this pass may have gone in bulk (stream)
        cur_add = cur.add

        scraped = dropped = appended = added = 0
        dup = ooo = oob = 0
        error: CollectorError | None = None
        try:
            for key, value, ts in zip(
                keys, values, repeat(None) if stamps is None else stamps, strict=False
            ):
                scraped += 1
                ref = series_get(key)
                new = False
                if not ref:
                    if ref is None:
                        ref = self._add_series(key, labels_of(key), options)
                        if not ref:
                            dropped += 1
                            continue
                        new = True
                    else:
                        dropped_add(key)
                        dropped += 1
                        continue
                if ts is None or not honor:
                    if ref in cur:
                        # The same series twice in one scrape, same timestamp (spec §4.4-5).
                        dup += 1
                        continue
                    t = now_ms
                    tracked = True
                    explicit = False
                else:
                    t = ts
                    tracked = track_explicit
                    explicit = True
                if limit:
                    appended += 1
                    if appended > limit:
                        seen_add(ref)
                        continue
                if t > max_ts:
                    oob += 1
                    seen_add(ref)
                    continue
                lt = last[ref]
                if t <= lt:
                    # Agent storage: equal timestamps are out of order too.
                    ooo += 1
                    seen_add(ref)
                    continue
                if explicit:
                    undo_add((ref, lt))
                last[ref] = t
                if tracked:
                    cur_add(ref)
                else:
                    seen_add(ref)
                if new:
                    added += 1
                batch_append((ref, value, t))
        except (ScrapeError, ParseError) as exc:
            # The offending line counts as scraped but not as post-relabeling.
            error = exc
            dropped += 1
        return AppendResult(
            scraped=scraped,
            post_relabel=scraped - dropped,
            series_added=added,
            duplicates=dup,
            out_of_order=ooo,
            out_of_bounds=oob,
            sample_limit_exceeded=bool(limit) and appended > limit,
            over_sample_limit=max(appended - limit, 0) if limit else 0,
            label_limit_exceeded=isinstance(error, LabelLimitError),
            series_limited=0 if limiter is None else limiter.samples_refused(self._dropped_seen),
            error=error,
        )

    def _bulk_refs(self, keys: list[bytes]) -> list[int] | None:
        """The refs of ``keys`` when every one is a cached, kept series and none repeats.

        The steady-state parser hands out the very same keys list every scrape
        (`IncrementalParser`): when it is the list of the last bulk pass and no entry of the
        cache changed since (``_gen``), its refs are that pass's list, checked then; else
        they are looked up and checked now.
        """
        bulk = self._bulk
        if bulk is not None and keys is bulk[0] and bulk[2] == self._gen:
            return bulk[1]
        found = list(map(self.series.get, keys))
        if not all(found) or len(set(found)) != len(found):
            return None
        refs = cast("list[int]", found)
        self._bulk = (keys, refs, self._gen)
        return refs

    def _add_series(self, key: bytes, pairs: list[tuple[str, str]], options: AppendOptions) -> int:
        """Cache miss: build, relabel and validate the series; its ref, or 0 when dropped."""
        lb: dict[str, str] = {}
        duplicate = ""
        for name, value in pairs:
            if name in lb and not duplicate:
                duplicate = name
            lb[name] = value
        attach_target_labels(lb, options.target_labels, honor=options.honor_labels)
        if options.metric_relabeler:
            relabeled = options.metric_relabeler.process(lb)
            if relabeled is None:
                return self._drop(key)
            lb = relabeled
        labels = from_dict(lb)
        if not labels:
            return self._drop(key)
        validate(labels, options)
        if duplicate:
            # Agent storage refuses it and Prometheus fails the scrape (spec §4.4-6, EMPIRICAL).
            raise ScrapeError(f'label name "{duplicate}" is not unique: invalid sample')
        limiter = self.series_limiter
        if limiter is not None and not limiter.admit(key, labels):
            return self._drop(key)
        ref = self.registry.acquire(labels)
        self.series[key] = ref
        self._gen += 1
        return ref

    def _drop(self, key: bytes) -> int:
        self.series[key] = 0
        self._gen += 1
        self._dropped_seen.add(key)
        return 0

    def stale_markers(self, ts_ms: int, batch: list[Sample]) -> int:
        """Append a staleness marker for every series in ``prev`` but not in ``cur``.

        Markers go through the out-of-order check (a newer sample wins); returns how many.
        """
        prev, cur_bulk = self._prev, self._cur_bulk
        if not prev or prev == cur_bulk:
            return 0  # nothing tracked, or the steady state: the same refs in the same order
        gone = set(prev).difference(self._cur if cur_bulk is None else cur_bulk)
        if not gone:
            return 0
        last = self.last_ts
        written = 0
        for ref in gone:
            if ts_ms <= last[ref]:
                continue
            last[ref] = ts_ms
            batch.append((ref, STALE_NAN, ts_ms))
            written += 1
        return written

    def rollback(self) -> None:
        """Forget this pass's explicit-timestamp ``last_ts`` updates (its batch is discarded).

        ``cur`` is deliberately kept: series appended before a failure get no stale marker
        (Prometheus quirk, spec §4.8).
        """
        last = self.last_ts
        for ref, previous in reversed(self._undo):
            last[ref] = previous
        self._undo.clear()

    def iter_done(self, *, flush: bool) -> bool:
        """End a pass: maybe evict, then ``prev <- cur``. Returns True for a forced flush.

        ``flush`` is True after a successful non-empty scrape. After failures the cache is
        flushed anyway once it grew beyond ``2 * size_at_last_success + 1000``.
        """
        forced = False
        self.evicted = 0
        count = len(self.series)
        if flush:
            self._successful_count = count
        elif count > 2 * self._successful_count + 1000:
            flush = forced = True
        if flush:
            self._evict_unseen()
        cur = self._cur
        # A slow pass's set is kept as a list, 8 bytes a series, not ~65: every target's first
        # scrape is a slow one, so the sets of them all would be the agent's peak memory.
        self._prev = list(cur) if cur else self._cur_bulk or []
        cur.clear()
        self._cur_bulk = None
        self._seen.clear()
        self._dropped_seen.clear()
        self._undo.clear()
        return forced

    def _evict_unseen(self) -> None:
        """Release every entry not seen in this pass (cheap check first: usually none)."""
        if self._cur_bulk is not None and not self._seen:
            if len(self._cur_bulk) + len(self._dropped_seen) == len(self.series):
                return
            seen = set(self._cur_bulk)
        else:
            seen = (self._cur if self._cur_bulk is None else set(self._cur_bulk)) | self._seen
            if len(seen) + len(self._dropped_seen) == len(self.series):
                return
        dropped_seen = self._dropped_seen
        self._gen += 1
        for key, ref in list(self.series.items()):
            if ref:
                if ref not in seen:
                    del self.series[key]
                    self.registry.release(ref)
                    self.evicted += 1
            elif key not in dropped_seen:
                del self.series[key]

    def abandon(self) -> None:
        """Forget an unfinished pass (the loop was cancelled mid-scrape): ``prev`` stays."""
        self.rollback()
        self._cur.clear()
        self._cur_bulk = None
        self._seen.clear()
        self._dropped_seen.clear()

    def release_all(self) -> None:
        """Release every ref the cache holds; the cache is empty afterwards."""
        self.abandon()  # first: its rollback writes last timestamps of refs still held
        for ref in self.series.values():
            if ref:
                self.registry.release(ref)
        self.series.clear()
        self._gen += 1
        self._prev = []
