"""Table-driven tests of `collector.model.textparse` (spec §7, §11 #16/#19-22, §12)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from benchmarks.data import ksm_body, node_exporter_body
from collector.errors import ParseError
from collector.model import textparse
from collector.model.textparse import (
    Exemplar,
    ExpositionError,
    Metadata,
    parse,
)
from collector.model.textparse.fast import NotFast, fast_om, fast_text
from collector.model.textparse.slow import SlowParser
from collector.model.value import NORMAL_NAN_BITS, float_bits

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "exposition"
INF = math.inf


def _slow(body: bytes, *, openmetrics: bool) -> textparse.Exposition:
    """Run only the careful line-by-line path."""
    return SlowParser(body, openmetrics=openmetrics).run()


def _fast(body: bytes, *, openmetrics: bool) -> textparse.Exposition | None:
    """Run only the whole-body regex path; None when it declines the body."""
    try:
        return fast_om(body) if openmetrics else fast_text(body)
    except NotFast:
        return None


def _error(body: bytes, *, openmetrics: bool) -> ExpositionError:
    """Parse a body that must fail, and return the error."""
    with pytest.raises(ExpositionError) as info:
        parse(body, openmetrics=openmetrics)
    return info.value


# ----------------------------------------------------------------------------- valid bodies
VALID_TEXT = [
    pytest.param(b"a 1\n", [(b"a", 1.0, None)], id="minimal"),
    pytest.param(b"a 1", [(b"a", 1.0, None)], id="no-final-newline"),
    pytest.param(b"", [], id="empty-body"),
    pytest.param(b"\n\n  \n\t\na 1\n\n", [(b"a", 1.0, None)], id="blank-and-whitespace-lines"),
    pytest.param(b'a{b="c"} 2 123\n', [(b'a{b="c"}', 2.0, 123)], id="labels-and-timestamp"),
    pytest.param(b"a  1 \t 5 \n", [(b"a", 1.0, 5)], id="any-whitespace-between-tokens"),
    pytest.param(b'a{b="c",} 1\n', [(b'a{b="c",}', 1.0, None)], id="trailing-comma-ok"),
    pytest.param(b"a{} 1\n", [(b"a{}", 1.0, None)], id="empty-label-set"),
    pytest.param(b'a {b="c"} 1\n', [(b'a {b="c"}', 1.0, None)], id="space-before-brace-in-key"),
    pytest.param(b"# just a comment\n#HELP a x\n#\na 1\n", [(b"a", 1.0, None)], id="comments"),
    pytest.param(b"  # indented comment\na 1\n", [(b"a", 1.0, None)], id="indented-comment"),
    pytest.param(b"a 1 0\n", [(b"a", 1.0, 0)], id="zero-timestamp"),
    pytest.param(
        b"a 1 9223372036854775807\n", [(b"a", 1.0, 9223372036854775807)], id="int64-max-timestamp"
    ),
    pytest.param(
        b"a .5\nb 5.\nc +7\nd 1e3\n",
        [(b"a", 0.5, None), (b"b", 5.0, None), (b"c", 7.0, None), (b"d", 1000.0, None)],
        id="go-float-spellings",
    ),
    pytest.param(
        b"a +inf\nb -Infinity\nc Inf\nd INF\n",
        [(b"a", INF, None), (b"b", -INF, None), (b"c", INF, None), (b"d", INF, None)],
        id="inf-spellings",
    ),
    pytest.param(b"a 1e-400\n", [(b"a", 0.0, None)], id="underflow-is-zero"),
    pytest.param(b"a_created 1.6e9\n", [(b"a_created", 1.6e9, None)], id="created-is-a-sample"),
    pytest.param(b"a 1\na 2\n", [(b"a", 1.0, None), (b"a", 2.0, None)], id="duplicates-kept"),
    pytest.param(b"m-1 2\n", [(b"m", -1.0, 2)], id="lexer-value-right-after-name"),
    pytest.param(b'm{a="b"}1\n', [(b'm{a="b"}', 1.0, None)], id="value-right-after-brace"),
    pytest.param(b'm{a="x\ny"} 1\n', [(b'm{a="x\ny"}', 1.0, None)], id="raw-newline-in-value"),
    pytest.param(b"# TYPE x gauge\n# TYPE x counter\nx 1\n", [(b"x", 1.0, None)], id="retype"),
]


@pytest.mark.parametrize(("body", "expected"), VALID_TEXT)
def test_valid_text_samples(body: bytes, expected: list[tuple[bytes, float, int | None]]) -> None:
    """Valid text bodies give exactly the expected (key, value, ts) samples in order."""
    exp = parse(body, openmetrics=False)
    assert exp.samples == expected


LABELS = [
    pytest.param(b'a{b="c",d="e"} 1\n', [("__name__", "a"), ("b", "c"), ("d", "e")], id="order"),
    pytest.param(b"a 1\n", [("__name__", "a")], id="no-labels"),
    pytest.param(b'a{b=""} 1\n', [("__name__", "a"), ("b", "")], id="empty-value-kept"),
    pytest.param(
        b'a{b="q\\"x\\\\y\\nz"} 1\n', [("__name__", "a"), ("b", 'q"x\\y\nz')], id="escapes"
    ),
    pytest.param(b'a{b="\\t"} 1\n', [("__name__", "a"), ("b", "\\t")], id="unknown-escape-kept"),
    pytest.param(
        b'a{b="}{,= \\"x\\""} 1\n', [("__name__", "a"), ("b", '}{,= "x"')], id="punctuation"
    ),
    pytest.param(b'a{b="x,c=\\"y"} 1\n', [("__name__", "a"), ("b", 'x,c="y')], id="fake-label"),
    pytest.param('a{b="héllo"} 1\n'.encode(), [("__name__", "a"), ("b", "héllo")], id="utf8"),
    pytest.param(
        b'{"my.metric", "a.b"="c"} 1\n', [("__name__", "my.metric"), ("a.b", "c")], id="quoted"
    ),
    pytest.param(b'{"m\\"q"} 1\n', [("__name__", 'm"q')], id="quoted-name-with-escape"),
    pytest.param(b'a { b = "c" , } 1\n', [("__name__", "a"), ("b", "c")], id="spaces-in-set"),
]


@pytest.mark.parametrize(("body", "expected"), LABELS)
def test_labels(body: bytes, expected: list[tuple[str, str]]) -> None:
    """labels() returns __name__ first, then the labels in body order, unescaped."""
    exp = parse(body, openmetrics=False)
    assert exp.labels(exp.samples[0][0]) == expected


def test_metadata_text() -> None:
    """HELP/TYPE fill Metadata; untyped reads as unknown; HELP decodes only \\\\ and \\n."""
    body = (
        b"# HELP a first\n# HELP a Help with \\\\ and \\n and \\t.\n# TYPE a counter\na 1\n"
        b"# TYPE b untyped\nb 1\n# TYPE c summary\n# HELP d\n"
    )
    exp = parse(body, openmetrics=False)
    assert exp.metadata == {
        "a": Metadata(type="counter", help="Help with \\ and \n and \\t."),
        "b": Metadata(type="unknown"),
        "c": Metadata(type="summary"),
        "d": Metadata(),
    }


# ----------------------------------------------------------------------------- invalid bodies
INVALID_TEXT = [
    pytest.param(b"a 1\nb{ 2\nc 3", "expected label name", 2, [b"a"], id="spec-11-16"),
    pytest.param(b"bar 1 -1000\n", "expected timestamp or new record", 1, [], id="neg-timestamp"),
    pytest.param(b"a 1 1.5\n", "expected next entry after timestamp", 1, [], id="float-ts"),
    pytest.param(b"a 1 12x\n", "expected next entry after timestamp", 1, [], id="ts-junk"),
    pytest.param(b"a 1 2 3\n", "expected next entry after timestamp", 1, [], id="two-timestamps"),
    pytest.param(
        b"a 1 9223372036854775808\n", "value out of range", 1, [], id="timestamp-overflow"
    ),
    pytest.param(b"u 1_000\n", "unsupported character in float", 1, [], id="underscore"),
    pytest.param(b"u 0x1p3\n", "unsupported character in float", 1, [], id="hex-p"),
    pytest.param(b"n 0x10\n", "invalid syntax", 1, [], id="hex"),
    pytest.param(b"n +nan\n", "invalid syntax", 1, [], id="signed-nan"),
    pytest.param(b"n infin\n", "invalid syntax", 1, [], id="partial-infinity"),
    pytest.param(b"n 1e400\n", "value out of range", 1, [], id="overflow"),
    pytest.param(b"n \xd9\xa1\n", "invalid syntax", 1, [], id="non-ascii-digit"),
    pytest.param(b"a 1\n   m 1\n", "leading whitespace", 2, [b"a"], id="leading-spaces"),
    pytest.param(b"a 1\r\nb 2\r\n", "invalid syntax", 1, [], id="crlf"),
    pytest.param(b"# TYPE x info\n", 'invalid metric type "info"', 1, [], id="info-in-text"),
    pytest.param(b"# TYPE x unknown\n", 'invalid metric type "unknown"', 1, [], id="unknown"),
    pytest.param(b"# TYPE x Counter\n", "invalid metric type", 1, [], id="type-case"),
    pytest.param(b"# TYPE x  counter\n", 'invalid metric type " counter"', 1, [], id="type-2sp"),
    pytest.param(b"# HELP 1x y\n", "expected metric name after HELP", 1, [], id="help-name"),
    pytest.param(b"# HELP x \xff\n", "not a valid utf8 string", 1, [], id="help-utf8"),
    pytest.param(b'a{b="\xff"} 1\n', "invalid UTF-8 label value", 1, [], id="value-utf8"),
    pytest.param(b'a{b="c} 1\n', "expected", 1, [], id="unterminated-value"),
    pytest.param(b"a{b} 1\n", "expected equal", 1, [], id="missing-equal"),
    pytest.param(b"a{b=c} 1\n", "expected label value", 1, [], id="unquoted-value"),
    pytest.param(b'a{b="c" d="e"} 1\n', "expected comma or brace close", 1, [], id="no-comma"),
    pytest.param(b'a{b="c",,} 1\n', "expected label name", 1, [], id="double-comma"),
    pytest.param(b"a\n", "expected value after metric", 1, [], id="no-value"),
    pytest.param(b'a{b="c"}{ 1\n', "expected value after metric", 1, [], id="two-sets"),
    pytest.param(b'{b="c"} 1\n', "metric name not set", 1, [], id="no-name"),
    pytest.param(b'{"a","b"} 1\n', "metric name already set", 1, [], id="two-quoted-names"),
    pytest.param(b'a{"b"} 1\n', "metric name already set", 1, [], id="name-and-quoted"),
    pytest.param(b"}a 1\n", "expected a valid start token", 1, [], id="bad-start"),
    pytest.param(b"a 1\n\x00\n", "expected a valid start token", 2, [b"a"], id="nul"),
]


@pytest.mark.parametrize(("body", "fragment", "line", "partial"), INVALID_TEXT)
def test_invalid_text(body: bytes, fragment: str, line: int, partial: list[bytes]) -> None:
    """Invalid text bodies raise a located ParseError that carries the samples before it."""
    error = _error(body, openmetrics=False)
    assert isinstance(error, ParseError)
    assert fragment in error.message
    assert error.line == line
    assert [key for key, _, _ in error.partial.samples] == partial


def test_error_message_shape() -> None:
    """Messages follow Prometheus's parseError wording with the 1-based line in str()."""
    error = _error(b"a 1\nbar 1 -1000\n", openmetrics=False)
    assert str(error) == (
        'line 2: expected timestamp or new record, got "-1000" while parsing: "bar 1 -1000"'
    )


