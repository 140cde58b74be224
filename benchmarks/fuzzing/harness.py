"""Running inputs against a target under its contract, and what a run found.

The contract every target is held to, input by input (`run_one`):

- only the errors its API documents may escape; the target's ``check`` catches exactly those
  (and checks their shape), so *any* exception that reaches the harness is a crash:
  ``IndexError``, ``KeyError``, ``RecursionError``, ``UnicodeDecodeError``, ``MemoryError``...
  A check may also raise `Violation` for a broken promise that is not an exception (a
  streaming parse that disagrees with the whole-body parse, a 500 from the receiver);
- no input takes more than ``limit`` (1 s) of CPU time (the thread's, so that other work on
  the machine does not count; a differential check leaves its reference computation out with
  `untimed`). Inputs run under tracemalloc, which slows allocation-heavy code several times,
  so an input over ``RETIME_SECONDS`` is run again without it and that second time is the one
  reported and held to the limit. A check still running after ``HARD_LIMIT_SECONDS`` of CPU
  is interrupted (SIGPROF) and reported as slow, so one runaway input cannot stall a run;
- memory stays proportional to the input: the tracemalloc peak of the call (above what was
  allocated before it) stays under ``target.memory_bound(len(data))``.

Tracing every input with tracemalloc costs 2-10x the input's own time, which put a million
inputs per target out of reach (config: 10 hours). A run (`Recorder`) therefore traces one
input in ``trace_every`` (64 by default) and watches every other one through the peak RSS of
the process during that input (`PeakRss`: Linux resets the peak, ``VmHWM``, when ``5`` is
written to ``/proc/self/clear_refs``; ~20 us an input): an input whose peak rose more than
``RSS_SLACK`` above the RSS it started with is run again under tracemalloc and held to its
bound like a traced one. Its blind spot: memory that the allocator kept resident from
earlier inputs is reused without raising the RSS, so an input can allocate up to that much
unseen unless it is one of the sampled ones (`benchmarks.fuzz --jobs` runs each target in a
fresh process). Where the reset is not allowed, the process's lifetime peak (``ru_maxrss``)
stands in, and an input then shows only when it raises that peak.
``trace_every=1`` traces every input (the strict mode, ``--trace-every 1``).

A crash is written to ``crash_dir/<target>/<kind>-<sha1>.bin`` after `minimize` shrank it,
so that it can become a regression fixture (``tests/fixtures/fuzz/crashers/<target>/``) once
the code is fixed. There is no list of tolerated crashes: any crash fails the run.
"""

from __future__ import annotations

import contextlib
import gc
import hashlib
import logging
import os
import random
import resource
import signal
import threading
import time
import traceback
import tracemalloc
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "LIMIT_SECONDS",
    "RSS_SLACK",
    "TRACE_EVERY",
    "Crash",
    "PeakRss",
    "Recorder",
    "Stats",
    "Target",
    "Violation",
    "merge_stats",
    "minimize",
    "run_one",
    "run_target",
    "stats_from_json",
    "stats_to_json",
    "untimed",
    "write_crash",
]

LIMIT_SECONDS = 1.0
"""No input may take longer (issue 13 §2)."""

HARD_LIMIT_SECONDS = 30.0
"""A check still running after this much CPU time is interrupted (and is a slow crash). Far
above the limit: under tracemalloc a legitimate 1 MiB input may take ten times its time."""

RETIME_SECONDS = 0.05
"""An input slower than this under tracemalloc is timed again without it (the time reported)."""

TRACE_EVERY = 64
"""One input in this many runs under tracemalloc (the others are watched through the RSS)."""

_MiB = 1 << 20

RSS_SLACK = 1 * _MiB
"""Growth of the process's peak RSS that makes an untraced input be run again traced."""

_CHAIN_SIZE = 64 * 1024
"""Inputs larger than this are not edited further (each huge input costs seconds to run)."""


