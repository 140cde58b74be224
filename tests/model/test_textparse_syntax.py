"""`collector.model.textparse.syntax`: Go number rules, escapes, quoting and the scanners."""

from __future__ import annotations

import math

import pytest

from collector.model.textparse import canonical_float
from collector.model.textparse.syntax import (
    LABEL_ESCAPES,
    TEXT_HELP_ESCAPES,
    Malformed,
    go_float,
    om_ts,
    quote,
    scan_series,
    unescape,
)
from collector.model.value import NORMAL_NAN_BITS, float_bits

CANONICAL = [
    ("1", "1.0"),
    ("0", "0.0"),
    ("-0", "0.0"),
    ("-1", "-1.0"),
    ("0.10", "0.1"),
    ("1e-05", "1e-05"),
    ("0.00001", "1e-05"),
    ("0.0001", "0.0001"),
    ("100000", "100000.0"),
    ("1e+06", "1e+06"),
    ("1000000", "1e+06"),
    ("1234567", "1.234567e+06"),
    ("2.5e-7", "2.5e-07"),
    ("1e100", "1e+100"),
    ("+Inf", "+Inf"),
    ("inf", "+Inf"),
    ("-inf", "-Inf"),
    ("NaN", "NaN"),
    ("0x1p-2", "0.25"),
    ("1_0", "1_0"),
    ("abc", "abc"),
    ("1e400", "1e400"),
    ("", ""),
]


@pytest.mark.parametrize(("raw", "canonical"), CANONICAL, ids=[r or "empty" for r, _ in CANONICAL])
def test_canonical_float(raw: str, canonical: str) -> None:
    """le/quantile values are re-rendered like Prometheus formatOpenMetricsFloat."""
    assert canonical_float(raw) == canonical


@pytest.mark.parametrize(
    ("token", "expected"),
    [
        (b"1", 1.0),
        (b"-.5", -0.5),
        (b"5.", 5.0),
        (b"1E3", 1000.0),
        (b"+Inf", math.inf),
        (b"-infinity", -math.inf),
        (b"1e-400", 0.0),
    ],
)
def test_go_float_accepts_go_spellings(token: bytes, expected: float) -> None:
    """go_float takes what Go's strconv.ParseFloat takes (minus p/_ forms)."""
    assert go_float(token) == expected


def test_go_float_normalises_nan() -> None:
    """Every NaN spelling becomes Prometheus's normal NaN, by bits."""
    assert float_bits(go_float(b"nAn")) == NORMAL_NAN_BITS


@pytest.mark.parametrize(
    ("token", "fragment"),
    [
        (b"1_000", "unsupported character in float"),
        (b"0x1p3", "unsupported character in float"),
        (b"0x10", 'parsing "0x10": invalid syntax'),
        (b"+nan", "invalid syntax"),
        (b"infin", "invalid syntax"),
        (b"1e400", 'parsing "1e400": value out of range'),
        (b"", 'parsing "": invalid syntax'),
    ],
)
def test_go_float_refusals_use_go_wording(token: bytes, fragment: str) -> None:
    """Refused values raise Malformed with strconv's error text."""
    with pytest.raises(Malformed, match=fragment):
        go_float(token)


@pytest.mark.parametrize(
    ("token", "ms"),
    [(b"1700000000.5", 1700000000500), (b"-1.5", -1500), (b"0.0019", 1), (b"1e3", 1000000)],
)
def test_om_ts_truncates_seconds_to_ms(token: bytes, ms: int) -> None:
    """OpenMetrics float-second timestamps become int ms, truncated toward zero."""
    assert om_ts(token, "timestamp") == ms


@pytest.mark.parametrize(
    ("token", "fragment"),
    [
        (b"NaN", "invalid timestamp NaN"),
        (b"-Inf", "invalid timestamp -Inf"),
        (b"1e300", "out of int64 ms range"),
    ],
)
def test_om_ts_refuses_non_finite_and_overflow(token: bytes, fragment: str) -> None:
    """Timestamps that are not finite or overflow int64 milliseconds are refused."""
    with pytest.raises(Malformed, match=fragment):
        om_ts(token, "timestamp")


def test_quote_renders_like_go_percent_q() -> None:
    """Error messages quote bytes like Go's %q: escapes, control and invalid bytes as \\x."""
    assert quote(b'a"b\\c\n\t\r') == r'"a\"b\\c\n\t\r"'
    assert quote(b"\x01\x7f\xff") == r'"\x01\x7f\xff"'
    assert quote("é".encode()) == '"é"'


def test_unescape_keeps_unknown_escapes() -> None:
    """Label escapes decode \\\\, \\" and \\n; text HELP only \\\\ and \\n; others stay."""
    assert unescape('a\\"b\\\\c\\nd\\t', LABEL_ESCAPES) == 'a"b\\c\nd\\t'
    assert unescape('a\\"b\\n', TEXT_HELP_ESCAPES) == 'a\\"b\n'
    assert unescape("plain", LABEL_ESCAPES) == "plain"


@pytest.mark.parametrize(
    ("buf", "openmetrics", "end", "name", "labels"),
    [
        (b"m 1", False, 1, b"m", []),
        (b'm{a="b",c="d"} 1', False, 14, b"m", [(b"a", b"b"), (b"c", b"d")]),
        (b'm { a = "b" , } 1', False, 15, b"m", [(b"a", b"b")]),
        (b'{"my.m","x.y"="z"} 1', True, 18, b"my.m", [(b"x.y", b"z")]),
        (b'm{a="q\\"x"} 1', True, 11, b"m", [(b"a", b'q\\"x')]),
    ],
)
def test_scan_series(
    buf: bytes, openmetrics: bool, end: int, name: bytes, labels: list[tuple[bytes, bytes]]
) -> None:
    """scan_series returns the key's end, the unescaped name and the raw label pairs."""
    assert scan_series(buf, 0, openmetrics=openmetrics, start=0) == (end, name, labels)


@pytest.mark.parametrize(
    ("buf", "openmetrics", "fragment"),
    [
        (b'm{ a="b"} 1', True, "expected label name"),
        (b'm{a="b",} 1', True, "expected label name"),
        (b'm{a="b" c="d"}', False, "expected comma or brace close"),
        (b'{a="b"} 1', False, "metric name not set"),
        (b'm{"x"} 1', False, "metric name already set"),
        (b"}", False, "expected a valid start token"),
    ],
)
def test_scan_series_errors(buf: bytes, openmetrics: bool, fragment: str) -> None:
    """Scanner errors carry Prometheus's parseError wording."""
    with pytest.raises(Malformed, match=fragment):
        scan_series(buf, 0, openmetrics=openmetrics, start=0)
