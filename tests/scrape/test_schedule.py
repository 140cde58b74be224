"""Offsets, the ticker and timestamp alignment, on injected clocks (spec §4.1)."""

from __future__ import annotations

from collector.scrape.schedule import (
    Ticker,
    TimestampAligner,
    first_delay,
    offset_seed,
    render_labels,
)
from collector.scrape.target import fnv1a64

S = 1_000_000_000
BASE = 1_699_999_980 * S
"""A wall time divisible by 15 s and 60 s."""


def test_seed_is_fnv_of_host_and_rendered_labels() -> None:
    """seed = FNV-1a64(hostname + '{a="b", c="d"}')."""
    assert render_labels(()) == "{}"
    assert render_labels((("a", "b"), ("c", 'd"'))) == '{a="b", c="d\\""}'
    assert offset_seed("host", (("a", "b"),)) == fnv1a64(b'host{a="b"}')
    assert offset_seed("host", ()) != offset_seed("other", ())


def test_first_delay_lands_on_offset_slot() -> None:
    """The first scrape happens at the first t with t mod I == (fp ^ seed) mod I, within (0, I]."""
    interval = 15.0
    now = BASE + 3 * S  # 3 s past a 15 s boundary
    delay = first_delay(fingerprint=7 * S, seed=0, interval=interval, now_ns=now)
    assert delay == 4.0  # offset 7 s: 3 s -> 7 s
    delay = first_delay(fingerprint=2 * S, seed=0, interval=interval, now_ns=now)
    assert delay == 14.0  # offset 2 s already passed: next one
    delay = first_delay(fingerprint=3 * S, seed=0, interval=interval, now_ns=now)
    assert delay == 15.0  # exactly now: a full interval (range is (0, I])


def test_first_delay_uses_seed_xor() -> None:
    """The seed is XORed into the fingerprint."""
    now = BASE
    a = first_delay(fingerprint=5 * S, seed=0, interval=60.0, now_ns=now)
    b = first_delay(fingerprint=5 * S, seed=1, interval=60.0, now_ns=now)
    assert a == 5.0
    assert b == 5.0 + 1e-9


def test_ticker_is_drift_free() -> None:
    """Ticks land on start + k*I regardless of how late the consumer asks."""
    t = Ticker(start=100.0, interval=10.0)
    assert t.next_tick(100.5) == 110.0
    assert t.next_tick(110.2) == 120.0
    assert t.next_tick(125.0) == 130.0


def test_ticker_skips_missed_ticks() -> None:
    """An overrun fires one pending tick at once, then resumes on the grid."""
    t = Ticker(start=0.0, interval=10.0)
    assert t.next_tick(35.0) == 35.0  # ticks 10, 20, 30 were missed: one fires now
    assert t.next_tick(35.1) == 40.0
    assert t.peek() == 50.0


def test_alignment_within_tolerance() -> None:
    """Within min(I/100, 2 ms) of the ideal grid the aligned timestamp is used."""
    start = 1_700_000_000 * S
    al = TimestampAligner(start_ns=start, interval=15.0)
    assert al.timestamp(start + 15 * S + 1_500_000) == start + 15 * S
    assert al.timestamp(start + 30 * S + 2_000_000) == start + 30 * S
    assert al.timestamp(start + 45 * S + 2_000_001) == start + 45 * S + 2_000_001
    assert al.timestamp(start + 90 * S) == start + 90 * S  # skipped intervals realign


def test_alignment_tolerance_is_one_percent_for_short_intervals() -> None:
    """For I = 100 ms the tolerance is 1 ms."""
    start = 1_700_000_000 * S
    al = TimestampAligner(start_ns=start, interval=0.1)
    assert al.timestamp(start + 100_000_000 + 1_000_000) == start + 100_000_000
    assert al.timestamp(start + 200_000_000 + 1_000_001) == start + 200_000_000 + 1_000_001


def test_next_after_is_the_next_grid_point() -> None:
    """next_after gives the first grid point strictly after now, without consuming ticks."""
    t = Ticker(start=0.0, interval=10.0)
    assert t.next_after(25.0) == 30.0
    assert t.next_after(30.0) == 40.0
    assert t.peek() == 10.0
