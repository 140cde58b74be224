"""Coverage-guided fuzzing: one target under atheris (libFuzzer) in a worker process.

`run_atheris` imports the target with atheris's bytecode instrumentation of ``collector``, so
libFuzzer sees which branches of our code an input reached and keeps the inputs that reach new
ones in its corpus (started from the target's seeds). Each input is run by the same
`Recorder` as the mutator engine (contract, time, memory, crash files). libFuzzer's custom
mutator hook gets the target's structured edits half of the time and libFuzzer's own byte
edits (``atheris.Mutate``, which also learns from the comparisons our code makes) otherwise.

libFuzzer ends the process itself after ``-runs``, without running Python's ``atexit``, so the
stats are written to ``stats_file`` every two seconds and on each of the last inputs; the
parent (`benchmarks.fuzz`) reads them back. Only the worker imports atheris: the mutator
engine and the tests run without it.

Instrumentation costs: inputs run several times slower than under the mutator engine, so
the times measured here are not the code's. libFuzzer grows input lengths gradually (its
default ``-len_control``), where coverage feedback pays; the huge inputs are the mutator
engine's. The parent re-times every slow crash and the slowest input without instrumentation
(`benchmarks.fuzz`), and only those times count.
"""

from __future__ import annotations

import json
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import NoReturn

import atheris  # type: ignore[import-untyped]  # ships no type information

from benchmarks.fuzzing import load_targets
from benchmarks.fuzzing.harness import Recorder, stats_to_json

__all__ = ["run_atheris"]

_FLUSH_SECONDS = 2.0


def run_atheris(
    name: str, *, inputs: int, seed: int, max_size: int, crash_dir: Path, stats_file: Path
) -> NoReturn:
    """Fuzz ``name`` for ``inputs`` runs under libFuzzer; never returns (libFuzzer exits)."""
    with atheris.instrument_imports(include=["collector"]):
        target = load_targets([name], max_size=max_size)[0]
    recorder = Recorder(target, crash_dir=crash_dir)
    flushed = time.monotonic()

    def flush() -> None:
        stats_file.write_text(json.dumps(stats_to_json(recorder.finish())))

    def test_one_input(data: bytes) -> None:
        nonlocal flushed
        recorder.run(data)
        now = time.monotonic()
        if recorder.stats.inputs >= inputs - 3 or now - flushed > _FLUSH_SECONDS:
            flush()
            flushed = now

    def custom_mutator(data: bytes, size: int, mutation_seed: int) -> bytes:
        rng = random.Random(mutation_seed)
        if rng.random() < 0.5:
            return bytes(atheris.Mutate(data, size))
        return target.mutate(rng, data)[:size]

    corpus = Path(tempfile.mkdtemp(prefix=f"fuzz-corpus-{name}-"))
    for index, seed_input in enumerate(target.seeds):
        (corpus / f"seed-{index:04d}").write_bytes(seed_input[:max_size])
    flush()
    argv = [
        sys.argv[0],
        f"-runs={inputs}",
        f"-seed={seed + 1}",  # libFuzzer takes 0 as "pick a random seed"
        f"-max_len={max_size}",
        "-timeout=300",  # our own limit interrupts at 30 s of CPU; this is the backstop
        "-rss_limit_mb=8192",
        "-print_final_stats=1",
        str(corpus),
    ]
    atheris.Setup(argv, test_one_input, custom_mutator=custom_mutator)
    atheris.Fuzz()
    raise SystemExit(0)  # not reached: libFuzzer exits the process
