"""The receiver relays native histograms and exemplars (issue 12): 1.0 and 2.0 requests are
decoded into what the agent commits (`collector.remote.received`), checked field by field with
the protobuf classes; the written-count headers of a 2.0 answer count all three kinds; what it
cannot take (custom-bucket histograms, anything but floats for a float-only callback) is a
400 saying so, counted, with the rest written; and the agent's receiver commits all of it to
every writer, whose 1.0 output equals the request it received."""

from __future__ import annotations

import contextlib
import io
import math
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from prometheus_client import CollectorRegistry

from collector.agent import Agent, new_registry
from collector.config import AgentOptions
from collector.model.value import STALE_NAN
from collector.remote import prompb, prompb2
from collector.remote.codec import compress, decompress
from collector.remote.codec2 import CONTENT_TYPE_V1, CONTENT_TYPE_V2, V2Transcoder
from collector.remote.encoder import BatchEncoder
from collector.remote.received import Received, decode_v1, decode_v2
from collector.remote.receiver import make_receiver_app, make_receiver_handler
from collector.storage.series import SeriesRegistry

T0 = 1_700_000_000_000
WRITTEN = (
    "X-Prometheus-Remote-Write-Samples-Written",
    "X-Prometheus-Remote-Write-Histograms-Written",
    "X-Prometheus-Remote-Write-Exemplars-Written",
)


def v1_request() -> Any:
    """A 1.0 request as a Prometheus agent sends one: a float series with an exemplar, an
    integer histogram (spans both sides, zero bucket, reset hint YES), a float gauge
    histogram, a histogram staleness marker, an exemplar-only series, one without labels."""
    message = prompb.WriteRequest()
    floats = message.timeseries.add()
    floats.labels.add(name="__name__", value="http_requests_total")
    floats.labels.add(name="code", value="200")
    floats.samples.add(value=1027.0, timestamp=T0)
    floats.samples.add(value=1028.0, timestamp=T0 + 15_000)
    ex = floats.exemplars.add(value=0.25, timestamp=T0 - 7)
    ex.labels.add(name="trace_id", value="abc123")
    ex.labels.add(name="span_id", value="s1")  # kept in the order received

    integer = message.timeseries.add()
    integer.labels.add(name="__name__", value="rpc_seconds")
    integer.labels.add(name="job", value="j")
    h = integer.histograms.add(count_int=12, sum=33.5, schema=1, zero_threshold=0.001)
    h.zero_count_int = 2
    h.positive_spans.add(offset=-1, length=2)
    h.positive_spans.add(offset=4, length=1)
    h.positive_deltas.extend([1, 2, 0])
    h.negative_spans.add(offset=0, length=1)
    h.negative_deltas.extend([1])
    h.reset_hint = 1
    h.timestamp = T0
    zero = integer.histograms.add(count_int=0, zero_count_int=0, timestamp=T0 + 15_000)
    assert zero.HasField("count_int")

    floating = message.timeseries.add()
    floating.labels.add(name="__name__", value="depth")
    g = floating.histograms.add(count_float=7.5, sum=-3.0, schema=-2, zero_count_float=0.5)
    g.positive_spans.add(offset=0, length=2)
    g.positive_counts.extend([3.5, 3.5])
    g.negative_spans.add(offset=-3, length=1)
    g.negative_counts.extend([0.25])
    g.reset_hint = 3
    g.timestamp = T0
    stale = floating.histograms.add(count_float=0.0, zero_count_float=0.0, timestamp=T0 + 1)
    stale.sum = STALE_NAN

    only = message.timeseries.add()
    only.labels.add(name="__name__", value="http_requests_total")
    only.labels.add(name="code", value="500")
    only.exemplars.add(value=3.0, timestamp=T0)  # no labels
    return message


def v2_of(v1: Any) -> Any:
    """The same request in 2.0 (histograms at field 3, exemplars with refs)."""
    symbols: dict[str, int] = {"": 0}

    def refs(labels: Any) -> list[int]:
        texts = [text for label in labels for text in (label.name, label.value)]
        return [symbols.setdefault(text, len(symbols)) for text in texts]

    message = prompb2.Request()
    for series in v1.timeseries:
        out = message.timeseries.add(labels_refs=refs(series.labels))
        for s in series.samples:
            out.samples.add(value=s.value, timestamp=s.timestamp)
        for h in series.histograms:
            # Fields 1-16 have the same numbers and types in both versions (reference §2).
            out.histograms.add().ParseFromString(h.SerializeToString())
        for e in series.exemplars:
            out.exemplars.add(labels_refs=refs(e.labels), value=e.value, timestamp=e.timestamp)
    message.symbols.extend(symbols)
    return message