@pytest.mark.parametrize(
    ("body", "dup"),
    [
        pytest.param(b'a{b="1",b="2"} 1\n', "b", id="same-label"),
        pytest.param(b'a{__name__="x"} 1\n', "__name__", id="name-label"),
        pytest.param(b'{"a", __name__="x"} 1\n', "__name__", id="quoted-name-label"),
    ],
)
def test_duplicate_label_names_fail_in_labels(body: bytes, dup: str) -> None:
    """A repeated label name fails the scrape from labels() with the storage wording."""
    exp = parse(b"ok 1\n" + body, openmetrics=False)
    with pytest.raises(ExpositionError, match=f'label name "{dup}" is not unique') as info:
        exp.labels(exp.samples[1][0])
    assert info.value.line == 2
    assert [key for key, _, _ in info.value.partial.samples] == [b"ok"]


# ----------------------------------------------------------------------------- OpenMetrics
VALID_OM = [
    pytest.param(b"a 1\n# EOF\n", [(b"a", 1.0, None)], id="minimal"),
    pytest.param(b"a 1\n# EOF", [(b"a", 1.0, None)], id="eof-without-newline"),
    pytest.param(b"# EOF\n", [], id="only-eof"),
    pytest.param(b"", [], id="empty-body"),
    pytest.param(
        b"c_total 3 1700000000.5\n# EOF\n", [(b"c_total", 3.0, 1700000000500)], id="spec-11-21"
    ),
    pytest.param(b"a 1 -1.5\n# EOF\n", [(b"a", 1.0, -1500)], id="negative-ts-truncates"),
    pytest.param(b"a 1 0.0019\n# EOF\n", [(b"a", 1.0, 1)], id="ts-truncated-toward-zero"),
    pytest.param(b"a 1 1e3\n# EOF\n", [(b"a", 1.0, 1000000)], id="ts-exponent"),
    pytest.param(b"c_created 1.6e9\n# EOF\n", [(b"c_created", 1.6e9, None)], id="created"),
    pytest.param(b'{"q.x",b="c"} 1\n# EOF\n', [(b'{"q.x",b="c"}', 1.0, None)], id="quoted"),
]


