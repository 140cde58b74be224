"""The protobuf decoder (`collector.model.textparse.protobuf`) against bodies built with the
``protobuf`` package from an independent descriptor (`tests.model.client_model`).

Expected series come from a reference written here over the message objects (Prometheus's
``ProtobufParser`` rules without native histogram ingestion); the ``le``/``quantile`` strings
of the table tests are the ones Prometheus's own ``protobufparse_test.go`` expects.
"""

from __future__ import annotations

import math
import struct
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from collector.model.textparse import Exemplar, Exposition, Metadata
from collector.model.textparse.protobuf import ProtobufParser, parse
from collector.model.textparse.protoexposition import ProtobufError
from tests.model import client_model as pb

Series = tuple[tuple[tuple[str, str], ...], float, int | None]


def decoded(exp: Exposition) -> list[Series]:
    """Every sample as (labels, value, timestamp), labels in the decoder's order."""
    return [(tuple(exp.labels(k)), v, t) for k, v, t in exp.samples]


def family(name: str, mtype: int, *, help: str = "", unit: str = "") -> Any:
    """A family message (``mtype`` -1: none set; the caller appends a raw type field)."""
    f = pb.MetricFamily(name=name)
    if mtype >= 0:
        f.type = mtype
    if help:
        f.help = help
    if unit:
        f.unit = unit
    return f


def metric(f: Any, ts: int = 0, **labels: str) -> Any:
    m = f.metric.add()
    for name, value in labels.items():
        m.label.add(name=name, value=value)
    if ts:
        m.timestamp_ms = ts
    return m


# ----------------------------------------------------------------------------- reference


def reference(families: list[Any]) -> list[Series]:
    """What Prometheus appends for ``families`` with native histograms not ingested."""
    out: list[Series] = []
    for f in families:
        if not f.metric:
            continue
        for m in f.metric:
            base = tuple((lp.name, lp.value) for lp in m.label)
            ts = m.timestamp_ms or None

            def add(suffix: str, value: float, *extra: tuple[str, str]) -> None:
                labels = (("__name__", f.name + suffix), *base, *extra)  # noqa: B023
                out.append((labels, value, ts))  # noqa: B023

            if f.type == pb.COUNTER:
                add("", m.counter.value)
            elif f.type == pb.GAUGE:
                add("", m.gauge.value)
            elif f.type == pb.UNTYPED:
                add("", m.untyped.value)
            elif f.type == pb.SUMMARY:
                s = m.summary
                add("_count", float(s.sample_count))
                add("_sum", s.sample_sum)
                for q in s.quantile:
                    add("", q.value, ("quantile", _fmt(q.quantile)))
            else:
                h = m.histogram
                count = h.sample_count_float or float(h.sample_count)
                add("_count", count)
                add("_sum", h.sample_sum)
                for b in h.bucket:
                    add("_bucket", b.cumulative_count_float or float(b.cumulative_count),
                        ("le", _fmt(b.upper_bound)))  # fmt: skip
                    if b.upper_bound == math.inf:
                        break
                else:
                    add("_bucket", count, ("le", "+Inf"))
    return out