def _histograms(got: Received) -> list[tuple[int, Any, int]]:
    out = []
    for i, body, ts in got.histograms:
        h = prompb.Histogram()
        h.ParseFromString(body)
        out.append((i, h, ts))
    return out


def _expected_histograms(v1: Any) -> list[tuple[int, Any, int]]:
    out = []
    for i, series in enumerate(v1.timeseries):
        for h in series.histograms:
            copy = prompb.Histogram()
            copy.CopyFrom(h)
            copy.ClearField("timestamp")
            out.append((i, copy, h.timestamp))
    return out


def _exemplars(got: Received) -> list[tuple[int, Any, int]]:
    out = []
    for i, body, ts in got.exemplars:
        e = prompb.Exemplar()
        e.ParseFromString(body)
        out.append((i, e, ts))
    return out


def _expected_exemplars(v1: Any) -> list[tuple[int, Any, int]]:
    return [(i, e, e.timestamp) for i, series in enumerate(v1.timeseries) for e in series.exemplars]


@pytest.mark.parametrize("version", ["1.0", "2.0"])
def test_decoded_field_by_field(version: str) -> None:
    """Every histogram field (oneofs with zeros, spans, deltas, counts, reset hint, a NaN sum)
    and every exemplar field survives; the histogram bytes carry no timestamp (field 15), which
    is beside them; series keep request order and their float samples."""
    v1 = v1_request()
    if version == "1.0":
        got = decode_v1(v1.SerializeToString())
    else:
        got = decode_v2(v2_of(v1).SerializeToString())
    assert got.series == [
        (
            tuple((label.name, label.value) for label in series.labels),
            [(s.value, s.timestamp) for s in series.samples],
        )
        for series in v1.timeseries
    ]
    assert got.samples == 2
    histograms = _histograms(got)
    assert [(i, ts) for i, _, ts in histograms] == [(1, T0), (1, T0 + 15_000), (2, T0), (2, T0 + 1)]
    for (_, h, _), (_, want, _) in zip(histograms, _expected_histograms(v1), strict=True):
        assert h.timestamp == 0
        for name in (
            "count_int", "count_float", "schema", "zero_threshold", "zero_count_int",
            "zero_count_float", "negative_deltas", "negative_counts", "positive_deltas",
            "positive_counts", "reset_hint",
        ):  # fmt: skip
            assert getattr(h, name) == getattr(want, name), name
        assert h.WhichOneof("count") == want.WhichOneof("count")
        assert h.WhichOneof("zero_count") == want.WhichOneof("zero_count")
        assert math.isnan(h.sum) if math.isnan(want.sum) else h.sum == want.sum
        for side in ("positive_spans", "negative_spans"):
            assert [(s.offset, s.length) for s in getattr(h, side)] == [
                (s.offset, s.length) for s in getattr(want, side)
            ]
    assert _histograms(got)[3][1].sum != _histograms(got)[3][1].sum  # the StaleNaN kept
    exemplars = _exemplars(got)
    assert [(i, ts) for i, _, ts in exemplars] == [(0, T0 - 7), (3, T0)]
    for (_, e, _), (_, want, _) in zip(exemplars, _expected_exemplars(v1), strict=True):
        assert [(x.name, x.value) for x in e.labels] == [(x.name, x.value) for x in want.labels]
        assert (e.value, e.timestamp) == (want.value, want.timestamp)
    assert got.refused == 0


def test_2_0_start_timestamp_is_left_out() -> None:
    """1.0 has no ``start_timestamp`` (17): a 2.0 histogram's bytes leave without it."""
    message = prompb2.Request(symbols=["", "__name__", "h"])
    series = message.timeseries.add(labels_refs=[1, 2])
    series.histograms.add(count_int=1, zero_count_int=1, timestamp=T0, start_timestamp=T0 - 5)
    got = decode_v2(message.SerializeToString())
    ((_, body, ts),) = got.histograms
    assert ts == T0
    assert body == b"\x08\x01\x30\x01"  # count_int 1, zero_count_int 1: nothing else