class Violation(Exception):
    """A target's promise broken without an exception of its own (a check raises this)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Target:
    """One fuzz target: how to check an input, how to make the next one, what it may cost."""

    name: str
    summary: str
    """One line for the report: the API under test and the errors it may raise."""
    check: Callable[[bytes], None]
    """Feeds one input to the code under test; lets only undocumented errors escape."""
    mutate: Callable[[random.Random, bytes], bytes]
    """A structured edit of an input (`benchmarks.fuzzing.mutate.Mutator.mutate` or a
    target-specific one that decodes, edits and re-encodes)."""
    seeds: Sequence[bytes]
    """Real inputs the edits start from; each is also run once unedited."""
    memory_base: int = 4 * _MiB
    memory_factor: int = 64
    """The tracemalloc peak of one input may be ``memory_base + memory_factor * len(input)``."""
    carries_state: bool = False
    """The code under test keeps the previous input's result (http_sd's last groups) and
    frees it during the next input: the bound is then that of the larger of the two."""
    close: Callable[[], None] = lambda: None
    """Releases what the target holds (an event loop, a temporary directory)."""

    def memory_bound(self, size: int) -> int:
        """Bytes the tracemalloc peak of one input of ``size`` bytes may reach."""
        return self.memory_base + self.memory_factor * size


@dataclass(frozen=True, slots=True, kw_only=True)
class Crash:
    """One input that broke the contract."""

    target: str
    kind: str
    """``exception``, ``violation``, ``slow`` or ``memory``."""
    signature: tuple[str, str]
    """What makes two crashes the same: (exception type or kind, innermost collector frame)."""
    detail: str
    data: bytes
    seconds: float
    peak: int


@dataclass(slots=True, kw_only=True)
class Stats:
    """What one target's run found (the report's row)."""

    target: str
    inputs: int = 0
    seconds: float = 0.0
    input_bytes: int = 0
    crashes: list[Crash] = field(default_factory=list)
    """Unique crashes (by signature), minimized."""
    crash_count: int = 0
    """Every crashing input, duplicates included."""
    slowest: float = 0.0
    slowest_size: int = 0
    slowest_input: bytes = b""
    traced: int = 0
    """Inputs whose memory tracemalloc measured (sampled, or re-run after growing the RSS)."""
    rss_exact: bool = True
    """Whether every untraced input's own peak RSS was watched (`PeakRss.exact`)."""
    peak: int = 0
    """Largest tracemalloc peak of one input."""
    peak_size: int = 0
    worst_ratio: float = 0.0
    """Largest peak / bound over all inputs (< 1.0 when no memory crash)."""
    max_rss: int = 0
    """The process's peak resident set at the end of the run (bytes)."""

    @property
    def rate(self) -> float:
        """Inputs per second."""
        return self.inputs / self.seconds if self.seconds else 0.0


def _signature(exc: BaseException) -> tuple[str, str]:
    """(exception type, innermost frame in ``collector``, else innermost frame at all)."""
    frames = traceback.extract_tb(exc.__traceback__)
    ours = [f for f in frames if "/collector/" in f.filename.replace("\\", "/")]
    if not (ours or frames):
        return type(exc).__name__, "?"
    frame = (ours or frames)[-1]
    where = f"{Path(frame.filename).stem}.{frame.name}"
    return type(exc).__name__, where


def run_one(
    target: Target, data: bytes, *, limit: float = LIMIT_SECONDS, previous: int = 0
) -> tuple[float, int, Crash | None]:
    """Run one input: (seconds, tracemalloc peak above the start, the crash or None).

    Traces memory only if tracemalloc is running (`run_target` starts it).
    """
    tracing = tracemalloc.is_tracing()
    if tracing:
        tracemalloc.reset_peak()
        before = tracemalloc.get_traced_memory()[0]
    crash, seconds = _timed_call(target, data)
    peak = tracemalloc.get_traced_memory()[1] - before if tracing else 0
    if crash is not None:
        return seconds, peak, _with_cost(crash, seconds, peak)
    if tracing and seconds > RETIME_SECONDS:
        # tracemalloc slows allocation-heavy code several times: time it again without.
        seconds = _untraced_seconds(target, data)
    if seconds > limit:
        crash = Crash(
            target=target.name,
            kind="slow",
            signature=("slow", ""),
            detail=f"took {seconds:.2f} s of CPU (without tracemalloc)",
            data=data,
            seconds=seconds,
            peak=peak,
        )
        return seconds, peak, crash
    bound = target.memory_bound(max(len(data), previous if target.carries_state else 0))
    if tracing and peak > bound:
        detail = f"peak {peak / _MiB:.1f} MiB > bound {bound / _MiB:.1f} MiB ({len(data)} bytes)"
        crash = Crash(
            target=target.name,
            kind="memory",
            signature=("memory", ""),
            detail=detail,
            data=data,
            seconds=seconds,
            peak=peak,
        )
    return seconds, peak, crash


_untimed = 0.0
"""CPU seconds the current check spent inside `untimed` blocks."""


@contextlib.contextmanager
def untimed() -> Iterator[None]:
    """Leave the block's CPU time out of the input's time (a check's reference computation).

    A differential check (a streamed parse against the whole-body parse) runs the reference
    as well as the code under test; only the latter is held to the time limit.
    """
    global _untimed
    start = time.thread_time()
    try:
        yield
    finally:
        _untimed += time.thread_time() - start


