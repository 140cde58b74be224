"""Recovery of the write-ahead log at start: the ``acked`` state, each segment's scan, quarantine.

Place in the pipeline: `collector.remote.wal.WriteAheadLog.open` calls these once per start,
before the remote writer sends anything; the scanning rules themselves (framing, CRC, resync)
are `collector.remote.walformat`'s. Also home of `Segment`, the in-memory index of one segment
file that recovery builds and the log then appends to.

Everything found wrong is data in `Recovery` (lost samples by reason, problems for the log),
never an exception: a damaged log must not become a crash loop.
"""

from __future__ import annotations

import os
from array import array
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from collector.remote.walformat import (
    SEGMENT_HEADER,
    AckState,
    RecordInfo,
    decode_ack_state,
    has_segment_header,
    scan,
)

__all__ = [
    "ACK_FILE",
    "QUARANTINE",
    "Recovery",
    "Segment",
    "first_of",
    "load_ack_state",
    "quarantine",
    "recover_segment",
]

ACK_FILE = "acked"
QUARANTINE = "quarantine"


@dataclass(slots=True, kw_only=True)
class Recovery:
    """What `WriteAheadLog.open` found on disk."""

    pending: list[RecordInfo]
    """Records not acknowledged, in seq order: what the writer must still send (via `read`)."""
    next_seq: int
    """One past the highest seq the log has ever held: the writer continues from here."""
    lost: dict[str, int]
    """Samples lost, by reason: ``corrupt`` (damaged or torn records whose header still gave a
    count) and ``quarantined`` (valid-looking records in quarantined segments). Acknowledged
    records are never counted."""
    corrupt_records: int
    """Damaged or torn records skipped (a span whose header was unreadable counts as one)."""
    quarantined: list[Path] = field(default_factory=list)
    """Where unreadable segments were moved."""
    disk_bytes: int = 0
    """Bytes in segment files after recovery."""
    ack_state_corrupt: bool = False
    """The ``acked`` file was damaged: everything on disk is pending again (resent, not lost)."""
    problems: list[str] = field(default_factory=list)
    """One line per incident (damage, truncation, quarantine, I/O error), for the log."""


class Segment:
    """One segment file and its index: 20 bytes per record, no per-record object."""

    __slots__ = ("counts", "end", "fd", "first", "offsets", "path", "seqs", "size")

    def __init__(self, first: int, path: Path, *, size: int, end: int) -> None:
        self.first = first
        self.path = path
        self.size = size
        """Bytes in the file."""
        self.end = end
        """Offset just past the last valid frame (below ``size`` only with trailing damage)."""
        self.seqs = array("Q")
        self.offsets = array("Q")
        self.counts = array("I")
        self.fd = -1
        """Open for appending (and reading) while this is the active segment; -1 otherwise."""


def first_of(segment: Segment) -> int:
    return segment.first


def load_ack_state(directory: Path, recovery: Recovery) -> AckState | None:
    """The ``acked`` file: None (reported) when it is damaged, a fresh state when absent."""
    path = directory / ACK_FILE
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return AckState(watermark=0, next_seq=0)
    except OSError as exc:
        data, reason = b"", str(exc)
    else:
        reason = "damaged"
    state = decode_ack_state(data)
    if state is None:
        recovery.ack_state_corrupt = True
        recovery.problems.append(f"{path}: {reason}; every record on disk will be resent")
    return state


def recover_segment(
    directory: Path,
    first: int,
    path: Path,
    *,
    last: bool,
    prev_seq: int,
    recovery: Recovery,
    unacked: Callable[[int], bool],
) -> tuple[Segment | None, list[RecordInfo]]:
    """Scan one segment file: index its records, count damage, truncate a torn tail."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        quarantine(directory, path, f"unreadable: {exc}", recovery)
        return None, []
    if not has_segment_header(data):
        if last and SEGMENT_HEADER.startswith(data):
            # Torn while being created: it never held a record.
            try:
                os.unlink(path)
            except OSError as exc:
                recovery.problems.append(f"cannot delete {path}: {exc}")
            return None, []
        # Count what still reads, so the loss shows in samples (best effort).
        result = scan(data, prev_seq=prev_seq)
        recovery.lost["quarantined"] += sum(i.count for i in result.infos if unacked(i.seq))
        quarantine(directory, path, "bad segment header", recovery)
        return None, []
    result = scan(data, prev_seq=prev_seq)
    for damage in result.damage:
        recovery.corrupt_records += max(1, len(damage.records))
        recovery.lost["corrupt"] += sum(c for seq, c in damage.records if unacked(seq))
        what = "torn tail" if damage.torn else "damaged record"
        recovery.problems.append(
            f"{path}: {what} at bytes {damage.start}-{damage.end} skipped "
            f"({len(damage.records)} record header(s) readable)"
        )
    segment = Segment(first, path, size=len(data), end=result.end)
    if last and result.end < len(data):
        try:
            os.truncate(path, result.end)
            segment.size = result.end
        except OSError as exc:
            recovery.problems.append(f"cannot truncate torn tail of {path}: {exc}")
    for info in result.infos:
        segment.seqs.append(info.seq)
        segment.counts.append(info.count)
    segment.offsets = result.offsets
    return segment, result.infos


def quarantine(directory: Path, path: Path, reason: str, recovery: Recovery) -> None:
    """Move an unusable file aside so the next start does not trip over it again."""
    target_dir = directory / QUARANTINE
    try:
        target_dir.mkdir(exist_ok=True)
        target = target_dir / path.name
        n = 0
        while target.exists():
            n += 1
            target = target_dir / f"{path.name}.{n}"
        os.replace(path, target)
    except OSError as exc:
        recovery.problems.append(f"{path}: {reason}; cannot quarantine it: {exc}; skipped")
        return
    recovery.quarantined.append(target)
    recovery.problems.append(f"{path}: {reason}; moved to {target}")
