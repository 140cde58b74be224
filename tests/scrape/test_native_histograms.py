"""Native histograms scraped from protobuf: decoding, the loop's append rules, staleness,
``always_scrape_classic_histograms`` and the two resolution limits.

Bodies are built by the ``protobuf`` package (`tests.model.client_model`); what the loop
commits is read back by decoding the committed ``Histogram`` bytes with `collector.remote.prompb`.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from collector.config import ScrapeConfig, load_config_text
from collector.errors import ParseError
from collector.model.textparse import protobuf
from collector.model.value import STALE_NAN_BITS, float_bits, is_stale
from collector.remote import prompb
from tests.model import client_model as pb
from tests.scrape.scrapekit import harness

PROTO = (
    "application/vnd.google.protobuf; proto=io.prometheus.client.MetricFamily; encoding=delimited"
)


def native(name: str = "rpc_seconds", *, gauge: bool = False, classic: bool = True) -> Any:
    """An integer native histogram with a zero bucket, both sides, an empty bucket inside a
    span (compacted away) and, unless ``classic`` is False, one classic bucket."""
    f = pb.MetricFamily(name=name, type=pb.GAUGE_HISTOGRAM if gauge else pb.HISTOGRAM)
    m = f.metric.add()
    m.label.add(name="path", value="/a")
    h = m.histogram
    h.sample_count, h.sample_sum = 10, 33.5  # 7 positive, 1 negative, 2 zero
    h.schema, h.zero_threshold, h.zero_count = 1, 0.001, 2
    h.positive_span.add(offset=-1, length=2)
    h.positive_span.add(offset=2, length=3)
    h.positive_delta.extend([1, 2, -3, 0, 3])
    h.negative_span.add(offset=0, length=1)
    h.negative_delta.extend([1])
    if classic:
        h.bucket.add(upper_bound=1, cumulative_count=5)
    return f


def floaty() -> Any:
    f = pb.MetricFamily(name="load_ratio", type=pb.HISTOGRAM)
    h = f.metric.add().histogram
    h.sample_count_float, h.sample_sum = 7.5, 3.0
    h.zero_count_float = 0.5
    h.positive_span.add(offset=0, length=3)
    h.positive_count.extend([3.5, 0.0, 3.5])
    return f


def job(extra: str = "") -> ScrapeConfig:
    text = (
        "scrape_configs:\n  - job_name: j\n    scrape_interval: 15s\n"
        "    scrape_native_histograms: true\n" + extra
    )
    return load_config_text(text, base_dir="/cfg", env={}).scrape_configs[0]


def hist(raw: bytes) -> Any:
    m = prompb.Histogram()
    m.ParseFromString(raw)
    return m


# ------------------------------------------------------------------------------- decoding


def test_decoder_emits_one_native_histogram_without_suffix() -> None:
    exp = protobuf.parse(pb.delimited([native()]), native=True)
    assert exp.columns()[0] == []  # no classic series without always_scrape_classic
    ((key, h, ts),) = exp.histograms
    assert key.startswith(b"rpc_seconds\xfe")
    assert ts is None
    # indexes -1, 0 | 3, 4, 5 hold 1, 3 | 0, 0, 3; Compact(0) drops 3 and 4
    assert (h.schema, h.count, h.sum, h.zero_threshold, h.zero_count) == (1, 10, 33.5, 0.001, 2)
    assert (h.pos_index, h.pos_count) == ([-1, 0, 5], [1, 3, 3])
    assert (h.neg_index, h.neg_count) == ([0], [1])
    assert not h.is_float
    assert not h.gauge


def test_classic_series_too_with_always_scrape_classic() -> None:
    exp = protobuf.parse(pb.delimited([native()]), native=True, classic=True)
    names = [k.split(b"\xfe")[0] for k in exp.columns()[0]]
    assert names == [b"rpc_seconds_count", b"rpc_seconds_sum"] + [b"rpc_seconds_bucket"] * 2
    assert len(exp.histograms) == 1
    # no classic bucket: nothing classic even when asked (Prometheus needs one)
    exp = protobuf.parse(pb.delimited([native(classic=False)]), native=True, classic=True)
    assert exp.columns()[0] == []


def test_without_native_ingestion_nothing_changes() -> None:
    body = pb.delimited([native()])
    assert protobuf.parse(body).histograms == []
    assert protobuf.parse(body).columns() == protobuf.parse(body, native=False).columns()


def test_float_and_gauge_histograms() -> None:
    exp = protobuf.parse(pb.delimited([floaty(), native("q", gauge=True)]), native=True)
    (_, f, _), (_, g, _) = exp.histograms
    assert f.is_float
    assert (f.count, f.zero_count, f.pos_index, f.pos_count) == (7.5, 0.5, [0, 2], [3.5, 3.5])
    assert g.gauge
    assert hist(_encode(g)).reset_hint == 3


def test_classic_histogram_stays_classic_with_native_on() -> None:
    f = pb.MetricFamily(name="c", type=pb.HISTOGRAM)
    h = f.metric.add().histogram
    h.sample_count, h.sample_sum = 3, 1.0
    h.bucket.add(upper_bound=0.5, cumulative_count=2)
    exp = protobuf.parse(pb.delimited([f]), native=True, classic=False)
    assert exp.histograms == []
    assert len(exp.columns()[0]) == 4


def test_a_negative_float_bucket_fails_the_body() -> None:
    f = floaty()
    f.metric[0].histogram.positive_count[1] = -0.5
    with pytest.raises(ParseError, match=r"positive bucket with a count of -0\.5"):
        protobuf.parse(pb.delimited([f]), native=True)


def test_explicit_timestamp_goes_with_the_histogram() -> None:
    f = native()
    f.metric[0].timestamp_ms = 1_700_000_000_123
    ((_, _, ts),) = protobuf.parse(pb.delimited([f]), native=True).histograms
    assert ts == 1_700_000_000_123


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda h: h.positive_delta.append(1), "positive spans need 5 buckets, have 6"),
        (lambda h: h.negative_delta.__setitem__(0, -5), "negative bucket with a count of -5"),
        (lambda h: setattr(h, "schema", -5), "invalid native histogram schema -5"),
    ],
)
def test_malformed_native_histograms_fail_the_body(mutate: Any, message: str) -> None:
    f = native()
    mutate(f.metric[0].histogram)
    with pytest.raises(ParseError, match="rpc_seconds") as info:
        protobuf.parse(pb.delimited([f]), native=True)
    assert message in str(info.value)


def test_schema_above_8_is_lowered_to_8() -> None:
    f = native()
    f.metric[0].histogram.schema = 10
    ((_, h, _),) = protobuf.parse(pb.delimited([f]), native=True).histograms
    assert h.schema == 8
    # 10 -> 8: index i -> ((i - 1) >> 2) + 1: -1 -> 0, 0 -> 0, 5 -> 2
    assert (h.pos_index, h.pos_count) == ([0, 2], [4, 3])


def _encode(h: Any) -> bytes:
    from collector.model.histogram import encode

    return bytes(encode(h))


# ------------------------------------------------------------------------------- the loop


async def test_loop_commits_one_histogram_series_and_marks_it_stale() -> None:
    cfg = job()
    empty = pb.delimited([])
    h = harness(pb.delimited([native()]), pb.delimited([native()]), empty, cfg=cfg)
    h.scraper.content_type = PROTO
    await h.scrape()
    assert h.appender.value("up") == 1.0
    assert h.appender.value("scrape_samples_scraped") == 1.0
    ((labels, raw, ts),) = h.appender.histograms[-1]
    assert dict(labels) == {"__name__": "rpc_seconds", "path": "/a", "instance": "h:1", "job": "j"}
    assert ts == h.ts_ms()
    m = hist(raw)
    assert (m.count_int, m.sum, m.schema, m.zero_count_int) == (10, 33.5, 1, 2)
    assert [(s.offset, s.length) for s in m.positive_spans] == [(-1, 2), (4, 1)]
    assert list(m.positive_deltas) == [1, 2, 0]
    assert not [s for s in h.appender.commits[-1] if dict(s[0])["__name__"].startswith("rpc")]
    await h.scrape()  # the same histogram: a duplicate-free second commit
    assert len(h.appender.histograms[-1]) == 1
    await h.scrape()  # gone: its stale marker is the float StaleNaN of the same series
    assert h.appender.histograms[-1] == []
    (stale,) = [s for s in h.appender.stale() if dict(s[0])["__name__"] == "rpc_seconds"]
    assert float_bits(stale[1]) == STALE_NAN_BITS
    assert is_stale(stale[1])


async def test_loop_keeps_classic_series_when_asked() -> None:
    cfg = job("    always_scrape_classic_histograms: true\n")
    h = harness(pb.delimited([native()]), cfg=cfg, content_type=PROTO)
    await h.scrape()
    assert len(h.appender.histograms[-1]) == 1
    assert h.appender.value("rpc_seconds_count") == 10.0
    assert h.appender.value("scrape_samples_scraped") == 5.0  # histogram + 4 classic


async def test_min_bucket_factor_lowers_the_schema() -> None:
    cfg = job("    native_histogram_min_bucket_factor: 2\n")  # schema 0
    h = harness(pb.delimited([native()]), cfg=cfg, content_type=PROTO)
    await h.scrape()
    ((_, raw, _),) = h.appender.histograms[-1]
    m = hist(raw)
    # schema 1 -> 0: -1 -> 0, 0 -> 0, 5 -> 3 ; counts 1+3, 3
    assert m.schema == 0
    assert [(s.offset, s.length) for s in m.positive_spans] == [(0, 1), (2, 1)]
    assert list(m.positive_deltas) == [4, -1]


async def test_bucket_limit_reduces_then_fails_the_scrape() -> None:
    cfg = job("    native_histogram_bucket_limit: 3\n")
    h = harness(pb.delimited([native()]), cfg=cfg, content_type=PROTO)
    await h.scrape()  # 4 buckets (3 positive, 1 negative) -> schema 0: 2 + 1
    ((_, raw, _),) = h.appender.histograms[-1]
    assert hist(raw).schema == 0
    cfg = job("    native_histogram_bucket_limit: 1\n")
    h = harness(pb.delimited([native()]), cfg=cfg, content_type=PROTO)
    await h.scrape()  # both sides are non-empty at any schema: never fits
    assert h.appender.value("up") == 0.0
    assert h.appender.histograms[-1] == []
    assert h.loop.target.last_error == "histogram bucket limit exceeded"
    assert h.metric("prometheus_target_scrapes_exceeded_native_histogram_bucket_limit_total") == 1


async def test_native_off_scrapes_classic_series() -> None:
    cfg = load_config_text(
        "scrape_configs:\n  - job_name: j\n    scrape_protocols: [PrometheusProto]\n",
        base_dir="/cfg",
        env={},
    ).scrape_configs[0]
    h = harness(pb.delimited([native()]), cfg=cfg, content_type=PROTO)
    await h.scrape()
    assert h.appender.histograms[-1] == []
    assert h.appender.value("rpc_seconds_count") == 10.0


def test_native_histograms_put_protobuf_first() -> None:
    assert job().scrape_protocols[0] == "PrometheusProto"
    listed = job("    scrape_protocols: [PrometheusText0.0.4]\n")
    assert listed.scrape_protocols == ("PrometheusText0.0.4",)
    glob = load_config_text(
        "global: {scrape_native_histograms: true, always_scrape_classic_histograms: true}\n"
        "scrape_configs: [{job_name: j}, {job_name: k, always_scrape_classic_histograms: false}]\n",
        base_dir="/cfg",
        env={},
    ).scrape_configs
    assert glob[0].scrape_native_histograms
    assert glob[0].scrape_protocols[0] == "PrometheusProto"
    assert glob[0].always_scrape_classic_histograms
    assert not glob[1].always_scrape_classic_histograms


# ------------------------------------------------------------------------------- exemplars

OM = "application/openmetrics-text; version=1.0.0; charset=utf-8"


def exemplar(raw: bytes) -> Any:
    m = prompb.Exemplar()
    m.ParseFromString(raw)
    return ((tuple((x.name, x.value) for x in m.labels)), m.value, m.timestamp)


def om_body(value: int, trace: str = "x") -> bytes:
    return (
        "# TYPE foo counter\n"
        f'foo_total{{a="1"}} {value} # {{trace_id="{trace}",span="",b="2"}} 9.5 1700000000.123\n'
        f'foo_total{{a="2"}} {value} # {{trace_id="{trace}"}} 1\n'
        'foo_total{a="3"} 1\n'
        "# EOF\n"
    ).encode()


async def test_openmetrics_exemplars_are_committed_once() -> None:
    """Each exemplar goes with its series, labels sorted and empty ones dropped; without a
    timestamp it takes the scrape's; an exemplar equal to the series' last one is skipped
    (Prometheus's agent ``AppendExemplar``), a changed one is appended again."""
    h = harness(om_body(1), om_body(2), om_body(3, trace="y"), content_type=OM)
    await h.scrape()
    got = {dict(labels)["a"]: exemplar(raw) for labels, raw in h.appender.exemplars[-1]}
    assert got == {
        "1": ((("b", "2"), ("trace_id", "x")), 9.5, 1_700_000_000_123),
        "2": ((("trace_id", "x"),), 1.0, h.ts_ms()),
    }
    await h.scrape()  # same exemplars, new values: nothing
    assert h.appender.exemplars[-1] == []
    await h.scrape()
    assert len(h.appender.exemplars[-1]) == 2


async def test_a_series_on_a_recycled_ref_has_its_own_exemplar_history() -> None:
    """Refs are recycled (`SeriesRegistry.recycle`): a new series given the ref of one gone
    is not compared with that one's last exemplar, so the same exemplar is appended again."""

    def body(a: str) -> bytes:
        return (
            "# TYPE foo counter\n"
            f'foo_total{{a="{a}"}} 1 # {{trace_id="t"}} 2.5 1700000000.000\n'
            "# EOF\n"
        ).encode()

    h = harness(body("1"), body("2"), body("3"), content_type=OM)
    await h.scrape()
    await h.scrape()  # a="1" is gone: its ref is released at the end of the pass
    released = h.registry.drain_released()
    assert len(released) == 1
    h.registry.recycle(released)  # as the agent's series GC does once the writers forgot it
    await h.scrape()
    labels = h.registry.labels(released[0])
    assert labels is not None
    assert dict(labels)["a"] == "3"
    ((series, raw),) = h.appender.exemplars[-1]
    assert dict(series)["a"] == "3"
    assert exemplar(raw) == ((("trace_id", "t"),), 2.5, 1_700_000_000_000)


async def test_exemplar_of_a_rejected_sample_is_dropped() -> None:
    """A duplicate sample's exemplar is not appended (only the first one's)."""
    body = (
        b"# TYPE foo counter\n"
        b'foo_total 1 # {trace_id="first"} 1\n'
        b'foo_total 2 # {trace_id="second"} 2\n'
        b"# EOF\n"
    )
    h = harness(body, content_type=OM)
    await h.scrape()
    ((_, raw),) = h.appender.exemplars[-1]
    assert exemplar(raw)[0] == (("trace_id", "first"),)


async def test_protobuf_exemplars_are_committed() -> None:
    f = pb.MetricFamily(name="pc_total", type=pb.COUNTER)
    m = f.metric.add()
    m.counter.value = 5
    m.counter.exemplar.value = 0.67
    m.counter.exemplar.label.add(name="trace_id", value="KOO")
    m.counter.exemplar.timestamp.seconds = 1_700_000_000
    m.counter.exemplar.timestamp.nanos = 789_000_000
    h = harness(pb.delimited([f]), content_type=PROTO)
    await h.scrape()
    ((labels, raw),) = h.appender.exemplars[-1]
    assert dict(labels)["__name__"] == "pc_total"
    assert exemplar(raw) == ((("trace_id", "KOO"),), 0.67, 1_700_000_000_789)


def _vi(n: int) -> bytes:
    out = bytearray()
    n &= (1 << 64) - 1
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _ld(tag: int, payload: bytes) -> bytes:
    return bytes((tag,)) + _vi(len(payload)) + payload


@settings(max_examples=80, deadline=None)
@given(
    st.lists(st.integers(0, 5000), min_size=1, max_size=12),
    st.integers(-20, 20),
    st.booleans(),
)
def test_deltas_packed_or_not_give_the_same_buckets(
    counts: list[int], offset: int, packed: bool
) -> None:
    """Deltas one field each (what client_model's proto2 sends; one-byte runs are read
    inline) or packed, small or multi-byte: the absolute counts, empty ones dropped."""
    deltas = [b - a for a, b in zip([0, *counts], counts, strict=False)]
    zz = [_vi((d << 1) ^ (d >> 63)) for d in deltas]
    span = _ld(0x62, b"\x08" + _vi((offset << 1) ^ (offset >> 63)) + b"\x10" + _vi(len(counts)))
    unpacked = b"".join(b"\x68" + z for z in zz)
    delta_fields = _ld(0x6A, b"".join(zz)) if packed else unpacked
    histogram = b"\x08" + _vi(sum(counts)) + b"\x28" + _vi(4) + span + delta_fields  # schema 2
    family = _ld(0x0A, b"h") + b"\x18\x04" + _ld(0x22, _ld(0x3A, histogram))
    body = _vi(len(family)) + family
    exp = protobuf.parse(body, native=True)
    ((_, h, _),) = exp.histograms  # a span makes it native, even with no observations
    want = [(offset + i, c) for i, c in enumerate(counts) if c]
    assert list(zip(h.pos_index, h.pos_count, strict=True)) == want
    assert h.schema == 2


@pytest.mark.parametrize(
    ("count", "total", "message"),
    [
        (
            12,
            33.5,
            "10 observations found in buckets, but the Count field is 12: histogram's "
            "observation count should equal the number of observations found in the buckets "
            "(in absence of NaN)",
        ),
        (
            9,
            float("nan"),
            "10 observations found in buckets, but the Count field is 9: histogram's "
            "observation count should be at least the number of observations found in the "
            "buckets",
        ),
    ],
)
async def test_an_invalid_integer_histogram_fails_the_scrape(
    count: int, total: float, message: str
) -> None:
    """Prometheus's agent validates every histogram it appends (``Histogram.Validate``): a
    count that is not the buckets' total fails the scrape with its message; with a NaN sum a
    larger count is fine."""
    f = native()
    f.metric[0].histogram.sample_count = count
    f.metric[0].histogram.sample_sum = total
    h = harness(pb.delimited([f]), cfg=job(), content_type=PROTO)
    await h.scrape()
    assert h.appender.value("up") == 0.0
    assert h.loop.target.last_error == message
    f.metric[0].histogram.sample_count = 11
    h = harness(pb.delimited([f]), cfg=job(), content_type=PROTO)
    await h.scrape()
    assert h.appender.value("up") == (1.0 if total != total else 0.0)
