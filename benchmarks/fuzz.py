"""Fuzz the hostile-input surfaces (issue 13 §2): parsers, remote write, watch streams, SD, config.

Run: ``python -m benchmarks.fuzz [--target NAME ...] [--inputs N] [--seed S] [--jobs J]
[--trace-every K] [--engine mutator|atheris] [--max-seconds T]``. Every target gets
``--inputs`` inputs (default 1,000,000; fewer if ``--max-seconds`` runs out first, and the
report's count is what ran): its seeds, then structured edits of them
(`benchmarks.fuzzing.mutate`). Each input is held to the contract of
`benchmarks.fuzzing.harness`: only the errors the API documents escape, at most 1 s, a
tracemalloc peak proportional to its size (one input in ``--trace-every`` traced, and every
input that grew the process's peak RSS). The report has one row per target: inputs run and
per second, crashes, the slowest input, inputs traced, the largest memory peak, the worst
peak as a share of its bound and the process's peak RSS.

``--jobs J`` runs up to J targets at once, each in a process of its own (the same inputs as
one after another: each target's edits come from its own seeded stream).

Engines: ``mutator`` (the default) draws edits from ``--seed`` in this process, so a run is
reproducible input by input. ``atheris`` runs each target in a worker process under
libFuzzer with coverage of ``collector`` (`benchmarks.fuzzing.coverage`), using the same
edits as its custom mutator half of the time and libFuzzer's byte edits otherwise.

A crash is minimized and written to ``--crash-dir/<target>/<kind>-<sha1>.bin`` with a
``.txt`` beside it (exception and traceback, or the time or memory over the limit); the
slowest input of each target goes to ``slowest.bin``. The exit status is 1 if any target
crashed, else 0.
``tests/test_fuzz.py`` runs a short seeded version and every crasher found so far.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from benchmarks.fuzzing import TARGETS, load_targets
from benchmarks.fuzzing.harness import (
    TRACE_EVERY,
    Stats,
    merge_stats,
    run_one,
    run_target,
    stats_from_json,
    stats_to_json,
)

__all__ = ["main", "report"]

ROOT = Path(__file__).resolve().parent.parent
_MiB = 1 << 20


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.fuzz", description=__doc__)
    parser.add_argument(
        "--target",
        action="append",
        choices=TARGETS,
        help="a target to run (repeatable; default: all)",
    )
    parser.add_argument("--inputs", type=int, default=1_000_000, help="inputs per target")
    parser.add_argument(
        "--max-seconds",
        type=float,
        help="stop a target after this long even if it ran fewer inputs (mutator engine;"
        " the report says how many ran)",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the edits")
    parser.add_argument(
        "--jobs", type=int, default=1, help="targets run at once, a process each (mutator engine)"
    )
    parser.add_argument(
        "--trace-every",
        type=int,
        default=TRACE_EVERY,
        help="one input in this many runs under tracemalloc (1: every input)",
    )
    parser.add_argument("--max-size", type=int, default=1 << 20, help="largest input (bytes)")
    parser.add_argument("--engine", choices=("mutator", "atheris"), default="mutator")
    parser.add_argument(
        "--crash-dir", type=Path, default=ROOT / "test-artifacts" / "fuzz", help="crash files"
    )
    parser.add_argument("--json", type=Path, help="also write the results as JSON")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--stats-file", type=Path, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def _progress(stats: Stats) -> None:
    print(
        f"  {stats.target}: {stats.inputs:,} inputs, {stats.rate:,.0f}/s, "
        f"{stats.crash_count} crashing",
        file=sys.stderr,
        flush=True,
    )


def _run_worker(name: str, args: argparse.Namespace) -> Stats:
    """One target under atheris in a child process; its stats come back through a file."""
    with tempfile.TemporaryDirectory(prefix="fuzz-stats-") as tmp:
        stats_file = Path(tmp) / "stats.json"
        args.crash_dir.mkdir(parents=True, exist_ok=True)
        log = args.crash_dir / f"{name}.libfuzzer.log"
        command = [
            sys.executable,
            "-m",
            "benchmarks.fuzz",
            "--worker",
            "--engine=atheris",
            f"--target={name}",
            f"--inputs={args.inputs}",
            f"--seed={args.seed}",
            f"--max-size={args.max_size}",
            f"--crash-dir={args.crash_dir}",
            f"--stats-file={stats_file}",
        ]
        with log.open("wb") as output:
            subprocess.run(command, cwd=ROOT, stdout=output, stderr=subprocess.STDOUT, check=False)
        if not stats_file.exists():
            raise SystemExit(f"fuzz worker for {name} wrote no stats; see {log}")
        return _retimed(stats_from_json(json.loads(stats_file.read_text())), args.max_size)


def _retimed(stats: Stats, max_size: int) -> Stats:
    """The worker's stats with times measured here, without atheris's instrumentation.

    Instrumented code runs several times slower: a slow crash that is not slow here is
    dropped, and the slowest input's time reported is the one measured here.
    """
    (target,) = load_targets([stats.target], max_size=max_size)
    try:
        kept = []
        for crash in stats.crashes:
            if crash.kind == "slow" and run_one(target, crash.data)[2] is None:
                continue
            kept.append(crash)
        stats.crashes = kept
        if stats.slowest_input:
            stats.slowest = run_one(target, stats.slowest_input)[0]
    finally:
        target.close()
    return stats


def report(results: Sequence[Stats]) -> str:
    """The results table (Markdown, so that it pastes into README as is)."""
    rows = [
        "| target | inputs | inputs/s | crashes | slowest input (CPU) | traced | largest peak |"
        " worst peak/bound | max RSS |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    rows.extend(
        f"| {s.target} | {s.inputs:,} | {s.rate:,.0f} | {len(s.crashes)}"
        f" | {s.slowest * 1000:.1f} ms ({s.slowest_size:,} B) | {s.traced:,}"
        f" | {s.peak / _MiB:.1f} MiB ({s.peak_size:,} B) | {s.worst_ratio:.2f}"
        f" | {s.max_rss / _MiB:.0f} MiB |"
        for s in results
    )
    rows.extend(
        f"CRASH {s.target}: {crash.kind} {' '.join(crash.signature)}"
        f" ({len(crash.data)} bytes): {crash.detail.strip().splitlines()[-1][:200]}"
        for s in results
        for crash in s.crashes
    )
    return "\n".join(rows)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the fuzz targets; 1 if any crashed."""
    args = _parse_args(argv)
    names = args.target or list(TARGETS)
    if args.worker and args.engine == "atheris":
        from benchmarks.fuzzing.coverage import run_atheris  # imports atheris: worker only

        run_atheris(  # never returns: libFuzzer exits the process
            names[0],
            inputs=args.inputs,
            seed=args.seed,
            max_size=args.max_size,
            crash_dir=args.crash_dir,
            stats_file=args.stats_file,
        )
    if args.worker:  # one target of a --jobs run, in a process of its own
        (stats,) = _run_mutator(names, args)
        args.stats_file.write_text(json.dumps(stats_to_json(stats)))
        return 0
    results: list[Stats] = []
    if args.engine == "atheris":
        results = [_run_worker(name, args) for name in names]
    elif args.jobs > 1:
        results = _run_jobs(names, args)
    else:
        results = _run_mutator(names, args)
    _write(results, args)
    print(report(results))
    return 1 if any(stats.crashes for stats in results) else 0