def test_custom_bucket_histograms_are_counted_apart() -> None:
    """Schema -53 (or custom values) is not taken: counted in ``refused``, not in the list."""
    message = prompb.WriteRequest()
    series = message.timeseries.add()
    series.labels.add(name="__name__", value="nhcb")
    series.histograms.add(count_int=1, zero_count_int=0, schema=-53, custom_values=[0.5])
    series.histograms.add(count_int=1, zero_count_int=0, schema=0, timestamp=T0)
    got = decode_v1(message.SerializeToString())
    assert got.refused == 1
    assert [(i, ts) for i, _, ts in got.histograms] == [(0, T0)]


@contextlib.asynccontextmanager
async def _serving(
    *, float_only: bool = False
) -> AsyncIterator[tuple[str, CollectorRegistry, list[Any]]]:
    got: list[Any] = []
    registry = CollectorRegistry()
    if float_only:
        app = make_receiver_app(got.append, registry=registry)
    else:
        app = make_receiver_app(on_receive=got.append, registry=registry)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    try:
        yield f"http://{host}:{port}/api/v1/write", registry, got
    finally:
        await runner.cleanup()


async def _post(url: str, raw: bytes, content_type: str) -> tuple[int, str, tuple[str, ...]]:
    headers = {"Content-Encoding": "snappy", "Content-Type": content_type}
    async with (
        aiohttp.ClientSession() as session,
        session.post(url, data=io.BytesIO(compress(raw)), headers=headers) as r,
    ):
        return r.status, await r.text(), tuple(r.headers.get(name, "-") for name in WRITTEN)


def _rejected(registry: CollectorRegistry, reason: str) -> float:
    got = registry.get_sample_value(
        "collector_remote_write_receiver_rejected_requests_total", {"reason": reason}
    )
    return 0.0 if got is None else got


async def test_2_0_answer_counts_histograms_and_exemplars() -> None:
    """204 with Samples 2, Histograms 4, Exemplars 2 written; 1.0: 204, no headers; the
    callback gets all of it."""
    v1 = v1_request()
    async with _serving() as (url, _, got):
        assert await _post(url, v2_of(v1).SerializeToString(), CONTENT_TYPE_V2) == (
            204,
            "",
            ("2", "4", "2"),
        )
        assert await _post(url, v1.SerializeToString(), CONTENT_TYPE_V1) == (
            204,
            "",
            ("-", "-", "-"),
        )
    assert [(len(r.histograms), len(r.exemplars)) for r in got] == [(4, 2), (4, 2)]
    assert got[0].histograms == got[1].histograms
    assert got[0].exemplars == got[1].exemplars


@pytest.mark.parametrize("content_type", [CONTENT_TYPE_V1, CONTENT_TYPE_V2])
async def test_custom_buckets_are_a_counted_partial_write(content_type: str) -> None:
    """A custom-bucket histogram: the rest is written, 400 saying what was not, counted."""
    v1 = v1_request()
    v1.timeseries[1].histograms.add(count_int=1, zero_count_int=0, schema=-53, custom_values=[1])
    raw = (v2_of(v1) if content_type == CONTENT_TYPE_V2 else v1).SerializeToString()
    async with _serving() as (url, registry, got):
        status, text, headers = await _post(url, raw, content_type)
        assert _rejected(registry, "unsupported_histograms") == 1
    assert status == 400
    assert "1 native histogram samples with custom buckets (schema -53)" in text
    assert headers == (("2", "4", "2") if content_type == CONTENT_TYPE_V2 else ("-", "-", "-"))
    assert len(got[0].histograms) == 4


@pytest.mark.parametrize("content_type", [CONTENT_TYPE_V1, CONTENT_TYPE_V2])
async def test_float_only_callback_refuses_histograms_and_exemplars(content_type: str) -> None:
    """For a float-only ``on_write`` (1.0 included, which used to drop them without a word):
    floats written, 400 naming what was not, both reasons counted."""
    v1 = v1_request()
    raw = (v2_of(v1) if content_type == CONTENT_TYPE_V2 else v1).SerializeToString()
    async with _serving(float_only=True) as (url, registry, got):
        status, text, headers = await _post(url, raw, content_type)
        assert _rejected(registry, "unsupported_histograms") == 1
        assert _rejected(registry, "unsupported_exemplars") == 1
    assert status == 400
    assert "4 native histogram samples and 2 exemplars were not written" in text
    assert headers == (("2", "0", "0") if content_type == CONTENT_TYPE_V2 else ("-", "-", "-"))
    assert [len(points) for _, points in got[0]] == [2, 0, 0, 0]