def _fmt(value: float) -> str:
    """formatOpenMetricsFloat via Go's %g rules, written independently of the decoder."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if value == 0:
        return "0.0"  # Go's ``f == 0`` holds for -0 as well
    sign, digits, exponent = _digits(value)
    point = len(digits) + exponent  # digits * 10**exponent = 0.digits * 10**point
    exp10 = point - 1
    if exp10 < -4 or exp10 >= 6:
        mantissa = digits[0] + ("." + digits[1:] if len(digits) > 1 else "")
        text = f"{mantissa}e{'-' if exp10 < 0 else '+'}{abs(exp10):02d}"
    elif point <= 0:
        text = "0." + "0" * -point + digits
    elif point >= len(digits):
        text = digits + "0" * (point - len(digits))
    else:
        text = digits[:point] + "." + digits[point:]
    text = sign + text
    return text if ("." in text or "e" in text) else text + ".0"


def _digits(value: float) -> tuple[str, str, int]:
    """Shortest round-trip decimal digits of ``value`` (via ``float.__repr__``)."""
    from decimal import Decimal

    t = Decimal(repr(abs(value))).normalize().as_tuple()
    return ("-" if value < 0 else ""), "".join(map(str, t.digits)), int(t.exponent)


# ----------------------------------------------------------------------------- tables


def test_every_type_as_prometheus_appends_it() -> None:
    """Counter, gauge, untyped, summary, histogram and gauge histogram: names, labels, values,
    timestamps and the ``le``/``quantile`` strings of Prometheus's own tests."""
    c = family("go_memstats_alloc_bytes_total", pb.COUNTER, help="Total.", unit="bytes")
    metric(c).counter.value = 1.546544e06
    g = family("go_build_info", pb.GAUGE, help="Build.")
    metric(g, checksum="", path="github.com/prometheus/client_golang").gauge.value = 1
    u = family("something_untyped", pb.UNTYPED)
    metric(u, ts=1234567).untyped.value = 42
    s = family("rpc_durations_seconds", pb.SUMMARY)
    sm = metric(s, service="exponential").summary
    sm.sample_count, sm.sample_sum = 262, 0.00025551262820703587
    for q, v in ((0.5, 6.442786329648548e-07), (0.9, 1.94e-06), (0.99, 4.04e-06)):
        sm.quantile.add(quantile=q, value=v)
    h = family("test_histogram3", pb.HISTOGRAM)
    hm = metric(h, ts=1234568).histogram
    hm.sample_count, hm.sample_sum = 6, 50
    for ub, n in ((-20, 2), (-0.0, 2), (20, 4), (30, 6), (1e6, 6), (123456, 6), (1e-5, 6)):
        hm.bucket.add(upper_bound=ub, cumulative_count=n)
    gh = family("test_gauge_histogram", pb.GAUGE_HISTOGRAM)
    ghm = metric(gh).histogram
    ghm.sample_count_float, ghm.sample_sum = 175.0, 0.0008
    ghm.bucket.add(upper_bound=-0.0004899999999999998, cumulative_count_float=2.0)
    ghm.bucket.add(upper_bound=math.inf, cumulative_count_float=175.0)
    ghm.bucket.add(upper_bound=99.0, cumulative_count_float=1.0)  # after +Inf
    exp = parse(pb.delimited([c, g, u, s, h, gh]))
    le = [dict(lab)["le"] for lab, _, _ in decoded(exp) if dict(lab).get("le")]
    histogram_le = ["-20.0", "0.0", "20.0", "30.0", "1e+06", "123456.0", "1e-05", "+Inf"]
    assert le == [*histogram_le, "-0.0004899999999999998", "+Inf"]
    assert decoded(exp) == reference([c, g, u, s, h, gh])
    assert decoded(exp)[:3] == [
        ((("__name__", "go_memstats_alloc_bytes_total"),), 1546544.0, None),
        (
            (
                ("__name__", "go_build_info"),
                ("checksum", ""),
                ("path", "github.com/prometheus/client_golang"),
            ),
            1.0,
            None,
        ),
        ((("__name__", "something_untyped"),), 42.0, 1234567),
    ]
    quantiles = [dict(lab).get("quantile") for lab, _, _ in decoded(exp)]
    assert [q for q in quantiles if q] == ["0.5", "0.9", "0.99"]
    assert exp.metadata == {
        "go_memstats_alloc_bytes_total": Metadata(type="counter", help="Total.", unit="bytes"),
        "go_build_info": Metadata(type="gauge", help="Build."),
        "something_untyped": Metadata(type="unknown"),
        "rpc_durations_seconds": Metadata(type="summary"),
        "test_histogram3": Metadata(type="histogram"),
        "test_gauge_histogram": Metadata(type="gaugehistogram"),
    }