def _timed_call(target: Target, data: bytes) -> tuple[Crash | None, float]:
    """Run the check; (crash, CPU seconds of this thread outside `untimed` blocks)."""
    global _untimed
    _untimed = 0.0
    start = time.thread_time()
    crash = _call(target, data, 0.0, 0)
    return crash, time.thread_time() - start - _untimed


class _Interrupted(BaseException):
    """Raised into a check from SIGPROF after ``HARD_LIMIT_SECONDS`` of CPU time.

    A `BaseException`, so that a target's ``except Exception`` cannot swallow it.
    """


def _interrupt(_signum: int, _frame: object) -> None:
    raise _Interrupted


@contextlib.contextmanager
def _hard_limit(seconds: float) -> Iterator[None]:
    """Interrupt the body after ``seconds`` of process CPU time (SIGPROF, main thread only).

    Without it one runaway input (an exponential expansion) would stall a run for minutes or
    eat the machine's memory. ``ITIMER_PROF``, not ``ITIMER_REAL``: pytest-timeout owns
    SIGALRM. Python checks for signals between bytecodes, so a single long C call (one regex
    match) finishes before the interrupt lands.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGPROF, _interrupt)
    signal.setitimer(signal.ITIMER_PROF, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_PROF, 0)
        signal.signal(signal.SIGPROF, previous)


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """No logging from the code under test (an undefined ``${VAR}`` warns once per input)."""
    level = logging.root.manager.disable
    logging.disable(logging.CRITICAL)
    try:
        yield
    finally:
        logging.disable(level)


def _call(target: Target, data: bytes, seconds: float, peak: int) -> Crash | None:
    try:
        with _quiet(), _hard_limit(HARD_LIMIT_SECONDS):
            target.check(data)
    except _Interrupted:
        return Crash(
            target=target.name,
            kind="slow",
            signature=("slow", ""),
            detail=f"interrupted after {HARD_LIMIT_SECONDS:.0f} s of CPU time",
            data=data,
            seconds=HARD_LIMIT_SECONDS,
            peak=peak,
        )
    except Violation as exc:
        return Crash(
            target=target.name,
            kind="violation",
            signature=("Violation", str(exc).split(":", 1)[0]),
            detail=str(exc)[:500],
            data=data,
            seconds=seconds,
            peak=peak,
        )
    except Exception as exc:  # anything else escaping the check is exactly what we look for
        lines = traceback.format_exception(exc, limit=-4)
        return Crash(
            target=target.name,
            kind="exception",
            signature=_signature(exc),
            detail="".join(lines)[-1500:],
            data=data,
            seconds=seconds,
            peak=peak,
        )
    return None


def _with_cost(crash: Crash, seconds: float, peak: int) -> Crash:
    return Crash(
        target=crash.target,
        kind=crash.kind,
        signature=crash.signature,
        detail=crash.detail,
        data=crash.data,
        seconds=seconds,
        peak=peak,
    )


def _untraced_seconds(target: Target, data: bytes) -> float:
    """Wall-clock time of one more run without tracemalloc and without the cyclic GC."""
    tracing = tracemalloc.is_tracing()
    if tracing:
        tracemalloc.stop()
    gc.disable()
    try:
        return _timed_call(target, data)[1]
    finally:
        gc.enable()
        if tracing:
            tracemalloc.start()


def minimize(target: Target, crash: Crash, *, budget: int = 400, seconds: float = 20.0) -> Crash:
    """A smaller input with the same crash signature: greedy removal of halves, quarters...

    At most ``budget`` attempts and ``seconds`` of time; slow crashes are not minimized
    (each attempt may take seconds).
    """
    if crash.kind == "slow":
        return crash
    # A memory crash only shows under tracemalloc; other kinds are minimized without it.
    traced = crash.kind == "memory"
    best = crash
    attempts = 0
    deadline = time.perf_counter() + seconds
    chunk = max(1, len(best.data) // 2)
    while chunk >= 1 and attempts < budget and time.perf_counter() < deadline:
        pos = 0
        while pos < len(best.data) and attempts < budget and time.perf_counter() < deadline:
            candidate = best.data[:pos] + best.data[pos + chunk :]
            attempts += 1
            _, _, found = _traced(target, candidate, 0) if traced else run_one(target, candidate)
            if found is not None and found.signature == crash.signature:
                best = found
            else:
                pos += chunk
        chunk //= 2
    return best


def write_crash(crash: Crash, crash_dir: Path) -> Path:
    """``crash_dir/<target>/<kind>-<sha1 prefix>.bin`` plus a ``.txt`` with the details."""
    folder = crash_dir / crash.target
    folder.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha1(crash.data).hexdigest()[:12]
    path = folder / f"{crash.kind}-{digest}.bin"
    path.write_bytes(crash.data)
    sig = " ".join(crash.signature)
    path.with_suffix(".txt").write_text(f"{sig}\n{crash.seconds:.3f} s\n\n{crash.detail}\n")
    return path


def _max_rss() -> int:
    """The process's peak resident set so far (bytes)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


