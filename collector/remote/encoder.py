r"""`BatchEncoder`: committed samples -> sealed, compressed remote-write bodies, per shard.

Pipeline position: the first stage of a remote-write destination (`collector.remote.writer`),
called synchronously from every scrape's `commit`. It owns the per-series encoding cache and the
open batch of each shard; a sealed batch leaves through ``on_sealed`` to the write-ahead queue
(`collector.remote.delivery`), which numbers it, logs it and sends it.

Per committed sample the work is a dict lookup (the series' `SeriesEntry`), a float comparison
with the series' previous value (unchanged: its encoded bytes are reused, else one
``struct.pack`` and one concatenation) and a list append into the run of the series' shard; the
timestamp field, shared by a scrape, is added once per shard and commit by joining the run with
it as the separator (`collector.remote.codec.fast_prefixes` explains the byte layout).

::

    commit(samples) ── ref -> SeriesEntry (external labels, write relabel, encode: once per series)
        │  shard = ref % num_shards
        ▼
    run per shard ──join with the timestamp field──▶ open batch per shard
        │ max_samples_per_send reached, seal(shard), or seal_all()
        ▼
    on_sealed(body=snappy(WriteRequest), count, max_ts, shard)

Native histograms (`commit_histograms`, rare) arrive as their ``Histogram`` bytes, built once at
append time; each becomes a whole ``TimeSeries`` (labels, histogram, its timestamp field 15)
added to the open batch of the series' shard, so the write-ahead log and the send path carry
them unchanged. A series that was sent as histograms keeps an entry whose ``append`` goes to a
per-shard histogram run: a float sample of it (in practice its staleness marker, which the
scrape cache writes as the float StaleNaN) is sent as a histogram staleness marker (``sum`` the
StaleNaN, reference §4) when its timestamp's run is flushed, with no test on the float path.

A series always lands in the same shard while the shard count stays the same; the owner changes
it (`set_shards`) only after sealing everything, and the delivery queue keeps the batches of the
two layouts apart (epochs), so per-series order holds.

Prometheus counterpart: the encoding half of ``storage/remote/queue_manager.go``
(``populateTimeSeries``, ``buildWriteRequest``).
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterable, Sequence

from collector.model.labels import Labels, from_dict
from collector.remote.codec import (
    compress,
    encode_exemplar_series,
    encode_histogram_series,
    encode_labels,
    encode_timeseries,
    fast_prefixes,
    timestamp_field,
)
from collector.storage.appender import ExemplarSample, HistogramSample, Sample
from collector.storage.series import SeriesRegistry

__all__ = ["BatchEncoder", "CommitCounts", "SeriesEntry"]

_FAST_TS_LEN = 7
"""Length of `timestamp_field` for which `fast_prefixes` are valid (timestamps 2^42..2^49 ms,
i.e. years 2109 back to 2001)."""

_pack = struct.Struct("<d").pack
_unpack = struct.Struct("<d").unpack
_NAN = float("nan")
_INT_KIND = b"\x00"
_FLOAT_KIND = b"\x01"
"""First byte of a histogram series' ``value_prefix`` (a float series' is always 0x0a): its
histograms' form, integer or float, which its staleness marker takes."""

Relabel = Callable[[dict[str, str]], dict[str, str] | None]
SealedSink = Callable[[bytes, int, int, int], None]
"""``on_sealed(body, count, max_ts, shard)``."""


class SeriesEntry:
    """One series as this destination sends it: the last value and its encoded bytes."""

    __slots__ = ("append", "encoded", "value", "value_prefix", "zero_series")

    def __init__(self, value_prefix: bytes, zero_series: bytes, append: Callable[[bytes], None]):
        self.value = _NAN
        """The last value encoded; NaN equals nothing, so the first sample always encodes."""
        self.encoded = b""
        """``TimeSeries`` field of the last value, minus the timestamp field."""
        self.value_prefix = value_prefix
        self.zero_series = zero_series
        """The encoding of a ``0.0`` sample (proto3 omits the value field)."""
        self.append = append
        """The bound ``append`` of the run of the series' shard (shared by all its series), or
        of the discard list for a series write relabeling dropped: no branch in the hot loop."""