def test_native_only_histogram_gives_count_sum_and_inf_bucket() -> None:
    """Native fields are skipped; with no classic bucket Prometheus (native histograms off)
    still appends _count, _sum and le="+Inf" (its ``empty_histogram`` and
    ``test_float_histogram_with_zerothreshold_zero`` cases)."""
    empty = family("empty_histogram", pb.HISTOGRAM)
    metric(empty).histogram.positive_span.add(offset=0, length=0)
    native = family("test_float_histogram_with_zerothreshold_zero", pb.HISTOGRAM)
    h = metric(native, ts=5).histogram
    h.sample_count_float, h.sample_sum, h.schema = 5.0, 12.1, 3
    h.positive_span.add(offset=8, length=2)
    h.positive_count.extend([2.0, 3.0])
    h.negative_span.add(offset=-162, length=1)
    h.negative_delta.extend([1, -3])
    h.zero_threshold, h.zero_count = 2.938735877055719e-39, 2
    h.exemplars.add(value=-0.00039).timestamp.seconds = 1625851155
    h.created_timestamp.seconds = 1625851153
    exp = parse(pb.delimited([empty, native]))
    n = "test_float_histogram_with_zerothreshold_zero"
    assert decoded(exp) == [
        ((("__name__", "empty_histogram_count"),), 0.0, None),
        ((("__name__", "empty_histogram_sum"),), 0.0, None),
        ((("__name__", "empty_histogram_bucket"), ("le", "+Inf")), 0.0, None),
        ((("__name__", f"{n}_count"),), 5.0, 5),
        ((("__name__", f"{n}_sum"),), 12.1, 5),
        ((("__name__", f"{n}_bucket"), ("le", "+Inf")), 5.0, 5),
    ]
    assert exp.exemplars == {}


def test_exemplars_are_decoded_by_sample_index_and_created_timestamps_ignored() -> None:
    """Counter and bucket exemplars land at their sample's index (ms timestamps, labels sorted);
    created timestamps make no ``_created`` series (no created_timestamp_zero_ingestion)."""
    c = family("requests_total", pb.COUNTER)
    counter = metric(c).counter
    counter.value = 42
    counter.created_timestamp.seconds = 1625851153
    counter.exemplar.value = 12
    counter.exemplar.label.add(name="trace_id", value="abc")
    counter.exemplar.label.add(name="a", value="1")
    counter.exemplar.timestamp.seconds = 1625851151
    counter.exemplar.timestamp.nanos = 233181499
    h = family("latency", pb.HISTOGRAM)
    hist = metric(h).histogram
    hist.sample_count = 16
    b = hist.bucket.add(upper_bound=-0.00029, cumulative_count=16)
    b.exemplar.value = -0.00029
    b.exemplar.label.add(name="dummyID", value="5617")
    exp = parse(pb.delimited([c, h]))
    assert [dict(lab)["__name__"] for lab, _, _ in decoded(exp)] == [
        "requests_total",
        "latency_count",
        "latency_sum",
        "latency_bucket",
        "latency_bucket",
    ]
    assert exp.exemplars == {
        0: Exemplar(labels=(("a", "1"), ("trace_id", "abc")), value=12.0, ts_ms=1625851151233),
        3: Exemplar(labels=(("dummyID", "5617"),), value=-0.00029, ts_ms=None),
    }


def test_empty_families_are_skipped_and_absent_values_read_as_zero() -> None:
    """A family without metrics gives nothing (not even metadata or checks); a counter
    metric without a counter message reads as 0, as Go's getters do."""
    empty = _field(3, 0, _uv(7)) + _field(2, 2, b"\xff")  # every check would fail
    c = family("c_total", pb.COUNTER)
    metric(c, a="b").gauge.value = 5  # the wrong sub-message for a counter
    exp = parse(_uv(len(empty)) + empty + pb.delimited([c]))
    assert decoded(exp) == [((("__name__", "c_total"), ("a", "b")), 0.0, None)]
    assert list(exp.metadata) == ["c_total"]


