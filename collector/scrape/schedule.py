"""Scrape scheduling: spread-out first scrapes, a drift-free ticker, timestamp alignment.

Pure code with injected clocks. Two clocks are used, never mixed (STYLE rule 9):

* *loop time* (``loop.time()``, monotonic seconds) decides **when** to scrape: `Ticker`;
* *wall time* (``time.time_ns()``, integer nanoseconds) stamps **samples** and places the first
  scrape on a host-independent grid: `first_delay` and `TimestampAligner`.

Prometheus counterpart: ``Target.offset`` in ``scrape/target.go`` and the ticker/alignment part
of ``scrapeLoop.run`` in ``scrape/scrape.go`` (spec §4.1).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from collector.scrape.target import fnv1a64

__all__ = [
    "ALIGN_TOLERANCE_NS",
    "Ticker",
    "TimestampAligner",
    "first_delay",
    "go_quote",
    "offset_seed",
    "render_labels",
]

ALIGN_TOLERANCE_NS = 2_000_000
"""Prometheus's ``ScrapeTimestampTolerance``: 2 ms."""

_NS = 1_000_000_000


def render_labels(labels: Sequence[tuple[str, str]]) -> str:
    """Prometheus's ``Labels.String()`` shape: ``{a="b", c="d"}`` (``{}`` when empty)."""
    inner = ", ".join(f"{name}={go_quote(value)}" for name, value in labels)
    return "{" + inner + "}"


def go_quote(s: str) -> str:
    """Go's ``strconv.Quote`` for the characters that occur in label values."""
    out = ['"']
    for ch in s:
        if ch in '"\\':
            out.append("\\" + ch)
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\t":
            out.append("\\t")
        elif ch == "\r":
            out.append("\\r")
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\x{ord(ch):02x}")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def offset_seed(hostname: str, external_labels: Sequence[tuple[str, str]]) -> int:
    """The per-agent seed XORed into every target's offset (spec §4.1).

    ``FNV-1a-64(fqdn + '{a="b", ...}')``, so HA replicas with different external labels or
    hostnames scrape the same target at different instants.
    """
    return fnv1a64((hostname + render_labels(external_labels)).encode("utf-8", "surrogateescape"))


def interval_ns(interval: float) -> int:
    """A scrape interval in whole nanoseconds (Go's ``time.Duration``)."""
    return max(1, round(interval * _NS))


def first_delay(*, fingerprint: int, seed: int, interval: float, now_ns: int) -> float:
    """Seconds from ``now_ns`` (wall time) until the target's first scrape.

    The target is scraped at the wall instants ``t`` where ``t mod I == (fp XOR seed) mod I``;
    the first such instant lies in ``(0, I]`` from now. Deterministic, no randomness.
    """
    i_ns = interval_ns(interval)
    offset = (fingerprint ^ seed) % i_ns
    wait = (i_ns - now_ns % i_ns) + offset
    if wait > i_ns:
        wait -= i_ns
    return wait / _NS


class Ticker:
    """A drift-free ticker on loop time: ticks at ``start + k*interval``.

    Like Go's ``time.Ticker`` (1-slot channel): if the consumer is late, one missed tick fires
    immediately and the others are skipped, then ticking resumes on the grid.
    """

    __slots__ = ("_index", "interval", "start")

    def __init__(self, *, start: float, interval: float) -> None:
        self.start = start
        self.interval = interval
        self._index = 0
        """Index of the last consumed tick (0 = the start itself)."""

    def next_tick(self, now: float) -> float:
        """Consume the next tick; return the loop time at which it fires (``now`` if overdue)."""
        due = self.start + (self._index + 1) * self.interval
        if due > now:
            self._index += 1
            return due
        # Overdue: the pending tick fires now; every other missed tick is dropped.
        self._index = math.floor((now - self.start) / self.interval)
        return now

    def peek(self) -> float:
        """The loop time of the next grid tick, without consuming it."""
        return self.start + (self._index + 1) * self.interval

    def next_after(self, now: float) -> float:
        """The first grid point strictly after ``now`` (the ticker keeps ticking meanwhile)."""
        k = math.floor((now - self.start) / self.interval) + 1
        return self.start + k * self.interval


class TimestampAligner:
    """Snaps scrape timestamps to an ideal ``start + k*I`` grid when within tolerance.

    Tolerance is ``min(I/100, 2 ms)``; all samples without explicit timestamps and all report
    series of a scrape use the single timestamp returned here. Integer nanoseconds throughout,
    so millisecond timestamps are exact.
    """

    __slots__ = ("_aligned", "_interval", "_tolerance")

    def __init__(self, *, start_ns: int, interval: float) -> None:
        self._aligned = start_ns
        self._interval = interval_ns(interval)
        self._tolerance = min(self._interval // 100, ALIGN_TOLERANCE_NS)

    def timestamp(self, now_ns: int) -> int:
        """The scrape timestamp for a scrape starting at wall time ``now_ns`` (ns)."""
        behind = now_ns - self._aligned
        if behind >= self._interval:
            self._aligned += (behind // self._interval) * self._interval
            behind = now_ns - self._aligned
        if behind <= self._tolerance:
            return self._aligned
        return now_ns