class PeakRss:
    """How far the resident set rose above its start during one input (bytes).

    `start` resets Linux's peak (``VmHWM``) to the current RSS and `rise` reads it back, so the
    rise is that input's alone, allocations freed before it returned included. Without
    ``/proc/self/clear_refs`` the process's lifetime peak (``ru_maxrss``) stands in: the rise
    is then what the input added to the highest peak so far.
    """

    def __init__(self) -> None:
        self._status = -1
        self._clear = -1
        try:
            self._status = os.open("/proc/self/status", os.O_RDONLY)
            self._clear = os.open("/proc/self/clear_refs", os.O_WRONLY)
            os.write(self._clear, b"5")
        except OSError:
            self.close()
        self.exact = self._clear >= 0
        """Whether the peak is the input's own (not the process's lifetime peak)."""
        self._base = self._read()[1] if self.exact else _max_rss()

    def _read(self) -> tuple[int, int]:
        """(VmHWM, VmRSS) in bytes."""
        status = os.pread(self._status, 4096, 0)
        hwm = status.index(b"VmHWM:")
        rss = status.index(b"VmRSS:")
        return int(status[hwm + 6 : status.index(b"kB", hwm)]) * 1024, int(
            status[rss + 6 : status.index(b"kB", rss)]
        ) * 1024

    def rise(self) -> int:
        """The rise since the last `rise` (or since this object was made); resets the peak."""
        if self._clear < 0:
            peak = _max_rss()
            rise, self._base = peak - self._base, max(peak, self._base)
            return rise
        peak, rss = self._read()
        rise = peak - self._base
        os.write(self._clear, b"5")
        self._base = rss
        return rise

    def close(self) -> None:
        """Close the /proc files."""
        for fd in (self._status, self._clear):
            if fd >= 0:
                os.close(fd)
        self._status = self._clear = -1


class Recorder:
    """Runs inputs one by one and keeps the `Stats` (both engines feed it).

    Memory: one input in ``trace_every`` runs under tracemalloc, and so does again any input
    that raised the process's peak RSS by more than `RSS_SLACK` (see the module docs). If the
    caller already runs tracemalloc, every input is traced.
    """

    def __init__(
        self, target: Target, *, crash_dir: Path | None, trace_every: int = TRACE_EVERY
    ) -> None:
        self.target = target
        self.crash_dir = crash_dir
        self.trace_every = max(1, trace_every)
        self.stats = Stats(target=target.name)
        self._seen: set[tuple[str, str]] = set()
        self._previous = 0
        self._rss = PeakRss()
        self._began = time.perf_counter()

    def _measure(self, data: bytes) -> tuple[float, int, Crash | None, bool]:
        """Run one input: (seconds, tracemalloc peak or 0, crash, whether it was traced)."""
        target, previous = self.target, self._previous
        if tracemalloc.is_tracing():  # the caller traces everything
            return (*run_one(target, data, previous=previous), True)
        if self.stats.inputs % self.trace_every == 0:
            result = _traced(target, data, previous)
            self._rss.rise()  # not this input's: tracemalloc's own tables
            return (*result, True)
        self._rss.rise()
        seconds, peak, crash = run_one(target, data, previous=previous)
        if crash is not None or self._rss.rise() <= RSS_SLACK:
            return seconds, peak, crash, False
        # This input grew the process: measure what it allocates, and hold it to its bound.
        _, peak, crash = _traced(target, data, previous)
        return seconds, peak, crash, True

    def run(self, data: bytes) -> Crash | None:
        """Run one input; a crash of a new signature is minimized, kept and written."""
        target, stats = self.target, self.stats
        seconds, peak, crash, traced = self._measure(data)
        stats.traced += traced
        size = max(len(data), self._previous if target.carries_state else 0)
        self._previous = len(data)
        stats.inputs += 1
        stats.input_bytes += len(data)
        if seconds > stats.slowest:
            stats.slowest, stats.slowest_size, stats.slowest_input = seconds, len(data), data
        if peak > stats.peak:
            stats.peak, stats.peak_size = peak, len(data)
        stats.worst_ratio = max(stats.worst_ratio, peak / target.memory_bound(size))
        if crash is None:
            return None
        stats.crash_count += 1
        if crash.signature not in self._seen:
            self._seen.add(crash.signature)
            small = minimize(target, crash)
            stats.crashes.append(small)
            if self.crash_dir is not None:
                write_crash(small, self.crash_dir)
        return crash

    def close(self) -> None:
        """Release the /proc files of the RSS watch."""
        self._rss.close()

    def finish(self) -> Stats:
        """The stats with the elapsed time and the process's peak RSS filled in."""
        self.stats.seconds = time.perf_counter() - self._began
        self.stats.rss_exact = self._rss.exact
        self.stats.max_rss = _max_rss()
        return self.stats