def test_negative_timestamp_and_zero_meaning_none() -> None:
    """``timestamp_ms`` is int64 (a negative one decodes as such); 0 means no timestamp."""
    g = family("g", pb.GAUGE)
    metric(g, ts=-5, i="1").gauge.value = 1
    metric(g, i="2").gauge.value = 2
    metric(g, ts=7, i="3").gauge.value = 3
    assert [t for _, _, t in decoded(parse(pb.delimited([g])))] == [-5, None, 7]


def test_nan_payloads_are_kept() -> None:
    """Values are the wire doubles: a NaN keeps its bits (Prometheus does not re-read it)."""
    bits = 0x7FF8000000000001
    g = family("g", pb.GAUGE)
    metric(g).gauge.value = struct.unpack("<d", struct.pack("<Q", bits))[0]
    (value,) = parse(pb.delimited([g])).columns()[1]
    assert struct.unpack("<Q", struct.pack("<d", value))[0] == bits


# ----------------------------------------------------------------------------- wire shapes


def _field(number: int, wire: int, payload: bytes) -> bytes:
    tag = _uv(number << 3 | wire)
    return tag + (_uv(len(payload)) + payload if wire == 2 else payload)


def _uv(n: int) -> bytes:
    out = bytearray()
    while True:
        out.append((n & 0x7F) | (0x80 if n > 0x7F else 0))
        n >>= 7
        if not n:
            return bytes(out)


def _pair(n: str, v: str) -> bytes:
    return _field(1, 2, _field(1, 2, n.encode()) + _field(2, 2, v.encode()))


def test_field_order_interleaving_and_unknown_fields_do_not_matter() -> None:
    """Fields in any order, labels interleaved with the value and timestamp, and fields this
    schema does not know (skipped by wire type) decode like the canonical encoding."""
    gauge = _field(2, 2, _field(1, 1, struct.pack("<d", 3.5)) + _field(9, 0, _uv(300)))
    m = (
        _pair("a", "1")
        + gauge
        + _field(6, 0, _uv(99))
        + _field(20, 5, b"\0\0\0\0")
        + _pair("b", "2")
        + _field(21, 1, b"\0" * 8)
        + _pair("c", "3")
    )
    fam = _field(4, 2, m) + _field(3, 0, _uv(1)) + _field(1, 2, b"g") + _field(30, 2, b"xyz")
    body = _uv(len(fam)) + fam
    canonical = family("g", pb.GAUGE)
    metric(canonical, ts=99, a="1", b="2", c="3").gauge.value = 3.5
    assert decoded(parse(body)) == decoded(parse(pb.delimited([canonical])))


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda f: f.replace(b"\x18\x01", b"\x19" + b"\0" * 8), "wrong wire type 1 for field 3"),
        (lambda f: f + b"\x4b", "unsupported wire type 3"),
        (lambda f: f + b"\x00\x00", "invalid field number 0"),
        (lambda f: f + b"\xa0" + b"\xff" * 10 + b"\x01", "varint longer than 10 bytes"),
    ],
    ids=["wrong-wire-type", "group", "field-zero", "long-varint"],
)
def test_corrupt_fields_are_refused(mutate: Any, message: str) -> None:
    """A known field with another wire type, group wire types, field 0, an overlong varint."""
    good = family("ok", pb.GAUGE)
    metric(good).gauge.value = 1
    bad = pb.MetricFamily(name="bad", type=pb.GAUGE)
    metric(bad).gauge.value = 2
    data = mutate(bad.SerializeToString())
    head = pb.delimited([good])
    with pytest.raises(ProtobufError) as info:
        parse(head + _uv(len(data)) + data)
    assert message in str(info.value)
    assert info.value.offset >= len(head)
    assert decoded(info.value.partial) == [((("__name__", "ok"),), 1.0, None)]


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: family("", pb.GAUGE), "invalid metric name: "),
        (lambda: family("x", -1), 'unknown metric type for metric "x": 9'),
        (
            lambda: family("x_seconds", pb.GAUGE, unit="bytes"),
            'unit "bytes" not a suffix of metric',
        ),
        (
            lambda: family("x_total", pb.COUNTER, unit="seconds"),
            'unit "seconds" not a suffix of counter "x_total"',
        ),
    ],
    ids=["empty-name", "type", "unit", "counter-unit"],
)
def test_prometheus_family_checks(build: Any, message: str) -> None:
    """Prometheus 3's family checks, with the family and the byte offset named."""
    f = build()
    metric(f).gauge.value = 1
    data = f.SerializeToString() + (_field(3, 0, _uv(9)) if not f.HasField("type") else b"")
    with pytest.raises(ProtobufError) as info:
        parse(_uv(len(data)) + data)
    assert message in str(info.value)
    assert "at byte 1" in str(info.value)


