"""Native histograms over remote write: the 1.0 ``TimeSeries.histograms`` field checked field
by field by decoding with `collector.remote.prompb` (a descriptor written here from reference
§2), histogram staleness markers, ``send_native_histograms``, the write-ahead log across a
restart, and the 2.0 transcoding (``TimeSeries.histograms`` is field 3 there)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from collector.model.histogram import NativeHistogram, encode
from collector.model.value import STALE_NAN, STALE_NAN_BITS, float_bits
from collector.remote import prompb, prompb2
from collector.remote.codec import decompress
from collector.remote.codec2 import V2Transcoder
from collector.remote.encoder import BatchEncoder
from collector.storage.series import SeriesRegistry

T0 = 1_700_000_000_000

pytestmark = pytest.mark.looptime

HIST = (("__name__", "rpc_seconds"), ("job", "j"))
UP = (("__name__", "up"), ("job", "j"))


def integer() -> NativeHistogram:
    return NativeHistogram(
        schema=1,
        count=12,
        total=33.5,
        zero_threshold=0.001,
        zero_count=2,
        pos_index=[-1, 0, 5],
        pos_count=[1, 3, 3],
        neg_index=[0],
        neg_count=[1],
    )


def floating() -> NativeHistogram:
    return NativeHistogram(
        schema=0, count=7.5, total=3.0, zero_count=0.5, pos_index=[0, 2], pos_count=[3.5, 3.5],
        is_float=True, gauge=True,
    )  # fmt: skip


def request(raw: bytes) -> Any:
    message = prompb.WriteRequest()
    message.ParseFromString(raw)
    return message


def labels_of(series: Any) -> tuple[tuple[str, str], ...]:
    return tuple((label.name, label.value) for label in series.labels)


class Sealed:
    def __init__(self) -> None:
        self.bodies: list[bytes] = []

    def __call__(self, body: bytes, count: int, max_ts: int, shard: int) -> None:
        self.bodies.append(decompress(body))


def encoder(registry: SeriesRegistry, sink: Sealed, shards: int = 2) -> BatchEncoder:
    return BatchEncoder(
        series=registry,
        external_labels=(("cluster", "c1"),),
        relabel=None,
        max_samples_per_send=100,
        num_shards=shards,
        on_sealed=sink,
        clock=lambda: 0.0,
    )


@pytest.mark.parametrize("ts", [T0, 5])  # 5: a timestamp off the encoder's fast layout
def test_histogram_series_field_by_field(ts: int) -> None:
    registry = SeriesRegistry()
    sink = Sealed()
    enc = encoder(registry, sink)
    up, rpc, load = (registry.acquire(x) for x in (UP, HIST, (("__name__", "load"),)))
    enc.commit([(up, 1.0, ts)])
    enc.commit_histograms([(rpc, encode(integer()), ts), (load, encode(floating()), ts)])
    enc.seal_all()
    series = [s for body in sink.bodies for s in request(body).timeseries]
    by_name = {dict(labels_of(s))["__name__"]: s for s in series}
    assert set(by_name) == {"up", "rpc_seconds", "load"}
    rpc_series = by_name["rpc_seconds"]
    assert labels_of(rpc_series) == (("__name__", "rpc_seconds"), ("cluster", "c1"), ("job", "j"))
    assert not rpc_series.samples
    (h,) = rpc_series.histograms
    assert h.WhichOneof("count") == "count_int"
    assert (h.count_int, h.sum, h.schema, h.zero_threshold) == (12, 33.5, 1, 0.001)
    assert h.WhichOneof("zero_count") == "zero_count_int"
    assert h.zero_count_int == 2
    assert [(s.offset, s.length) for s in h.positive_spans] == [(-1, 2), (4, 1)]
    assert list(h.positive_deltas) == [1, 2, 0]
    assert [(s.offset, s.length) for s in h.negative_spans] == [(0, 1)]
    assert list(h.negative_deltas) == [1]
    assert h.reset_hint == 0
    assert h.timestamp == ts
    (f,) = by_name["load"].histograms
    assert f.WhichOneof("count") == "count_float"
    assert (f.count_float, f.zero_count_float, list(f.positive_counts)) == (7.5, 0.5, [3.5, 3.5])
    assert f.reset_hint == 3
    assert f.timestamp == ts
    assert [(x.value, x.timestamp) for x in by_name["up"].samples] == [(1.0, ts)]


def test_stale_marker_of_a_histogram_series_is_the_float_stale_nan() -> None:
    """The scrape cache marks a gone histogram series with the float StaleNaN and the encoder
    sends it as a float sample, as the Prometheus agent does (on the fast and the slow
    timestamp path, after a reshard too); the series' histograms stay histograms."""
    registry = SeriesRegistry()
    sink = Sealed()
    enc = encoder(registry, sink, shards=3)
    up, rpc, load = (registry.acquire(x) for x in (UP, HIST, (("__name__", "load"),)))
    enc.commit_histograms([(rpc, encode(integer()), T0), (load, encode(floating()), T0)])
    enc.seal_all()
    enc.set_shards(4)
    enc.commit([(up, STALE_NAN, T0 + 15_000), (rpc, STALE_NAN, T0 + 15_000)])
    enc.commit([(load, STALE_NAN, 7)])  # slow (non-fast timestamp) path too
    enc.seal_all()
    series = [s for body in sink.bodies for s in request(body).timeseries]
    histograms = {dict(labels_of(s))["__name__"] for s in series if s.histograms}
    assert histograms == {"rpc_seconds", "load"}
    markers = {dict(labels_of(s))["__name__"]: s for s in series if s.samples}
    assert set(markers) == {"up", "rpc_seconds", "load"}
    for name, ts in (("up", T0 + 15_000), ("rpc_seconds", T0 + 15_000), ("load", 7)):
        (sample,) = markers[name].samples
        assert float_bits(sample.value) == STALE_NAN_BITS
        assert sample.timestamp == ts
        assert not markers[name].histograms