def _traced(target: Target, data: bytes, previous: int) -> tuple[float, int, Crash | None]:
    """`run_one` under tracemalloc (started and stopped around it)."""
    tracemalloc.start()
    try:
        return run_one(target, data, previous=previous)
    finally:
        tracemalloc.stop()


def run_target(
    target: Target,
    *,
    inputs: int,
    seed: int,
    crash_dir: Path | None = None,
    progress: Callable[[Stats], None] | None = None,
    max_seconds: float | None = None,
    trace_every: int = TRACE_EVERY,
) -> Stats:
    """Run ``inputs`` inputs: the seeds unedited first, then edits drawn from ``seed``.

    Each edit starts from a seed, or (one time in five, if it is not huge) from the previous
    input, so that edits also stack across inputs. Unique crashes are minimized and written to
    ``crash_dir``. With ``max_seconds`` the run stops after that much wall-clock time even if
    fewer inputs ran (``Stats.inputs`` says how many did).
    """
    rng = random.Random(f"{seed}:{target.name}")
    recorder = Recorder(target, crash_dir=crash_dir, trace_every=trace_every)
    seeds = list(target.seeds) or [b""]
    last = seeds[0]
    deadline = time.monotonic() + max_seconds if max_seconds is not None else None
    for index in range(inputs):
        if index < len(seeds):
            data = seeds[index]
        else:
            chain = len(last) <= _CHAIN_SIZE and rng.random() < 0.2
            data = target.mutate(rng, last if chain else rng.choice(seeds))
        last = data
        recorder.run(data)
        if index % 1000 == 999:
            if progress is not None and index % 10_000 == 9_999:
                progress(recorder.finish())
            if deadline is not None and time.monotonic() > deadline:
                break
    recorder.close()
    return recorder.finish()


def merge_stats(parts: Sequence[Stats]) -> Stats:
    """One target's stats from parts run at once (`benchmarks.fuzz --jobs`): inputs, bytes
    and crashes summed (one crash per signature), the worst input of any part, the longest
    part's time (they ran side by side) and the largest RSS of one process."""
    merged = Stats(target=parts[0].target)
    seen: set[tuple[str, str]] = set()
    for part in parts:
        merged.inputs += part.inputs
        merged.input_bytes += part.input_bytes
        merged.crash_count += part.crash_count
        merged.traced += part.traced
        merged.seconds = max(merged.seconds, part.seconds)
        merged.max_rss = max(merged.max_rss, part.max_rss)
        merged.rss_exact = merged.rss_exact and part.rss_exact
        merged.worst_ratio = max(merged.worst_ratio, part.worst_ratio)
        if part.slowest > merged.slowest:
            merged.slowest = part.slowest
            merged.slowest_size, merged.slowest_input = part.slowest_size, part.slowest_input
        if part.peak > merged.peak:
            merged.peak, merged.peak_size = part.peak, part.peak_size
        for crash in part.crashes:
            if crash.signature not in seen:
                seen.add(crash.signature)
                merged.crashes.append(crash)
    return merged


def stats_to_json(stats: Stats) -> dict[str, object]:
    """A `Stats` as JSON-ready data (inputs as latin-1 text, so any bytes round-trip)."""
    out = asdict(stats)
    out["slowest_input"] = stats.slowest_input.decode("latin-1")
    for crash in out["crashes"]:
        crash["data"] = crash["data"].decode("latin-1")
    return out


def stats_from_json(data: dict[str, Any]) -> Stats:
    """Inverse of `stats_to_json`."""
    fields = dict(data)
    crashes = [
        Crash(
            **{
                **item,
                "data": item["data"].encode("latin-1"),
                "signature": tuple(item["signature"]),
            }
        )
        for item in fields.pop("crashes")
    ]
    slowest = fields.pop("slowest_input").encode("latin-1")
    return Stats(**fields, crashes=crashes, slowest_input=slowest)