@pytest.mark.parametrize(("body", "expected"), VALID_OM)
def test_valid_openmetrics(body: bytes, expected: list[tuple[bytes, float, int | None]]) -> None:
    """Valid OpenMetrics bodies give the expected samples; timestamps become int ms."""
    assert parse(body, openmetrics=True).samples == expected


INVALID_OM = [
    pytest.param(b"a 1\n\n# EOF\n", "is not a valid start token", 2, [b"a"], id="blank-line"),
    pytest.param(b"a 1\n", "data does not end with # EOF", 0, [b"a"], id="no-eof"),
    pytest.param(b"a 1", "data does not end with # EOF", 0, [], id="no-eof-no-newline"),
    pytest.param(b"a 1\n# EOF\nb 1\n", "unexpected data after # EOF", 2, [b"a"], id="after"),
    pytest.param(b"# EOF\n\n", "unexpected data after # EOF", 1, [], id="two-newlines"),
    pytest.param(b"a  1\n# EOF\n", "expected value after metric", 1, [], id="double-space"),
    pytest.param(b"a\t1\n# EOF\n", "expected value after metric", 1, [], id="tab"),
    pytest.param(b'a{b="c",} 1\n# EOF\n', "expected label name", 1, [], id="trailing-comma"),
    pytest.param(b'a{b="c", d="e"} 1\n# EOF\n', "expected label name", 1, [], id="space-in-set"),
    pytest.param(b'a{b="x\ny"} 1\n# EOF\n', "expected label value", 1, [], id="raw-newline"),
    pytest.param(b"a 1 \n# EOF\n", "expected timestamp", 1, [], id="trailing-space"),
    pytest.param(b"a 1 NaN\n# EOF\n", "invalid timestamp NaN", 1, [], id="nan-ts"),
    pytest.param(b"a 1 +Inf\n# EOF\n", "invalid timestamp +Inf", 1, [], id="inf-ts"),
    pytest.param(b"a 1 1e300\n# EOF\n", "invalid timestamp", 1, [], id="ts-out-of-int64"),
    pytest.param(b"a 1_0\n# EOF\n", "unsupported character in float", 1, [], id="underscore"),
    pytest.param(b"# comment\n# EOF\n", "is not a valid start token", 1, [], id="comment"),
    pytest.param(b"#HELP a x\n# EOF\n", "is not a valid start token", 1, [], id="no-space"),
    pytest.param(b"# TYPE a untyped\n# EOF\n", "invalid metric type", 1, [], id="untyped"),
    pytest.param(b"# HELP a\n# EOF\n", "expected text in HELP", 1, [], id="help-no-text"),
    pytest.param(
        b"# UNIT a_x seconds\n# EOF\n",
        'unit "seconds" not a suffix of metric "a_x"',
        1,
        [],
        id="unit-suffix",
    ),
    pytest.param(
        b"# UNIT aseconds seconds\n# EOF\n", "not a suffix", 1, [], id="unit-no-underscore"
    ),
    pytest.param(
        b'a 1 # {"q"} 1\n# EOF\n', "expected label name", 1, [], id="exemplar-quoted-name"
    ),
    pytest.param(b'a 1 # {b="c"}\n# EOF\n', "expected value after exemplar", 1, [], id="ex-value"),
    pytest.param(
        b'a 1 # {b="c"} 1 NaN\n# EOF\n', "invalid exemplar timestamp", 1, [], id="ex-nan-ts"
    ),
    pytest.param(b"a 1 # x\n# EOF\n", "invalid syntax", 1, [], id="hash-as-timestamp"),
]