class CommitCounts:
    """What one `BatchEncoder.commit` could not send, for the owner's metrics."""

    __slots__ = ("dropped_series", "highest_ts", "unknown")

    def __init__(self) -> None:
        self.dropped_series = 0
        """Samples of series write relabeling dropped (intentional: not a loss)."""
        self.unknown = 0
        """Samples of refs the series registry no longer knows (a bug if ever non-zero)."""
        self.highest_ts = 0
        """Highest timestamp committed, ms (0 when nothing was)."""


class BatchEncoder:
    """Encodes committed samples into per-shard batches and seals them (synchronous, no I/O)."""

    def __init__(
        self,
        *,
        series: SeriesRegistry,
        external_labels: Iterable[tuple[str, str]],
        relabel: Relabel | None,
        max_samples_per_send: int,
        num_shards: int,
        on_sealed: SealedSink,
        clock: Callable[[], float],
    ) -> None:
        """``clock`` stamps when a shard's batch opened (for `batch_send_deadline`)."""
        self._series = series
        self._external: Labels = tuple(sorted(external_labels))
        self._relabel = relabel
        self._max_per_send = max_samples_per_send
        self._on_sealed = on_sealed
        self._clock = clock
        self._cache: dict[int, SeriesEntry] = {}
        self._discard: list[bytes] = []
        self._hist_refs: set[int] = set()
        """Refs whose series were sent as histograms (their entries append to `_hist_runs`)."""
        self.set_shards(num_shards)

    # ------------------------------------------------------------------ layout

    @property
    def num_shards(self) -> int:
        """Shards batches are built for."""
        return self._num_shards

    def set_shards(self, n: int) -> None:
        """Build batches for ``n`` shards from now on; every open batch must be sealed first."""
        assert not any(getattr(self, "_open_count", ())), "seal_all() before changing shards"
        self._num_shards = n
        self._open: list[list[bytes]] = [[] for _ in range(n)]
        self._open_count: list[int] = [0] * n
        self._open_max_ts: list[int] = [0] * n
        self.open_since: list[float] = [0.0] * n
        """Per shard, when its open batch got its first sample (`clock`); 0.0 when empty."""
        self._runs: list[list[bytes]] = [[] for _ in range(n)]
        appends: list[Callable[[bytes], None]] = [run.append for run in self._runs]
        self._run_appends = appends
        self._hist_runs: list[list[bytes]] = [[] for _ in range(n)]
        self._hist_appends: list[Callable[[bytes], None]] = [r.append for r in self._hist_runs]
        discard = self._discard.append
        hist = self._hist_refs
        for ref, entry in self._cache.items():
            if ref in hist:
                entry.append = self._hist_appends[ref % n]
            elif entry.append != discard:
                entry.append = appends[ref % n]

    @property
    def open_samples(self) -> int:
        """Samples in open (not yet sealed) batches."""
        return sum(self._open_count)

    # ------------------------------------------------------------------ commit (hot path)

    def commit(self, samples: Sequence[Sample]) -> CommitCounts:
        """Encode one scrape's samples into the open batches, sealing full ones."""
        counts = CommitCounts()
        cache = self._cache
        pack = _pack
        now = self._clock()
        last_ts: int | None = None
        ts_field = b""
        fast = False
        hi = 0
        entry: SeriesEntry | None
        for ref, value, ts in samples:
            if ts != last_ts:
                if last_ts is not None:
                    self._flush_runs(ts_field, last_ts, now)
                last_ts = ts
                ts_field = timestamp_field(ts)
                fast = len(ts_field) == _FAST_TS_LEN
                if ts > hi:
                    hi = ts
            try:
                entry = cache[ref]
            except KeyError:
                entry = self._resolve(ref)
                if entry is None:
                    counts.unknown += 1
                    continue
            if not fast:
                self._add_slow(ref % self._num_shards, entry, value, ts, now)
                continue
            if value != entry.value:  # NaN never equals: its bits are always packed afresh
                entry.value = value
                entry.encoded = entry.value_prefix + pack(value) if value else entry.zero_series
            entry.append(entry.encoded)
        if last_ts is not None:
            self._flush_runs(ts_field, last_ts, now)
        counts.dropped_series = len(self._discard)
        self._discard.clear()
        counts.highest_ts = hi
        return counts

    def _flush_runs(self, ts_field: bytes, ts: int, now: float) -> None:
        """Move every shard's run of samples stamped ``ts`` into its open batch."""
        for shard, run in enumerate(self._runs):
            if run:
                self._add_run(shard, run, ts_field, ts, now)
                run.clear()  # the same list: `_run_appends` holds its bound append
        if self._hist_refs:
            for shard, run in enumerate(self._hist_runs):
                if run:
                    for item in run:
                        self._add_whole(shard, _histogram_series_float(item, ts), ts, now)
                    run.clear()

    def _add_run(self, shard: int, run: list[bytes], ts_field: bytes, ts: int, now: float) -> None:
        """Append a run to a shard's open batch, sealing each time it reaches the batch size."""
        max_per_send = self._max_per_send
        total = len(run)
        start = 0
        while start < total:
            count = self._open_count[shard]
            if not count:
                self.open_since[shard] = now
            if ts > self._open_max_ts[shard]:
                self._open_max_ts[shard] = ts
            take = min(max_per_send - count, total - start)
            chunks = self._open[shard]
            chunks.append(
                ts_field.join(run[start : start + take] if start or take < total else run)
            )
            chunks.append(ts_field)
            self._open_count[shard] = count + take
            start += take
            if count + take >= max_per_send:
                self.seal(shard)

    def _add_slow(self, shard: int, entry: SeriesEntry, value: float, ts: int, now: float) -> None:
        """One sample whose timestamp field is not 7 bytes: encoded whole (rare)."""
        if entry.append == self._discard.append:
            self._discard.append(b"")
            return
        if entry.value_prefix[:1] in (_INT_KIND, _FLOAT_KIND):  # a histogram series
            series = _histogram_series_float(entry.value_prefix + _pack(value), ts)
        else:
            series = encode_timeseries(_label_bytes(entry.value_prefix), value, ts)
        self._add_whole(shard, series, ts, now)

    def _add_whole(self, shard: int, series: bytes, ts: int, now: float) -> None:
        """Append one whole ``TimeSeries`` field to a shard's open batch (sealing when full)."""
        count = self._open_count[shard]
        if not count:
            self.open_since[shard] = now
        if ts > self._open_max_ts[shard]:
            self._open_max_ts[shard] = ts
        self._open[shard].append(series)
        self._open_count[shard] = count + 1
        if count + 1 >= self._max_per_send:
            self.seal(shard)

    # ------------------------------------------------------------------ native histograms

    def commit_exemplars(self, exemplars: Sequence[ExemplarSample]) -> CommitCounts:
        """Add one scrape's exemplars to the open batches: one ``TimeSeries`` each (the
        series' labels, ``exemplars`` field 3), in the series' shard, as Prometheus sends
        them (a ``TimeSeries`` holds samples, exemplars or histograms)."""
        counts = CommitCounts()
        cache = self._cache
        now = self._clock()
        discard = self._discard.append
        n = self._num_shards
        for ref, body, ts in exemplars:
            entry = cache.get(ref)
            if entry is None:
                entry = self._resolve(ref)
                if entry is None:
                    counts.unknown += 1
                    continue
            if entry.append == discard:
                counts.dropped_series += 1
                continue
            prefix = entry.value_prefix
            labels = prefix[1:] if prefix[:1] in (_INT_KIND, _FLOAT_KIND) else _label_bytes(prefix)
            series = encode_exemplar_series(labels, body)
            self._add_whole(ref % n, series, ts, now)
        return counts

    def commit_histograms(self, histograms: Sequence[HistogramSample]) -> CommitCounts:
        """Add one scrape's native histograms to the open batches (after its float samples,
        `commit`): one ``TimeSeries`` each, in the series' shard."""
        counts = CommitCounts()
        cache = self._cache
        now = self._clock()
        discard = self._discard.append
        hist = self._hist_refs
        n = self._num_shards
        for ref, body, ts in histograms:
            entry = cache.get(ref)
            if entry is None:
                entry = self._resolve(ref)
                if entry is None:
                    counts.unknown += 1
                    continue
            if entry.append == discard:
                counts.dropped_series += 1
                continue
            kind = _FLOAT_KIND if body[:1] == b"\x11" else _INT_KIND  # count_float first
            if ref not in hist or entry.value_prefix[:1] != kind:
                labels = entry.value_prefix[1:] if ref in hist else _label_bytes(entry.value_prefix)
                entry.value_prefix = kind + labels
                entry.zero_series = kind + labels + _pack(0.0)
                entry.value = _NAN
                entry.append = self._hist_appends[ref % n]
                hist.add(ref)
            if ts > counts.highest_ts:
                counts.highest_ts = ts
            series = encode_histogram_series(entry.value_prefix[1:], body, ts)
            self._add_whole(ref % n, series, ts, now)
        return counts

    def _resolve(self, ref: int) -> SeriesEntry | None:
        """Encode a series for this destination once: external labels, write relabel, bytes.

        None when the ref is unknown; a series write relabeling dropped gets an entry that
        appends to the discard list.
        """
        labels = self._series.labels(ref)
        if labels is None:
            return None
        if self._external or self._relabel is not None:
            builder = dict(labels)
            for name, value in self._external:
                # External labels never override the series' own (spec §6.5).
                builder.setdefault(name, value)
            if self._relabel is not None:
                relabeled = self._relabel(builder)
                builder = {} if relabeled is None else relabeled
            labels = from_dict(builder)
        if labels:
            value_prefix, zero_series = fast_prefixes(encode_labels(labels))
            entry = SeriesEntry(
                value_prefix, zero_series, self._run_appends[ref % self._num_shards]
            )
        else:
            entry = SeriesEntry(b"", b"", self._discard.append)
        self._cache[ref] = entry
        return entry

    def forget(self, refs: Iterable[int]) -> None:
        """Drop the cached encodings of released refs (`SeriesRegistry.drain_released`)."""
        cache = self._cache
        hist = self._hist_refs
        for ref in refs:
            cache.pop(ref, None)
            hist.discard(ref)

    # ------------------------------------------------------------------ sealing

    def seal(self, shard: int) -> None:
        """Compress a shard's open batch and hand it to ``on_sealed`` (nothing when empty)."""
        count = self._open_count[shard]
        if not count:
            return
        chunks = self._open[shard]
        self._open[shard] = []
        self._open_count[shard] = 0
        self.open_since[shard] = 0.0
        max_ts = self._open_max_ts[shard]
        self._open_max_ts[shard] = 0
        self._on_sealed(compress(b"".join(chunks)), count, max_ts, shard)

    def seal_all(self) -> None:
        """Seal every shard's open batch (group commit, reshard, shutdown)."""
        for shard in range(self._num_shards):
            self.seal(shard)

    def seal_due(self, deadline: float, now: float) -> float | None:
        """Seal the batches open for ``deadline`` seconds; return when the next one is due."""
        due: float | None = None
        for shard, since in enumerate(self.open_since):
            if not self._open_count[shard]:
                continue
            if since + deadline <= now:
                self.seal(shard)
            elif due is None or since + deadline < due:
                due = since + deadline
        return due


def _histogram_series_float(item: bytes, ts: int) -> bytes:
    """A float sample of a histogram series (``kind + label bytes + packed value``), in
    practice its staleness marker: sent as the float StaleNaN sample, as the Prometheus agent
    sends it (its scrape loop appends a float marker and its agent storage forwards it as is;
    only a Prometheus server's head turns it into a histogram marker; the spec holds the two
    equivalent)."""
    return encode_timeseries(item[1:-8], _unpack(item[-8:])[0], ts)


def _label_bytes(value_prefix: bytes) -> bytes:
    """The ``Label`` fields inside a `fast_prefixes` value prefix (tag, varint, labels, 3 bytes)."""
    i = 1
    while value_prefix[i] & 0x80:
        i += 1
    return value_prefix[i + 1 : -3]