def test_rw2_carries_the_same_histogram_bytes() -> None:
    registry = SeriesRegistry()
    sink = Sealed()
    enc = encoder(registry, sink, shards=1)
    up, rpc = registry.acquire(UP), registry.acquire(HIST)
    enc.commit([(up, 1.0, T0)])
    enc.commit_histograms([(rpc, encode(integer()), T0)])
    enc.seal_all()
    (raw,) = sink.bodies
    (v1,) = [s for s in request(raw).timeseries if s.histograms]
    v2_raw, count = V2Transcoder(metadata=None, metadata_every=60.0, clock=lambda: 0.0).encode(raw)
    assert count == 2
    message = prompb2.Request()
    message.ParseFromString(v2_raw)
    (v2,) = [s for s in message.timeseries if s.histograms]
    names = [message.symbols[i] for i in v2.labels_refs]
    assert names == ["__name__", "rpc_seconds", "cluster", "c1", "job", "j"]
    assert not v2.samples
    (h2,) = v2.histograms
    assert h2.SerializeToString() == v1.histograms[0].SerializeToString()
    assert (h2.count_int, h2.schema, h2.timestamp) == (12, 1, T0)


async def test_histograms_sent_only_when_asked(
    receiver: Any, kit: Any, running: Any, idle: Any
) -> None:
    """``send_native_histograms: false`` (Prometheus's default) sends the float samples only;
    true sends the histograms as well."""
    for send in (False, True):
        receiver.requests.clear()
        writer = kit.make(receiver.url, name=f"rw{send}", config_send_native_histograms=send)
        up, rpc = kit.ref(*UP), kit.ref(*HIST)
        async with running(writer):
            writer.commit([(up, 1.0, T0)], [(rpc, encode(integer()), T0)])
            await receiver.wait_for(lambda r: bool(r.requests))
            await idle(writer)
        series = [s for r in receiver.requests for s in request(decompress(r.body)).timeseries]
        assert [labels_of(s) for s in series if s.samples] == [UP]
        sent = [s for s in series if s.histograms]
        assert len(sent) == (1 if send else 0)
        if send:
            assert sent[0].histograms[0].count_int == 12


async def test_histograms_survive_a_restart_in_the_log(
    receiver: Any, kit: Any, running: Any, idle: Any
) -> None:
    """Unsent histograms stay in the write-ahead log; the next writer sends them, unchanged."""
    first = kit.make(receiver.url, config_send_native_histograms=True, flush_deadline=1.0)
    rpc = kit.ref(*HIST)
    receiver.down = True
    async with running(first):
        for i in range(3):
            first.commit([], [(rpc, encode(integer()), T0 + i)])
        await asyncio.sleep(0.5)
    assert first.pending_samples == 3
    receiver.down = False
    second = kit.make(receiver.url, config_send_native_histograms=True)
    async with running(second):
        await receiver.wait_for(lambda r: len(r.accepted()) >= 1, within=30)
        await idle(second)
    sent = [
        s
        for r in receiver.requests
        if r.status < 300
        for s in request(decompress(r.body)).timeseries
    ]
    assert [s.histograms[0].timestamp for s in sent] == [T0, T0 + 1, T0 + 2]
    assert all(s.histograms[0].SerializeToString().startswith(encode(integer())) for s in sent)