@pytest.mark.parametrize(("body", "fragment", "line", "partial"), INVALID_OM)
def test_invalid_openmetrics(body: bytes, fragment: str, line: int, partial: list[bytes]) -> None:
    """Invalid OpenMetrics bodies raise a located ParseError with the partial samples."""
    error = _error(body, openmetrics=True)
    assert fragment in error.message
    assert error.line == line
    assert [key for key, _, _ in error.partial.samples] == partial


def test_openmetrics_metadata_and_exemplars() -> None:
    """OpenMetrics HELP (with \\" escapes), TYPE, UNIT and exemplars are all reported."""
    body = (
        b'# HELP r_seconds Say \\"hi\\".\n# TYPE r_seconds counter\n# UNIT r_seconds seconds\n'
        b'r_seconds_total 1 # {trace="a\\"b"} NaN 2.5\n'
        b'r_seconds_created 5 7 # {id=""} 3\n# UNIT empty \n# EOF\n'
    )
    exp = parse(body, openmetrics=True)
    assert exp.metadata["r_seconds"] == Metadata(type="counter", help='Say "hi".', unit="seconds")
    assert exp.metadata["empty"] == Metadata()
    first = exp.exemplars[0]
    assert first.labels == (("trace", 'a"b'),)
    assert float_bits(first.value) == NORMAL_NAN_BITS
    assert first.ts_ms == 2500
    assert exp.exemplars[1] == Exemplar(labels=(("id", ""),), value=3.0, ts_ms=None)
    assert exp.samples[1] == (b"r_seconds_created", 5.0, 7000)


