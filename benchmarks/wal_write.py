"""Write-ahead log commit cost: `WriteAheadLog.commit` of remote-write-sized batches.

Each batch is what `RemoteWriter` seals from a ~2,000-sample scrape: a ~20 KB snappy body
(random bytes: compressed data does not compress further) plus metadata. Every commit also
acknowledges the previous commit's batches, the steady state of a sender that keeps up, so
segment rotation, reclaiming acknowledged segments and rewriting the ``acked`` file are part of
the cost.

Two pacings, each with ``fsync`` on and off:

- back-to-back: commits of ``--batch-per-commit`` batches as fast as they go, for ``--seconds``:
  the throughput ceiling (MB/s) and the cost per batch;
- one commit per second: ``--paced`` commits of the same size, one per wall-clock second, as the
  group commit runs in production (W1: 1-3 MB/s): latency per commit (what the I/O thread waits)
  and the CPU it costs (what the agent's one core pays; the GIL is released during
  ``write``/``fsync``).

Also ``read`` of every batch back (replay from the page cache). Timing: ``time.perf_counter``
for wall time, ``time.process_time`` for CPU. fsync on tmpfs costs nothing: pass ``--dir`` on the
filesystem the agent's storage uses. Run: ``python -m benchmarks.wal_write [--dir PATH]``.
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import time
from pathlib import Path

from collector.remote.wal import Record, WriteAheadLog

__all__ = ["main", "measure"]

BODY_BYTES = 20_000
SAMPLES = 2_000


def _batches(n: int, *, first: int) -> list[Record]:
    rng = random.Random(first)
    body = rng.randbytes(BODY_BYTES)
    # One body reused: the log copies it into the joined write; its content does not matter.
    return [Record(first + i, 1, i % 4, SAMPLES, 1_700_000_000_000 + i, body) for i in range(n)]


def measure(
    directory: Path, *, fsync: bool, per_commit: int, seconds: float, paced: int
) -> dict[str, float]:
    """One fsync policy: back-to-back throughput, paced commit latency, replay reads."""
    log = WriteAheadLog(directory, fsync=fsync)
    log.open()
    seq = 0
    previous: list[int] = []
    # Warm up: first segment created, code paths hot.
    for _ in range(3):
        records = _batches(per_commit, first=seq)
        log.commit(records, previous)
        previous = [r.seq for r in records]
        seq += per_commit

    # Only commit() is timed: building the batches is the writer's cost, not the log's.
    commits = 0
    wall = cpu = 0.0
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        records = _batches(per_commit, first=seq)
        start, cpu_start = time.perf_counter(), time.process_time()
        log.commit(records, previous)
        wall += time.perf_counter() - start
        cpu += time.process_time() - cpu_start
        previous = [r.seq for r in records]
        seq += per_commit
        commits += 1
    batches = commits * per_commit
    out = {
        "mb_s": batches * BODY_BYTES / wall / 1e6,
        "us_batch": wall / batches * 1e6,
        "cpu_us_batch": cpu / batches * 1e6,
    }

    latencies: list[float] = []
    cpu_costs: list[float] = []
    tick = time.perf_counter()
    for _ in range(paced):
        tick += 1.0
        time.sleep(max(0.0, tick - time.perf_counter()))
        records = _batches(per_commit, first=seq)
        start, cpu_start = time.perf_counter(), time.process_time()
        log.commit(records, previous)
        latencies.append(time.perf_counter() - start)
        cpu_costs.append(time.process_time() - cpu_start)
        previous = [r.seq for r in records]
        seq += per_commit
    if latencies:
        out["paced_ms_mean"] = statistics.fmean(latencies) * 1e3
        out["paced_ms_max"] = max(latencies) * 1e3
        out["paced_us_batch"] = statistics.fmean(latencies) / per_commit * 1e6
        out["paced_cpu_us_batch"] = statistics.fmean(cpu_costs) / per_commit * 1e6

    # Replay: everything still pending (the last commit) read back from the log.
    start = time.perf_counter()
    for s in previous:
        assert log.read(s) is not None
    out["read_us_batch"] = (time.perf_counter() - start) / len(previous) * 1e6
    log.close()
    return out


def main() -> None:
    """Print MB/s and µs per batch for fsync on and off."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--dir", type=Path, default=None, help="parent of the temporary log")
    parser.add_argument("--batch-per-commit", type=int, default=100, help="~2 MB per commit")
    parser.add_argument("--seconds", type=float, default=3.0, help="back-to-back run length")
    parser.add_argument("--paced", type=int, default=5, help="commits at one per second")
    args = parser.parse_args()
    per_commit = args.batch_per_commit
    print(
        f"batches of {BODY_BYTES:,} B ({SAMPLES:,} samples), {per_commit} per commit "
        f"({per_commit * BODY_BYTES / 1e6:.1f} MB), previous commit acknowledged each time"
    )
    for fsync in (True, False):
        with tempfile.TemporaryDirectory(dir=args.dir) as parent:
            r = measure(
                Path(parent) / "wal",
                fsync=fsync,
                per_commit=per_commit,
                seconds=args.seconds,
                paced=args.paced,
            )
        label = "fsync on " if fsync else "fsync off"
        print(
            f"{label} back-to-back : {r['mb_s']:8.1f} MB/s  {r['us_batch']:8.1f} µs/batch wall"
            f"  {r['cpu_us_batch']:8.1f} µs/batch CPU"
        )
        if "paced_ms_mean" in r:
            print(
                f"{label} 1 commit/s   : {r['paced_ms_mean']:8.2f} ms/commit mean"
                f"  {r['paced_ms_max']:8.2f} ms max  {r['paced_us_batch']:8.1f} µs/batch wall"
                f"  {r['paced_cpu_us_batch']:8.1f} µs/batch CPU"
            )
        print(f"{label} read (replay): {r['read_us_batch']:8.1f} µs/batch")


if __name__ == "__main__":
    main()
