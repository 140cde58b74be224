"""Prometheus durations and byte sizes (spec §8.4): parsing, canonical rendering, errors."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from collector.model.duration import format_duration, parse_duration, parse_size

DURATIONS = [
    ("0", 0.0),
    ("0s", 0.0),
    ("1ms", 0.001),
    ("30ms", 0.03),
    ("1s", 1.0),
    ("1s500ms", 1.5),
    ("1m", 60.0),
    ("1m30s", 90.0),
    ("90s", 90.0),
    ("1h", 3600.0),
    ("1h30m", 5400.0),
    ("1d", 86400.0),
    ("1w", 7 * 86400.0),
    ("2w", 14 * 86400.0),
    ("1y", 365 * 86400.0),
    ("1y2w3d4h5m6s7ms", ((((365 + 17) * 24 + 4) * 60 + 5) * 60 + 6) + 0.007),
    ("0d5m", 300.0),
]


@pytest.mark.parametrize(("text", "seconds"), DURATIONS)
def test_parse_duration(text: str, seconds: float) -> None:
    """Valid Prometheus durations parse to the expected number of seconds."""
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty duration string"),
        ("5x", 'not a valid duration string: "5x"'),
        ("1.5s", 'not a valid duration string: "1.5s"'),
        ("30s1m", 'not a valid duration string: "30s1m"'),
        ("1m1m", 'not a valid duration string: "1m1m"'),
        ("-1s", 'not a valid duration string: "-1s"'),
        ("30", 'not a valid duration string: "30"'),
        (" 1s", 'not a valid duration string: " 1s"'),
        ("1S", 'not a valid duration string: "1S"'),
        ("1µs", 'not a valid duration string: "1µs"'),
        ("999999999999y", "duration out of range"),
    ],
)
def test_parse_duration_errors(text: str, message: str) -> None:
    """Invalid durations raise ValueError with Prometheus's wording."""
    with pytest.raises(ValueError) as info:
        parse_duration(text)
    assert str(info.value) == message


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0.0, "0s"),
        (0.0004, "0s"),
        (0.001, "1ms"),
        (0.03, "30ms"),
        (1.0, "1s"),
        (1.5, "1s500ms"),
        (10.0, "10s"),
        (60.0, "1m"),
        (90.0, "1m30s"),
        (3600.0, "1h"),
        (86400.0, "1d"),
        (10 * 86400.0, "10d"),
        (14 * 86400.0, "2w"),
        (8 * 86400.0, "8d"),
        (365 * 86400.0, "1y"),
        (366 * 86400.0, "366d"),
        (371 * 86400.0, "53w"),
        (86400.0 + 1.0, "1d1s"),
    ],
)
def test_format_duration(seconds: float, text: str) -> None:
    """Durations render the way Prometheus prints them (y/w only when exact)."""
    assert format_duration(seconds) == text


def test_format_duration_negative() -> None:
    """A negative duration has no Prometheus spelling and is refused."""
    with pytest.raises(ValueError):
        format_duration(-1.0)


@given(st.integers(min_value=0, max_value=10**12))
def test_duration_round_trip(ms: int) -> None:
    """format_duration output always parses back to the same number of milliseconds."""
    assert round(parse_duration(format_duration(ms / 1000)) * 1000) == ms


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("0", 0),
        ("+0", 0),
        ("0B", 0),
        ("100B", 100),
        ("1KB", 1024),
        ("1KiB", 1024),
        ("10MB", 10 * 1024**2),
        ("10MiB", 10 * 1024**2),
        ("1GB", 1024**3),
        ("2TiB", 2 * 1024**4),
        ("1PB", 1024**5),
        ("1EiB", 1024**6),
        ("1.5KB", 1536),
        ("1KB512B", 1536),
        ("1GiB512MiB", 1536 * 1024**2),
    ],
)
def test_parse_size(text: str, size: int) -> None:
    """Byte sizes are base 2 for both KB and KiB spellings, as in Prometheus."""
    assert parse_size(text) == size


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("", "invalid size"),
        ("100", "missing unit"),
        ("1kB", "unknown unit"),
        ("1XB", "unknown unit"),
        ("KB", "expected a number"),
        ("1KB1KiB", "invalid size"),
        ("-1KB", "must not be negative"),
        ("1 KB", "unknown unit"),
    ],
)
def test_parse_size_errors(text: str, fragment: str) -> None:
    """Unknown units, mixed unit families, bare numbers and negatives are refused."""
    with pytest.raises(ValueError) as info:
        parse_size(text)
    assert fragment in str(info.value)