def test_units_that_are_suffixes_load() -> None:
    """``_total`` counters check the unit before the suffix; other metrics at the end."""
    a = family("x_bytes_total", pb.COUNTER, unit="bytes")
    b = family("y_seconds", pb.GAUGE, unit="seconds")
    metric(a)
    metric(b)
    assert len(parse(pb.delimited([a, b])).samples) == 2


def test_invalid_utf8_help_is_refused() -> None:
    """Help must be UTF-8 (Prometheus 3)."""
    f = pb.MetricFamily(name="h", type=pb.GAUGE)
    metric(f)
    data = f.SerializeToString() + _field(2, 2, b"\xff\xfe")
    with pytest.raises(ProtobufError, match='invalid help for metric "h"'):
        parse(_uv(len(data)) + data)


def test_malformed_label_pair_is_found_on_a_cache_miss() -> None:
    """Label pairs are decoded only by ``labels`` (a cache miss): a truncated one is a
    `ProtobufError` there, with the samples before the series' first sample as partial."""
    good = _field(4, 2, _pair("a", "1") + _field(2, 2, _field(1, 1, struct.pack("<d", 1))))
    bad = _field(4, 2, _field(1, 2, b"\x0a\x05ab") + _field(2, 2, b""))
    fam = _field(1, 2, b"g") + _field(3, 0, b"\x01") + good + bad
    exp = parse(_uv(len(fam)) + fam)
    keys = exp.columns()[0]
    assert exp.labels(keys[0]) == [("__name__", "g"), ("a", "1")]
    with pytest.raises(ProtobufError, match=r'series 1 \("g"\): truncated string') as info:
        exp.labels(keys[1])
    assert decoded(info.value.partial) == [((("__name__", "g"), ("a", "1")), 1.0, None)]


# ----------------------------------------------------------------------------- properties

_names = st.from_regex(r"[a-z_][a-z0-9_]{0,8}", fullmatch=True)
_values = st.text(max_size=8)
_floats = st.floats(allow_nan=False, width=64)
_bounds = st.floats(allow_nan=False, allow_infinity=True, width=64)
_labels = st.dictionaries(_names.filter(lambda n: n not in ("le", "quantile")), _values, max_size=3)


@st.composite
def families(draw: st.DrawFn) -> list[Any]:
    """Random families of every type, with optional native fields and timestamps."""
    out = []
    for i in range(draw(st.integers(0, 4))):
        mtype = draw(st.sampled_from([0, 1, 2, 3, 4, 5]))
        f = pb.MetricFamily(name=f"{draw(_names)}_{i}", type=mtype, help=draw(_values))
        for _ in range(draw(st.integers(0, 3))):
            m = f.metric.add()
            for n, v in draw(_labels).items():
                m.label.add(name=n, value=v)
            m.timestamp_ms = draw(st.integers(-(2**63), 2**63 - 1) | st.just(0))
            if mtype == 0:
                m.counter.value = draw(_floats)
            elif mtype == 1:
                m.gauge.value = draw(_floats)
            elif mtype == 3:
                m.untyped.value = draw(_floats)
            elif mtype == 2:
                m.summary.sample_count = draw(st.integers(0, 2**64 - 1))
                m.summary.sample_sum = draw(_floats)
                for q in draw(st.lists(_bounds, max_size=3)):
                    m.summary.quantile.add(quantile=q, value=draw(_floats))
            else:
                h = m.histogram
                h.sample_count = draw(st.integers(0, 2**64 - 1))
                h.sample_count_float = draw(st.just(0.0) | _floats)
                h.sample_sum = draw(_floats)
                for ub in sorted(draw(st.lists(_bounds, max_size=4))):
                    h.bucket.add(
                        upper_bound=ub,
                        cumulative_count=draw(st.integers(0, 2**40)),
                        cumulative_count_float=draw(st.just(0.0) | _floats),
                    )
                if draw(st.booleans()):
                    h.schema = draw(st.integers(-4, 8))
                    h.positive_span.add(offset=draw(st.integers(-9, 9)), length=2)
                    h.positive_delta.extend([1, -1])
                    h.zero_threshold = 1e-128
        out.append(f)
    return out


