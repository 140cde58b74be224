"""The disk queue: FIFO across segments, truncation, restart cursor, prepend, corruption."""

from __future__ import annotations

from pathlib import Path

import pytest

from collector.errors import DiskQueueError
from collector.remote.diskqueue import DiskQueue


def _drain(queue: DiskQueue) -> list[bytes]:
    out = []
    while (record := queue.pop()) is not None:
        out.append(record)
    return out


def test_fifo_across_segments_and_truncation(tmp_path: Path) -> None:
    """Records come back in order across rotated segments; read segments are deleted."""
    queue = DiskQueue(tmp_path, segment_bytes=90)
    records = [bytes([i]) * 40 for i in range(10)]
    for record in records:
        queue.append(record)
    assert queue.segment_count == 5
    assert not queue.empty
    assert queue.pop() == records[0]
    assert _drain(queue) == records[1:]
    assert queue.pop() is None
    assert queue.segment_count == 0
    assert list(tmp_path.glob("*.seg")) == []


def test_restart_resumes_at_cursor(tmp_path: Path) -> None:
    """A clean close records the read position: a new queue skips what was read, no duplicates."""
    queue = DiskQueue(tmp_path, segment_bytes=1 << 20)
    for i in range(5):
        queue.append(b"r%d" % i)
    assert queue.pop() == b"r0"
    assert queue.pop() == b"r1"
    queue.close()
    reopened = DiskQueue(tmp_path)
    reopened.append(b"r5")
    assert _drain(reopened) == [b"r2", b"r3", b"r4", b"r5"]
    reopened.close()


def test_prepend_goes_before_unread_records(tmp_path: Path) -> None:
    """prepend puts records ahead of every unread one, and that order survives a restart."""
    queue = DiskQueue(tmp_path)
    for i in range(3):
        queue.append(b"disk%d" % i)
    assert queue.pop() == b"disk0"
    queue.prepend([b"mem0", b"mem1"])
    queue.close()
    reopened = DiskQueue(tmp_path)
    assert _drain(reopened) == [b"mem0", b"mem1", b"disk1", b"disk2"]


def test_prepend_into_empty_queue(tmp_path: Path) -> None:
    """prepend on an empty queue creates a segment of its own; appends follow it."""
    queue = DiskQueue(tmp_path)
    queue.prepend([])
    assert queue.segment_count == 0
    queue.prepend([b"a"])
    queue.append(b"b")
    assert _drain(queue) == [b"a", b"b"]
    queue.close()


def test_torn_tail_is_reported_and_earlier_records_kept(tmp_path: Path) -> None:
    """A truncated last record raises DiskQueueError once, after every earlier record."""
    queue = DiskQueue(tmp_path)
    for i in range(3):
        queue.append(b"record-%d" % i)
    queue.close()
    (segment,) = tmp_path.glob("*.seg")
    segment.write_bytes(segment.read_bytes()[:-3])
    reopened = DiskQueue(tmp_path)
    assert reopened.pop() == b"record-0"
    assert reopened.pop() == b"record-1"
    with pytest.raises(DiskQueueError, match="past the end"):
        reopened.pop()
    assert reopened.corruptions == 1
    assert reopened.pop() is None


def test_checksum_mismatch_skips_rest_of_segment_only(tmp_path: Path) -> None:
    """A bad CRC skips the rest of its segment; later segments are still read."""
    queue = DiskQueue(tmp_path, segment_bytes=30)
    for i in range(4):
        queue.append(b"payload-%d-xxxxxx" % i)  # 8 + 17 bytes: one record per segment... almost
    queue.close()
    first = sorted(tmp_path.glob("*.seg"))[0]
    data = bytearray(first.read_bytes())
    data[-1] ^= 0xFF
    first.write_bytes(bytes(data))
    reopened = DiskQueue(tmp_path)
    got: list[bytes] = []
    errors = 0
    while True:
        try:
            record = reopened.pop()
        except DiskQueueError:
            errors += 1
            continue
        if record is None:
            break
        got.append(record)
    assert errors == 1
    assert b"payload-3-xxxxxx" in got
    assert len(got) == 3


def test_new_process_never_appends_to_old_segment(tmp_path: Path) -> None:
    """After a restart appends start a new segment, so a torn tail never hides new records."""
    queue = DiskQueue(tmp_path)
    queue.append(b"old")
    queue.close()
    (segment,) = tmp_path.glob("*.seg")
    segment.write_bytes(segment.read_bytes() + b"\x05\x00")  # torn header from a crash
    reopened = DiskQueue(tmp_path)
    reopened.append(b"new")
    assert reopened.segment_count == 2
    assert reopened.pop() == b"old"
    with pytest.raises(DiskQueueError, match="truncated record header"):
        reopened.pop()
    assert reopened.pop() == b"new"
    reopened.close()


def test_unusable_directory_raises(tmp_path: Path) -> None:
    """A path that cannot be a directory raises DiskQueueError."""
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(DiskQueueError, match="cannot open"):
        DiskQueue(blocker / "sub")