# ----------------------------------------------------------------------------- values
@pytest.mark.parametrize("spelling", [b"NaN", b"nan", b"NAN", b"nAn"])
@pytest.mark.parametrize("openmetrics", [False, True], ids=["text", "om"])
def test_nan_is_normalised(spelling: bytes, openmetrics: bool) -> None:
    """Every NaN spelling arrives with the bits 0x7ff8000000000001 (spec §12)."""
    body = b"a " + spelling + b"\n" + (b"# EOF\n" if openmetrics else b"")
    ((_, value, _),) = parse(body, openmetrics=openmetrics).samples
    assert float_bits(value) == NORMAL_NAN_BITS


@pytest.mark.parametrize(
    ("body", "openmetrics", "expected"),
    [
        pytest.param(b'# TYPE h histogram\nh_bucket{le="1"} 1\n', False, "1.0", id="histogram"),
        pytest.param(b'# TYPE s summary\ns{quantile="0.50"} 1\n', False, "0.5", id="summary"),
        pytest.param(b'# TYPE g gauge\ng{le="1"} 1\n', False, "1", id="gauge-raw"),
        pytest.param(b'h_bucket{le="1"} 1\n', False, "1", id="no-type-raw"),
        pytest.param(b'# TYPE s summary\ns{le="1"} 1\n', False, "1", id="le-in-summary-raw"),
        pytest.param(
            b'# TYPE h histogram\n# HELP u x\nu{le="1"} 1\n', False, "1.0", id="type-stays"
        ),
        pytest.param(
            b'# TYPE h histogram\n# TYPE u untyped\nu{le="1"} 1\n', False, "1", id="type-reset"
        ),
        pytest.param(
            b'# TYPE g gaugehistogram\ng_bucket{le="1"} 1\n# EOF\n', True, "1.0", id="om-gh"
        ),
        pytest.param(
            b'# TYPE h histogram\nh_bucket{le="1"} 1\n# EOF\n', True, "1.0", id="om-histogram"
        ),
        pytest.param(
            b'# TYPE h histogram\nh_bucket{\tle = "1"} 1\n', False, "1.0", id="slow-path-key"
        ),
    ],
)
def test_canonicalisation_follows_type_in_force(
    body: bytes, openmetrics: bool, expected: str
) -> None:
    """le/quantile are canonicalised only under the TYPE in force where the key appeared."""
    exp = parse(body, openmetrics=openmetrics)
    assert exp.labels(exp.samples[0][0])[1][1] == expected


