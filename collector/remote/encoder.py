r"""`BatchEncoder`: committed samples -> sealed, compressed remote-write bodies, per shard.

Pipeline position: the first stage of a remote-write destination (`collector.remote.writer`),
called synchronously from every scrape's `commit`. It owns the per-series encodings
(`collector.remote.encodings`) and the open batch of each shard; a sealed batch leaves through
``on_sealed`` to the write-ahead queue (`collector.remote.delivery`), which numbers it, logs it
and sends it.

Per committed sample the work is one list index and, for a value that changed, one
``struct.pack``, one concatenation and one list store (an unchanged one reuses its bytes), then
a list append into the run of the series' shard (``ref % num_shards``); the timestamp field,
shared by a scrape, is added once per shard and commit by joining the run with it as the
separator (`collector.remote.codec.fast_prefixes` explains the byte layout). That loop over
series encoded before exists twice: in C (``encode_run`` in ``collector/_native_append.c``,
through `collector.native`; ``python -m benchmarks.remote``: commit + seal 2.7 -> 4.5 M
samples/s, 5.1-5.3 with the encodings in lists) and in Python (`BatchEncoder._encode_run`, the
reference; ``tests/remote/test_encoder_native.py``).

Memory: each series' encoding is kept once, by ref, in the form its last float sample took
(`collector.remote.encodings.SeriesEncodings` explains the forms and what they cost); a commit
indexes those lists directly.

A destination that sends the scrape's own labels (no external labels, no write relabeling:
its bytes are a function of the label set alone) keeps none of that when the C extension is
there: ``encode_labelled`` (``collector/_native_labels.c``) writes each sample's ``TimeSeries``
from its series' label set in the `SeriesRegistry`, the same bytes `fast_prefixes` would have
cached. The trade, measured on 200 node_exporter targets' label sets (shared pairs, values all
changed): about 92 ns a sample against 48 for a cached encoding (the label set is a few
pointers to chase), for no bytes kept against 146 a series (``python -m benchmarks.memory``).
The memory is the scarcer of the two on the agent's main workload (W1: CPU level with
vmagent's, RSS about twice), so this departs from "pre-encoded series" (ARCHITECTURE.md) for
such destinations. The pure-Python encoder keeps the encodings (Python encoding labels per
sample would cost microseconds); `_py_encode_labelled` is the C loop's reference
(``tests/remote/test_encoder_labelled.py``).

::

    commit(samples) ── ref -> value prefix | zero encoding (labels encoded once per series)
        │  shard = ref % num_shards
        ▼
    run per shard ──join with the timestamp field──▶ open batch per shard
        │ max_samples_per_send reached, seal(shard), or seal_all()
        ▼
    on_sealed(body=snappy(WriteRequest), count, max_ts, shard)

Native histograms (`commit_histograms`, rare) arrive as their ``Histogram`` bytes, built once at
append time; each becomes a whole ``TimeSeries`` (labels, histogram, its timestamp field 15)
added to the open batch of the series' shard, so the write-ahead log and the send path carry
them unchanged. A series that was sent as histograms moves to ``_hist`` (its kind byte and
label bytes): a float sample of it (in practice its staleness marker, which the scrape cache
writes as the float StaleNaN) misses the float lists and goes to a per-shard histogram run,
sent as a float sample when its timestamp's run is flushed (`_histogram_series_float`).

A series always lands in the same shard while the shard count stays the same; the owner changes
it (`set_shards`) only after sealing everything, and the delivery queue keeps the batches of the
two layouts apart (epochs), so per-series order holds.

Prometheus counterpart: the encoding half of ``storage/remote/queue_manager.go``
(``populateTimeSeries``, ``buildWriteRequest``).
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterable, Sequence

from collector.model.labels import Labels
from collector.native import EncodeLabelled, EncodeRun
from collector.native import encode_labelled as _c_encode_labelled
from collector.native import encode_run as _c_encode_run
from collector.remote.codec import (
    compress,
    encode_exemplar_series,
    encode_histogram_series,
    encode_labels,
    encode_timeseries,
    fast_prefixes,
    timestamp_field,
)
from collector.remote.encodings import (
    ENTRY_TAIL,
    ZERO_TAIL,
    CommitCounts,
    Relabel,
    SeriesEncodings,
    label_bytes,
)
from collector.storage.appender import ExemplarSample, HistogramSample, Sample
from collector.storage.series import SeriesRegistry

__all__ = ["BatchEncoder", "CommitCounts", "Relabel"]

_FAST_TS_LEN = 7
"""Length of `timestamp_field` for which `fast_prefixes` are valid (timestamps 2^42..2^49 ms,
i.e. years 2109 back to 2001)."""

_pack = struct.Struct("<d").pack
_unpack = struct.Struct("<d").unpack
_INT_KIND = b"\x00"
_FLOAT_KIND = b"\x01"
"""First byte of a ``_hist`` entry (kind + label bytes): its histograms' form, integer or
float."""

SealedSink = Callable[[bytes, int, int, int], None]
"""``on_sealed(body, count, max_ts, shard)``."""


def _py_encode_labelled(
    samples: list[Sample],
    start: int,
    ts: int,
    label_sets: list[Labels | None],
    hist: dict[int, bytes],
    runs: list[list[bytes]],
) -> int:
    """The reference of ``encode_labelled`` in ``collector/_native_labels.c``: from
    ``samples[start]``, every sample stamped ``ts`` of a live series not sent as histograms
    goes to its shard's run, encoded from its label set as `_encode_run` sends it; returns where
    it stopped. (The pure-Python encoder keeps per-series encodings instead, which are faster
    in Python; this is what the C loop is checked against.)"""
    n = len(runs)
    size = len(label_sets)
    for i in range(start, len(samples)):
        ref, value, sample_ts = samples[i]
        if sample_ts != ts or not 0 <= ref < size or ref in hist:
            return i
        labels = label_sets[ref]
        if labels is None:
            return i
        value_prefix, zero_series = fast_prefixes(encode_labels(labels))
        runs[ref % n].append(value_prefix + _pack(value) if value else zero_series)
    return len(samples)


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
        native: bool = True,
    ) -> None:
        """``clock`` stamps when a shard's batch opened (for `batch_send_deadline`);
        ``native=False`` keeps the commit loop in pure Python (the reference, for tests)."""
        external: Labels = tuple(sorted(external_labels))
        self._encodings = SeriesEncodings(series, external, relabel)
        self._max_per_send = max_samples_per_send
        self._on_sealed = on_sealed
        self._clock = clock
        # The encodings' lists and dict themselves (they grow in place): a commit indexes them.
        self._value = self._encodings.values
        self._zero = self._encodings.zeros
        self._hist = self._encodings.hist
        self._fast_run: EncodeRun = _c_encode_run if native and _c_encode_run else self._encode_run
        """The run function `commit` calls first: C when `collector.native` has it."""
        self._label_sets = series.label_sets
        self._labelled: EncodeLabelled | None = None
        """The C loop encoding samples from their label sets, when the destination sends the
        scrape's own labels (no external labels, no write relabeling) and `collector.native`
        has it: then no per-series encoding is kept (146 B a series for node_exporter)."""
        if native and not external and relabel is None:
            self._labelled = _c_encode_labelled
        self.set_shards(num_shards)

    # ------------------------------------------------------------------ layout

    @property
    def num_shards(self) -> int:
        """Shards batches are built for."""
        return self._num_shards

    @property
    def cached_series(self) -> int:
        """Series this destination holds an encoding of (float, zero, histogram or dropped)."""
        return self._encodings.cached_series

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
        self._run_appends: list[Callable[[bytes], None]] = [run.append for run in self._runs]
        self._hist_runs: list[list[bytes]] = [[] for _ in range(n)]
        self._hist_appends: list[Callable[[bytes], None]] = [r.append for r in self._hist_runs]

    @property
    def open_samples(self) -> int:
        """Samples in open (not yet sealed) batches."""
        return sum(self._open_count)

    # ------------------------------------------------------------------ commit (hot path)

    def commit(self, samples: Sequence[Sample]) -> CommitCounts:
        """Encode one scrape's samples into the open batches, sealing full ones.

        The samples of one timestamp are taken by the run function (`_encode_run`, or the C
        one) up to the first it leaves here: a series not cached in the list of its form
        (`_miss`), or, for the C one, a sample not of the exact types the scrape path makes
        (the Python run takes those: same result, only slower).
        """
        counts = CommitCounts()
        if type(samples) is not list:  # the C run reads a list; tests pass tuples too
            samples = list(samples)
        fast = self._fast_run
        python_run = self._encode_run
        labelled = self._labelled
        label_sets = self._label_sets
        hist = self._hist
        values = self._value
        zeros = self._zero
        runs = self._runs
        now = self._clock()
        last_ts: int | None = None
        ts_field = b""
        hi = 0
        dropped = 0
        i = 0
        total = len(samples)
        while i < total:
            ref, value, ts = samples[i]
            if ts != last_ts:
                if last_ts is not None:
                    self._flush_runs(ts_field, last_ts, now)
                if ts > hi:
                    hi = ts
                ts_field = timestamp_field(ts)
                if len(ts_field) != _FAST_TS_LEN:
                    # Rare: encoded whole. last_ts None: the runs are flushed, and the next
                    # sample's timestamp is checked again (no per-sample test of the layout).
                    last_ts = None
                    self._add_slow(ref, value, ts, now, counts)
                    i += 1
                    continue
                last_ts = ts
            if labelled is not None:
                # No encodings are kept: what the C loop leaves (a histogram series' float, an
                # unknown ref, an unusual type) is one sample for `_miss`.
                i = labelled(samples, i, ts, label_sets, hist, runs)
            else:
                i, more = fast(samples, i, ts, values, zeros, runs)
                dropped += more
                if i < total and fast is not python_run and samples[i][2] == ts:
                    i, more = python_run(samples, i, ts, values, zeros, runs)
                    dropped += more
            if i < total and samples[i][2] == ts:
                ref, value, _ = samples[i]
                self._miss(ref, value, counts)
                i += 1
        if last_ts is not None:
            self._flush_runs(ts_field, last_ts, now)
        counts.dropped_series += dropped
        counts.highest_ts = hi
        return counts

    def _encode_run(
        self,
        samples: list[Sample],
        start: int,
        ts: int,
        values: list[bytes | None],
        zeros: list[bytes | None],
        runs: list[list[bytes]],
    ) -> tuple[int, int]:
        """The hot loop (the reference of ``encode_run`` in ``collector/_native_append.c``): from
        ``samples[start]``, every sample stamped ``ts`` whose series is cached in the list of
        its form goes to its shard's run; returns where it stopped and how many samples of
        dropped series it skipped."""
        appends = self._run_appends
        n = len(runs)
        size = len(values)  # both lists have one length (`SeriesEncodings.grow`)
        pack = _pack
        dropped = 0
        for i in range(start, len(samples)):
            ref, value, sample_ts = samples[i]
            if sample_ts != ts or ref >= size:
                return i, dropped
            if value:  # NaN is true: its bits are packed as they are
                entry = values[ref]
                if entry is None:
                    return i, dropped
                if not entry:
                    dropped += 1
                    continue
                packed = pack(value)
                if not entry.endswith(packed):  # changed; else sent again as is
                    entry = values[ref] = entry[:-8] + packed
                appends[ref % n](entry)
            else:
                encoded = zeros[ref]
                if encoded is None:
                    return i, dropped
                if encoded:
                    appends[ref % n](encoded)
                else:
                    dropped += 1
        return len(samples), dropped

    def _miss(self, ref: int, value: float, counts: CommitCounts) -> None:
        """A fast-path sample whose ref is not in the list of its form: a histogram series'
        float sample, a value leaving or reaching zero, or a new series."""
        shard = ref % self._num_shards
        hist = self._hist.get(ref)
        if hist is not None:
            self._hist_appends[shard](hist + _pack(value))
            return
        self._encodings.grow(ref)
        if value:
            other, self._zero[ref] = self._zero[ref], None
            labels = None if other is None else label_bytes(other, ZERO_TAIL)
        else:
            entry, self._value[ref] = self._value[ref], None
            labels = None if entry is None else label_bytes(entry, ENTRY_TAIL)
        if labels is None:
            labels = self._encodings.resolve(ref, counts)
            if labels is None:
                return
        value_prefix, zero_series = fast_prefixes(labels)
        if value:
            encoded = self._value[ref] = value_prefix + _pack(value)
            self._run_appends[shard](encoded)
        else:
            self._zero[ref] = zero_series
            self._run_appends[shard](zero_series)

    def _flush_runs(self, ts_field: bytes, ts: int, now: float) -> None:
        """Move every shard's run of samples stamped ``ts`` into its open batch."""
        for shard, run in enumerate(self._runs):
            if run:
                self._add_run(shard, run, ts_field, ts, now)
                run.clear()  # the same list: `_run_appends` holds its bound append
        if self._hist:
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

    def _add_slow(self, ref: int, value: float, ts: int, now: float, counts: CommitCounts) -> None:
        """One sample whose timestamp field is not 7 bytes: encoded whole (rare)."""
        labels = self._encodings.labels(ref, counts)
        if labels is not None:
            self._add_whole(ref % self._num_shards, encode_timeseries(labels, value, ts), ts, now)

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
        now = self._clock()
        n = self._num_shards
        for ref, body, ts in exemplars:
            labels = self._encodings.labels(ref, counts)
            if labels is not None:
                self._add_whole(ref % n, encode_exemplar_series(labels, body), ts, now)
        return counts

    def commit_histograms(self, histograms: Sequence[HistogramSample]) -> CommitCounts:
        """Add one scrape's native histograms to the open batches (after its float samples,
        `commit`): one ``TimeSeries`` each, in the series' shard."""
        counts = CommitCounts()
        now = self._clock()
        hist = self._hist
        n = self._num_shards
        for ref, body, ts in histograms:
            kind = _FLOAT_KIND if body[:1] == b"\x11" else _INT_KIND  # count_float first
            entry = hist.get(ref)
            if entry is None or entry[:1] != kind:
                labels = self._encodings.labels(ref, counts)
                if labels is None:
                    continue
                # From now on its float samples (staleness markers) miss the float lists.
                self._encodings.grow(ref)
                self._value[ref] = self._zero[ref] = None
                entry = hist[ref] = kind + labels
            if ts > counts.highest_ts:
                counts.highest_ts = ts
            self._add_whole(ref % n, encode_histogram_series(entry[1:], body, ts), ts, now)
        return counts

    def forget(self, refs: Iterable[int]) -> None:
        """Drop the cached encodings of released refs (`SeriesRegistry.drain_released`)."""
        self._encodings.forget(refs)

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