@settings(max_examples=150, deadline=None)
@given(families())
def test_round_trip_matches_the_reference(fams: list[Any]) -> None:
    """Random families, serialized by the protobuf package: the decoder gives the reference's
    series, values (by bits) and timestamps; every ``le``/``quantile`` parses back exactly."""
    got = decoded(parse(pb.delimited(fams)))
    want = reference(fams)
    assert [(lab, t) for lab, _, t in got] == [(lab, t) for lab, _, t in want]
    assert [struct.pack("<d", v) for _, v, _ in got] == [struct.pack("<d", v) for _, v, _ in want]
    for lab, _, _ in got:
        for n, v in lab:
            if n in ("le", "quantile"):
                assert "." in v or "e" in v or v in ("+Inf", "-Inf", "NaN"), v


@settings(max_examples=60, deadline=None)
@given(families().filter(bool), st.data())
def test_truncated_bodies_fail_with_a_prefix_as_partial(
    fams: list[Any], data: st.DataObject
) -> None:
    """Any cut of a body either ends on a message boundary (a prefix of the families) or is a
    `ProtobufError` at an offset inside the body whose partial is a prefix of the samples."""
    body = pb.delimited(fams)
    full = decoded(parse(body))
    cut = data.draw(st.integers(0, len(body) - 1))
    error: ProtobufError | None = None
    try:
        got = decoded(parse(body[:cut]))
    except ProtobufError as exc:
        error = exc
        got = decoded(exc.partial)
    if error is not None:
        assert 0 <= error.offset <= cut
        assert "truncated" in error.message or "runs past the end" in error.message
    assert got == full[: len(got)]


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=200))
def test_garbage_never_escapes_as_another_error(body: bytes) -> None:
    """Arbitrary bytes decode or raise `ProtobufError`; labels of decoded keys decode or raise
    `ProtobufError` too (never IndexError, UnicodeDecodeError, struct.error...)."""
    try:
        exp = parse(body)
    except ProtobufError:
        return
    for key in exp.columns()[0]:
        try:
            exp.labels(key)
        except ProtobufError:
            pass


def _revalue(fams: list[Any], seed: int) -> list[Any]:
    """Copies of ``fams`` with every simple value changed (same structure)."""
    out = []
    for f in fams:
        g = pb.MetricFamily()
        g.CopyFrom(f)
        for k, m in enumerate(g.metric):
            for part in (m.counter, m.gauge, m.untyped):
                if part.HasField("value"):
                    part.value = float(seed * 1000 + k) + 0.5
        out.append(g)
    return out


@settings(max_examples=80, deadline=None)
@given(families(), families(), st.integers(1, 5))
def test_a_target_parser_gives_what_parse_gives(a: list[Any], b: list[Any], seed: int) -> None:
    """`ProtobufParser` (label bytes and value layouts remembered between bodies) decodes a
    body with new values, a body of another structure, and the first body again exactly as
    the stateless `parse` does."""
    parser = ProtobufParser()
    for fams in (a, _revalue(a, seed), _revalue(a, seed + 1), b, a, a):
        body = pb.delimited(fams)
        want = parse(body)
        got = parser.parse(body)
        assert got.columns() == want.columns() or _same_bits(got, want)
        assert got.exemplars == want.exemplars
        assert got.metadata == want.metadata
        assert decoded(got) == decoded(want)