def test_handler_takes_exactly_one_callback() -> None:
    with pytest.raises(ValueError, match="exactly one"):
        make_receiver_handler()
    with pytest.raises(ValueError, match="exactly one"):
        make_receiver_handler(print, on_receive=print)


def _timeseries(raw: bytes) -> list[bytes]:
    """Each ``TimeSeries`` of a 1.0 body, serialized deterministically, sorted."""
    message = prompb.WriteRequest()
    message.ParseFromString(raw)
    return sorted(s.SerializeToString(deterministic=True) for s in message.timeseries)


def _split(v1: Any) -> list[bytes]:
    """``v1`` with one sample, histogram or exemplar per ``TimeSeries``, as the encoder sends."""
    out = prompb.WriteRequest()
    for series in v1.timeseries:
        for kind in ("samples", "histograms", "exemplars"):
            for item in getattr(series, kind):
                one = out.timeseries.add()
                one.labels.extend(series.labels)
                getattr(one, kind).add().CopyFrom(item)
    return _timeseries(out.SerializeToString())


def test_the_encoder_sends_what_was_received() -> None:
    """Received -> the refs and lists the agent commits -> `BatchEncoder` -> 1.0 body: every
    sample, histogram and exemplar as received (one per ``TimeSeries``), and the 2.0
    transcoding of that body decodes to the same `Received`."""
    v1 = v1_request()
    got = decode_v2(v2_of(v1).SerializeToString())
    registry = SeriesRegistry()
    sealed: list[bytes] = []
    encoder = BatchEncoder(
        series=registry,
        external_labels=(),
        relabel=None,
        max_samples_per_send=1000,
        num_shards=1,
        on_sealed=lambda body, *_: sealed.append(decompress(body)),
        clock=lambda: 0.0,
    )
    refs = [registry.acquire(tuple(sorted(labels))) for labels, _ in got.series]
    encoder.commit([(refs[i], v, ts) for i, (_, pts) in enumerate(got.series) for v, ts in pts])
    encoder.commit_histograms([(refs[i], body, ts) for i, body, ts in got.histograms])
    encoder.commit_exemplars([(refs[i], body, ts) for i, body, ts in got.exemplars])
    encoder.seal_all()
    (body,) = sealed
    assert _timeseries(body) == _split(v1)
    again = decode_v2(V2Transcoder().encode(body)[0])
    for kind in ("histograms", "exemplars"):
        assert sorted((again.series[i][0], b, ts) for i, b, ts in getattr(again, kind)) == sorted(
            (got.series[i][0], b, ts) for i, b, ts in getattr(got, kind)
        ), kind


async def test_the_agent_commits_what_it_receives(tmp_path: Path) -> None:
    """The agent's receiver hands floats, histograms and exemplars to its fanout, refs
    resolved to the received series' (sorted) labels."""
    (tmp_path / "collector.yml").write_text("global: {}\n")
    options = AgentOptions(
        config_file=str(tmp_path / "collector.yml"),
        storage_path=str(tmp_path / "queue"),
        enable_remote_write_receiver=True,
    )
    agent = Agent(options, registry=new_registry())
    seen: list[tuple[Any, ...]] = []

    class Recorder:
        def commit(self, samples: Any, histograms: Any = (), exemplars: Any = ()) -> None:
            labels = agent.series.labels
            seen.append(
                (
                    [(labels(r), v, ts) for r, v, ts in samples],
                    [(labels(r), b, ts) for r, b, ts in histograms],
                    [(labels(r), b, ts) for r, b, ts in exemplars],
                )
            )

    agent.fanout.destinations = [Recorder()]
    got = decode_v1(v1_request().SerializeToString())
    agent._accept_remote_write(got)
    ((samples, histograms, exemplars),) = seen
    names = [tuple(sorted(labels)) for labels, _ in got.series]
    assert samples == [(names[0], 1027.0, T0), (names[0], 1028.0, T0 + 15_000)]
    assert histograms == [(names[i], b, ts) for i, b, ts in got.histograms]
    assert exemplars == [(names[i], b, ts) for i, b, ts in got.exemplars]