def test_first_occurrence_decides_the_type() -> None:
    """A key seen under histogram and later under gauge uses the first TYPE in force."""
    body = b'# TYPE h histogram\nh{le="1"} 1\n# TYPE h gauge\nh{le="1"} 2\n'
    exp = parse(body, openmetrics=False)
    assert exp.labels(b'h{le="1"}') == [("__name__", "h"), ("le", "1.0")]


# ----------------------------------------------------------------------------- fixtures
def test_node_exporter_fixture() -> None:
    """The captured node_exporter body takes the fast path and yields all 507 series."""
    body = node_exporter_body()
    exp = parse(body, openmetrics=False)
    assert len(exp.samples) == 507
    assert _fast(body, openmetrics=False) is not None
    assert exp.metadata["go_gc_duration_seconds"].type == "summary"
    assert exp.labels(b'go_gc_duration_seconds{quantile="0"}')[1] == ("quantile", "0.0")


def test_ksm_body_shape() -> None:
    """The kube-state-metrics-shaped benchmark body has 2,000 series with 8 labels each."""
    exp = parse(ksm_body(), openmetrics=False)
    assert len(exp.samples) == 2000
    assert all(len(exp.labels(key)) == 9 for key, _, _ in exp.samples)
    assert len(exp.metadata) == 20


GOLDEN = [
    pytest.param("docs_example.prom", False, 20, id="docs-example"),
    pytest.param("text_edge.prom", False, 20, id="text-edge"),
    pytest.param("om_example.om", True, 21, id="om-example"),
]


@pytest.mark.parametrize(("name", "openmetrics", "count"), GOLDEN)
def test_golden_fixture_counts(name: str, openmetrics: bool, count: int) -> None:
    """Each golden fixture parses to its known number of samples."""
    body = (FIXTURES / name).read_bytes()
    assert len(parse(body, openmetrics=openmetrics).samples) == count


def _all_valid_bodies() -> list[tuple[str, bytes, bool]]:
    """Every valid fixture and table body, with its format."""
    bodies = [(p.name, p.read_bytes(), p.suffix == ".om") for p in sorted(FIXTURES.iterdir())]
    bodies += [("node_exporter", node_exporter_body(), False), ("ksm", ksm_body(), False)]
    bodies += [(str(p.id), p.values[0], False) for p in VALID_TEXT + LABELS]  # type: ignore[misc]
    bodies += [(str(p.id), p.values[0], True) for p in VALID_OM]  # type: ignore[misc]
    return bodies


@pytest.mark.parametrize(
    ("body", "openmetrics"),
    [pytest.param(body, om, id=name) for name, body, om in _all_valid_bodies()],
)
def test_fast_and_slow_paths_agree(body: bytes, openmetrics: bool) -> None:
    """Whenever the fast path accepts a body, the slow path gives identical results."""
    slow = _slow(body, openmetrics=openmetrics) if body else None
    fast = _fast(body, openmetrics=openmetrics) if body else None
    if fast is None or slow is None:
        return
    assert fast.samples == slow.samples
    assert fast.metadata == slow.metadata
    assert fast.exemplars == slow.exemplars
    for key, _, _ in fast.samples:
        assert fast.labels(key) == slow.labels(key)


def test_partial_is_independent_of_later_lines() -> None:
    """The partial result of a failed parse holds only what preceded the bad line."""
    error = _error(b"# TYPE a counter\na 1\nb 2\nc{ 3\nd 4\n", openmetrics=False)
    assert error.line == 4
    assert [key for key, _, _ in error.partial.samples] == [b"a", b"b"]
    assert error.partial.metadata == {"a": Metadata(type="counter")}