# ------------------------------------------------------------------------------- exemplars


def test_exemplar_series_field_by_field_and_in_rw2() -> None:
    """An exemplar is a ``TimeSeries`` of its own (labels, ``exemplars`` field 3), as
    Prometheus sends it; 2.0 carries it in field 4 with ``labels_refs`` into the symbols."""
    from collector.model.exemplar import encode as encode_exemplar

    registry = SeriesRegistry()
    sink = Sealed()
    enc = encoder(registry, sink, shards=1)
    up = registry.acquire(UP)
    enc.commit([(up, 1.0, T0)])
    raw_ex = encode_exemplar([("trace_id", "abc"), ("a", "")], 0.5, T0 - 3)
    enc.commit_exemplars([(up, raw_ex, T0 - 3)])
    enc.seal_all()
    (raw,) = sink.bodies
    sample_series, ex_series = request(raw).timeseries
    assert labels_of(ex_series) == labels_of(sample_series)
    assert not ex_series.samples
    (ex,) = ex_series.exemplars
    assert [(x.name, x.value) for x in ex.labels] == [("trace_id", "abc")]
    assert (ex.value, ex.timestamp) == (0.5, T0 - 3)
    v2_raw, count = V2Transcoder(metadata=None, metadata_every=60.0, clock=lambda: 0.0).encode(raw)
    assert count == 1  # receivers count written samples and histograms, not exemplars
    message = prompb2.Request()
    message.ParseFromString(v2_raw)
    _, v2 = message.timeseries
    (e2,) = v2.exemplars
    assert [message.symbols[i] for i in e2.labels_refs] == ["trace_id", "abc"]
    assert (e2.value, e2.timestamp) == (0.5, T0 - 3)
    assert [message.symbols[i] for i in v2.labels_refs] == [
        "__name__",
        "up",
        "cluster",
        "c1",
        "job",
        "j",
    ]


async def test_exemplars_sent_only_when_asked(
    receiver: Any, kit: Any, running: Any, idle: Any
) -> None:
    from collector.model.exemplar import encode as encode_exemplar

    for send in (False, True):
        receiver.requests.clear()
        writer = kit.make(receiver.url, name=f"ex{send}", config_send_exemplars=send)
        up = kit.ref(*UP)
        ex = encode_exemplar([("trace_id", "t")], 2.0, T0)
        async with running(writer):
            writer.commit([(up, 1.0, T0)], (), [(up, ex, T0)])
            await receiver.wait_for(lambda r: bool(r.requests))
            await idle(writer)
        series = [s for r in receiver.requests for s in request(decompress(r.body)).timeseries]
        assert [labels_of(s) for s in series if s.samples] == [UP]
        sent = [s for s in series if s.exemplars]
        assert len(sent) == (1 if send else 0)
        if send:
            assert sent[0].exemplars[0].value == 2.0


async def test_exemplars_over_rw2_are_not_a_partial_write(
    receiver: Any, kit: Any, running: Any, idle: Any
) -> None:
    """A 2.0 receiver counts written samples and histograms, not exemplars: a batch with an
    exemplar series is held to its samples (the transcoder's count), so no partial write."""
    from collector.model.exemplar import encode as encode_exemplar
    from collector.remote.codec2 import V2

    writer = kit.make(receiver.url, config_protobuf_message=V2, config_send_exemplars=True)
    up = kit.ref(*UP)
    written = {
        "X-Prometheus-Remote-Write-Samples-Written": "1",
        "X-Prometheus-Remote-Write-Histograms-Written": "0",
        "X-Prometheus-Remote-Write-Exemplars-Written": "1",
    }
    receiver.script.append((204, written))  # collector's own receiver takes floats only
    async with running(writer):
        writer.commit([(up, 1.0, T0)], (), [(up, encode_exemplar([("t", "1")], 2.0, T0), T0)])
        await receiver.wait_for(lambda r: bool(r.requests))
        await idle(writer)
    (req,) = receiver.requests
    assert req.headers["Content-Type"].endswith("io.prometheus.write.v2.Request")
    message = prompb2.Request()
    message.ParseFromString(decompress(req.body))
    assert [len(s.exemplars) for s in message.timeseries] == [0, 1]
    labels = {"remote_name": "rw"}
    assert kit.value("collector_remote_write_partial_writes_total", labels) == 0
    assert (
        kit.value("prometheus_remote_storage_samples_total", {**labels, "url": receiver.url}) == 1
    )