def _same_bits(got: Exposition, want: Exposition) -> bool:
    """Columns equal with values compared by bits (NaN never equals itself)."""
    gk, gv, gs = got.columns()
    wk, wv, ws = want.columns()
    pack = struct.Struct("<d").pack
    return gk == wk and gs == ws and list(map(pack, gv)) == list(map(pack, wv))


def test_a_changed_label_in_a_known_layout_is_read_again() -> None:
    """Same length, one label byte changed: the layout's bytes differ, so the family is
    decoded again (new key), not reused."""
    f = family("g", pb.GAUGE)
    metric(f, a="x").gauge.value = 1
    metric(f, a="y").gauge.value = 2
    parser = ProtobufParser()
    first = parser.parse(pb.delimited([f]))
    f.metric[1].label[0].value = "z"
    f.metric[0].gauge.value = 5
    second = parser.parse(pb.delimited([f]))
    assert [dict(lab)["a"] for lab, _, _ in decoded(second)] == ["x", "z"]
    assert second.columns()[1] == [5.0, 2.0]
    assert first.columns()[0][0] == second.columns()[0][0]


def test_long_label_names_and_values_use_multibyte_lengths() -> None:
    """Lengths of 128 bytes or more (two-byte varints) decode like short ones."""
    f = family("g", pb.GAUGE)
    long_name, long_value = "n" * 130, "ü" * 200
    m = metric(f, short="v")
    m.label.add(name=long_name, value=long_value)
    m.gauge.value = 1
    metric(f, a="x" * 127).gauge.value = 2
    assert decoded(parse(pb.delimited([f]))) == reference([f])


@settings(max_examples=60, deadline=None)
@given(families().filter(bool), st.data())
def test_a_warm_target_parser_fails_like_parse(fams: list[Any], data: st.DataObject) -> None:
    """After a good body, a cut or corrupted one fails in a warm `ProtobufParser` with the
    error and partial samples of `parse`, and the parser still decodes the good body after."""
    body = pb.delimited(fams)
    parser = ProtobufParser()
    parser.parse(body)
    cut = data.draw(st.integers(0, len(body) - 1))
    flip = data.draw(st.integers(0, len(body) - 1))
    for bad in (body[:cut], body[:flip] + bytes([body[flip] ^ 0xFF]) + body[flip + 1 :]):
        want: ProtobufError | None = None
        try:
            expected = decoded(parse(bad))
        except ProtobufError as exc:
            want = exc
        got: ProtobufError | None = None
        try:
            result = decoded(parser.parse(bad))
        except ProtobufError as exc:
            got = exc
        if want is None:
            assert got is None
            assert result == expected
        else:
            assert got is not None
            assert (got.message, decoded(got.partial)) == (want.message, decoded(want.partial))
    assert decoded(parser.parse(body)) == decoded(parse(body))


def test_a_cut_between_families_keeps_every_earlier_metric() -> None:
    """A length prefix that runs past the end names no family and drops nothing before it;
    a cut inside a family's second metric keeps its first metric (metric by metric)."""
    a = family("a", pb.GAUGE)
    metric(a, i="1").gauge.value = 1
    metric(a, i="2").gauge.value = 2
    b = family("b", pb.GAUGE)
    metric(b, i="1").gauge.value = 3
    head = pb.delimited([a])
    with pytest.raises(ProtobufError) as info:
        parse(head + b"\x7f" + pb.delimited([b])[1:])
    assert info.value.family == ""
    assert info.value.offset == len(head)
    assert len(info.value.partial.samples) == 2
    one = pb.MetricFamily()
    one.CopyFrom(a)
    del one.metric[1]
    broken = one.SerializeToString() + _field(4, 2, b"\x0a\x7fxx")  # label past its end
    with pytest.raises(ProtobufError) as info:
        parse(bytes([len(broken)]) + broken)
    assert info.value.family == "a"
    assert decoded(info.value.partial) == [((("__name__", "a"), ("i", "1")), 1.0, None)]