def _run_mutator(names: Sequence[str], args: argparse.Namespace) -> list[Stats]:
    """The named targets one after another in this process (mutator engine)."""
    results: list[Stats] = []
    for target in load_targets(names, max_size=args.max_size):
        print(f"{target.name}: {target.summary}", file=sys.stderr, flush=True)
        try:
            results.append(
                run_target(
                    target,
                    inputs=args.inputs,
                    seed=args.seed,
                    crash_dir=args.crash_dir,
                    progress=_progress,
                    max_seconds=args.max_seconds,
                    trace_every=args.trace_every,
                )
            )
        finally:
            target.close()
        if not args.worker:
            _write(results, args)  # as each target ends: a later failure loses nothing
    return results


def _run_jobs(names: Sequence[str], args: argparse.Namespace) -> list[Stats]:
    """Up to ``--jobs`` child processes (``--worker``) at once, each running one target.

    With fewer targets than jobs, each target's inputs are split into parts run at once, part
    ``p`` with seed ``seed * 1000 + p`` (its own stream of edits), and the parts' stats are
    merged (`merge_stats`) into the target's row.
    """
    parts = max(1, args.jobs // len(names))
    counts = [args.inputs // parts + (p < args.inputs % parts) for p in range(parts)]
    seeds = [args.seed] if parts == 1 else [args.seed * 1000 + p for p in range(parts)]

    def one(task: tuple[str, int]) -> Stats:
        name, part = task
        with tempfile.TemporaryDirectory(prefix="fuzz-stats-") as tmp:
            stats_file = Path(tmp) / "stats.json"
            command = [
                sys.executable,
                "-m",
                "benchmarks.fuzz",
                "--worker",
                f"--target={name}",
                f"--inputs={counts[part]}",
                f"--seed={seeds[part]}",
                f"--max-size={args.max_size}",
                f"--trace-every={args.trace_every}",
                f"--crash-dir={args.crash_dir}",
                f"--stats-file={stats_file}",
            ]
            if args.max_seconds is not None:
                command.append(f"--max-seconds={args.max_seconds}")
            subprocess.run(command, cwd=ROOT, check=False)
            if not stats_file.exists():
                raise SystemExit(f"fuzz worker for {name} ended without its stats")
            return stats_from_json(json.loads(stats_file.read_text()))

    results: list[Stats] = []
    tasks = [(name, part) for name in names for part in range(parts)]
    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        done = iter(pool.map(one, tasks))  # report order: the targets' order
        for _name in names:
            results.append(merge_stats([next(done) for _ in range(parts)]))
            _write(results, args)
    return results


def _write(results: list[Stats], args: argparse.Namespace) -> None:
    """The slowest inputs, ``report.md`` in the crash directory and the ``--json`` file."""
    for stats in results:
        if stats.slowest_input:
            folder = args.crash_dir / stats.target
            folder.mkdir(parents=True, exist_ok=True)
            (folder / "slowest.bin").write_bytes(stats.slowest_input)
    args.crash_dir.mkdir(parents=True, exist_ok=True)
    (args.crash_dir / "report.md").write_text(report(results) + "\n")
    if args.json is not None:
        args.json.write_text(json.dumps([stats_to_json(s) for s in results], indent=1))


if __name__ == "__main__":
    raise SystemExit(main())
