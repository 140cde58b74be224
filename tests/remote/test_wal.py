"""The write-ahead log: round trip, acks across restarts, damage, quarantine, disk cap."""

from __future__ import annotations

import errno
import random
import shutil
from pathlib import Path

import pytest

from benchmarks.wal_fuzz import check, make_segment, mutate
from collector.errors import DiskQueueError
from collector.remote import wal
from collector.remote.wal import WriteAheadLog
from collector.remote.walformat import (
    FRAME_OVERHEAD,
    HEADER_SIZE,
    SEGMENT_HEADER,
    Record,
    RecordInfo,
    encode_frame,
)

_HEAD = FRAME_OVERHEAD + HEADER_SIZE


def _record(seq: int, *, size: int = 100, shard: int | None = None) -> Record:
    body = random.Random(seq).randbytes(size)
    return Record(
        seq, 7, seq % 3 if shard is None else shard, 10 + seq % 1000, 1_700_000_000_000 + seq, body
    )


def _info(record: Record) -> RecordInfo:
    return RecordInfo(record.seq, record.epoch, record.shard, record.count, record.max_ts)


def _seqs(infos: list[RecordInfo]) -> list[int]:
    return [info.seq for info in infos]


def _segments(directory: Path) -> list[Path]:
    return sorted(directory.glob("*.seg"))


def _opened(
    directory: Path, *, segment_bytes: int = 16 << 20, max_bytes: int = 1 << 30, fsync: bool = True
) -> tuple[WriteAheadLog, wal.Recovery]:
    log = WriteAheadLog(directory, segment_bytes=segment_bytes, max_bytes=max_bytes, fsync=fsync)
    return log, log.open()


def _write(directory: Path, records: list[Record], *, segment_bytes: int = 16 << 20) -> None:
    log, _ = _opened(directory, segment_bytes=segment_bytes)
    log.commit(records, [])
    log.close()


def test_round_trip(tmp_path: Path) -> None:
    """Committed records read back byte-identical, before and after a restart."""
    records = [_record(seq) for seq in range(5)]
    log, recovery = _opened(tmp_path)
    assert recovery.pending == []
    assert recovery.next_seq == 0
    result = log.commit(records, [])
    assert result.dropped == []
    assert result.unwritten == []
    assert result.errors == []
    assert [log.read(r.seq) for r in records] == records
    assert log.pending_records == 5
    assert log.next_seq == 5
    assert (
        result.disk_bytes
        == log.disk_bytes
        == len(SEGMENT_HEADER) + sum(len(encode_frame(r)) for r in records)
    )
    log.close()
    log.close()  # idempotent

    log, recovery = _opened(tmp_path)
    assert recovery.pending == [_info(r) for r in records]
    assert recovery.next_seq == 5
    assert recovery.corrupt_records == 0
    assert recovery.lost == {"corrupt": 0, "quarantined": 0}
    assert [log.read(r.seq) for r in records] == records
    assert log.read(5) is None
    log.close()


def test_restart_resumes_after_out_of_order_acks(tmp_path: Path) -> None:
    """Acks from shards arrive out of order; a restart lists exactly the unacknowledged records."""
    records = [_record(seq) for seq in range(10)]
    log, _ = _opened(tmp_path)
    log.commit(records[:6], [])
    log.commit(records[6:], [3, 1, 0, 7])
    assert log.watermark == 2
    assert log.pending_records == 6
    assert log.read(3) is None
    assert log.read(7) is None
    assert log.read(2) == records[2]
    log.close()

    log, recovery = _opened(tmp_path)
    assert _seqs(recovery.pending) == [2, 4, 5, 6, 8, 9]
    log.commit([], [2, 9, 9, 1, 123])  # repeated, stale and unknown acks are ignored
    assert log.watermark == 4
    assert log.pending_records == 4
    log.close()

    log, recovery = _opened(tmp_path)
    assert _seqs(recovery.pending) == [4, 5, 6, 8]
    assert all(log.read(seq) is None for seq in (0, 1, 2, 3, 7, 9))
    log.commit([_record(10)], [4, 5, 6, 8, 10])
    assert log.pending_records == 0
    assert log.watermark == 11
    log.close()
    _, recovery = _opened(tmp_path)
    assert recovery.pending == []
    assert recovery.next_seq == 11


def test_torn_tail_at_every_offset_of_the_last_record(tmp_path: Path) -> None:
    """Cutting the file anywhere in the last frame keeps the earlier records, counts the torn
    one (in samples once its header is whole), and truncates so later appends read clean."""
    records = [_record(seq, size=60) for seq in range(3)]
    source = tmp_path / "source"
    _write(source, records)
    (segment,) = _segments(source)
    whole = segment.read_bytes()
    start = len(whole) - len(encode_frame(records[-1]))
    for cut in range(start, len(whole)):
        directory = tmp_path / f"cut{cut}"
        shutil.copytree(source, directory)
        (copy,) = _segments(directory)
        copy.write_bytes(whole[:cut])
        log, recovery = _opened(directory)
        assert _seqs(recovery.pending) == [0, 1], cut
        torn = cut > start
        assert recovery.corrupt_records == int(torn), cut
        header_whole = cut - start >= _HEAD
        assert recovery.lost["corrupt"] == (records[-1].count if header_whole else 0), cut
        assert copy.stat().st_size == start, cut
        assert recovery.next_seq == 3
        log.commit([_record(3)], [])
        log.close()
        log, recovery = _opened(directory)
        assert _seqs(recovery.pending) == [0, 1, 3], cut
        assert recovery.corrupt_records == 0, cut
        assert log.read(3) == _record(3)
        log.close()


@pytest.mark.parametrize(
    ("field", "offset"),
    [("length", 1), ("crc", 5), ("header", FRAME_OVERHEAD + 9), ("body", _HEAD + 17)],
    ids=["length", "crc", "header", "body"],
)
def test_flipped_byte_in_the_middle_record_skips_it_only(
    tmp_path: Path, field: str, offset: int
) -> None:
    """A damaged record in the middle costs that record only; the file is not truncated."""
    records = [_record(seq, size=80) for seq in range(3)]
    _write(tmp_path, records)
    (segment,) = _segments(tmp_path)
    data = bytearray(segment.read_bytes())
    at = len(SEGMENT_HEADER) + len(encode_frame(records[0])) + offset
    data[at] ^= 0x5A
    segment.write_bytes(bytes(data))

    log, recovery = _opened(tmp_path)
    assert _seqs(recovery.pending) == [0, 2]
    assert recovery.corrupt_records == 1
    if field != "length":  # a damaged length may hide the count; the rest name the record
        assert recovery.lost["corrupt"] == records[1].count
    assert segment.stat().st_size == len(data)
    assert log.read(1) is None
    assert log.read(2) == records[2]
    log.commit([_record(3)], [])
    log.close()
    _, recovery = _opened(tmp_path)
    assert _seqs(recovery.pending) == [0, 2, 3]


def test_bad_magic_segment_is_quarantined(tmp_path: Path) -> None:
    """A segment with a bad header is moved aside and counted; the other segments are kept."""
    records = [_record(seq) for seq in range(6)]
    pair = 2 * len(encode_frame(records[0]))  # two records per segment
    _write(tmp_path, records, segment_bytes=pair)
    first, *rest = _segments(tmp_path)
    assert rest
    first.write_bytes(b"NOTWAL\x01\x00" + first.read_bytes()[8:])

    log, recovery = _opened(tmp_path, segment_bytes=pair)
    assert recovery.quarantined == [tmp_path / "quarantine" / first.name]
    assert recovery.quarantined[0].exists()
    assert not first.exists()
    assert _seqs(recovery.pending) == [2, 3, 4, 5]
    assert recovery.lost["quarantined"] == records[0].count + records[1].count
    assert any("bad segment header" in line for line in recovery.problems)
    log.close()
    _, recovery = _opened(tmp_path, segment_bytes=pair)
    assert recovery.quarantined == []
    assert _seqs(recovery.pending) == [2, 3, 4, 5]


def test_torn_segment_creation_is_not_quarantined(tmp_path: Path) -> None:
    """A last segment cut inside its header never held a record: it is removed quietly."""
    _write(tmp_path, [_record(0)], segment_bytes=100)
    (tmp_path / f"{1:020d}.seg").write_bytes(SEGMENT_HEADER[:3])
    log, recovery = _opened(tmp_path, segment_bytes=100)
    assert recovery.quarantined == []
    assert _seqs(recovery.pending) == [0]
    assert recovery.next_seq == 1
    log.close()


def test_disk_cap_drops_oldest_segments_never_the_newest(tmp_path: Path) -> None:
    """Past max_bytes the oldest segments go, their unacknowledged records reported as
    (seq, count); acknowledged ones are not reported, and the records just written survive."""
    frame = len(encode_frame(_record(0)))
    log, _ = _opened(tmp_path, segment_bytes=2 * frame, max_bytes=6 * frame)
    dropped: list[tuple[int, int]] = []
    seq = 0
    for batch in range(10):
        records = [_record(seq + i) for i in range(3)]
        seq += 3
        result = log.commit(records, [1] if batch == 0 else [])
        dropped += result.dropped
        assert all(log.read(r.seq) == r for r in records if r.seq != 1), batch
        assert result.disk_bytes <= 6 * frame + 2 * len(SEGMENT_HEADER) + 2 * frame
    assert dropped, "the cap was never reached"
    lost = [s for s, _ in dropped]
    assert lost == sorted(lost)
    assert 1 not in lost
    assert dropped[0] == (0, _record(0).count)
    assert all(count == _record(s).count for s, count in dropped)
    assert max(lost) < seq - 3
    remaining = [s for s in range(seq) if log.read(s) is not None]
    assert sorted(lost + remaining + [1]) == list(range(seq))
    assert log.pending_records == len(remaining)
    log.close()
    _, recovery = _opened(tmp_path, segment_bytes=2 * frame, max_bytes=6 * frame)
    assert _seqs(recovery.pending) == remaining


def test_disk_cap_with_one_oversized_segment_rotates_first(tmp_path: Path) -> None:
    """When the active segment alone is over the cap, it is sealed, not dropped; the next
    commit starts a new segment and then the old one goes."""
    log, _ = _opened(tmp_path, max_bytes=1000)
    first = [_record(seq) for seq in range(10)]
    result = log.commit(first, [])
    assert result.dropped == []
    assert log.segment_count == 1
    assert all(log.read(r.seq) == r for r in first)
    result = log.commit([_record(10)], [])
    assert result.dropped == [(r.seq, r.count) for r in first]
    assert log.segment_count == 1
    assert log.read(10) == _record(10)
    log.close()


def test_seq_never_goes_backwards_after_everything_is_acked(tmp_path: Path) -> None:
    """With every record acknowledged and every segment deleted, next_seq still survives."""
    log, _ = _opened(tmp_path)
    log.commit([_record(seq) for seq in range(5)], range(5))
    log.close()
    log, recovery = _opened(tmp_path)
    assert _segments(tmp_path) == []
    assert recovery.pending == []
    assert recovery.next_seq == 5
    with pytest.raises(ValueError, match="below the next seq"):
        log.commit([_record(3)], [])
    log.close()
    _, recovery = _opened(tmp_path)
    assert recovery.next_seq == 5


def test_seq_jump_starts_a_new_segment(tmp_path: Path) -> None:
    """A seq far above the previous one still recovers: it opens a segment named after it."""
    jumped = _record(1 << 40)
    _write(tmp_path, [_record(0), _record(1), jumped, _record((1 << 40) + 1)])
    assert len(_segments(tmp_path)) == 2
    log, recovery = _opened(tmp_path)
    assert _seqs(recovery.pending) == [0, 1, 1 << 40, (1 << 40) + 1]
    assert log.read(1 << 40) == jumped
    log.close()


def test_out_of_order_records_are_refused_before_writing(tmp_path: Path) -> None:
    """Seqs must strictly increase; a bad commit writes nothing."""
    log, _ = _opened(tmp_path)
    log.commit([_record(0)], [])
    size = log.disk_bytes
    with pytest.raises(ValueError, match="below the next seq"):
        log.commit([_record(1), _record(3), _record(2)], [])
    with pytest.raises(ValueError, match="record 1"):
        log.commit([_record(1, shard=1 << 16)], [])
    assert log.disk_bytes == size
    assert log.next_seq == 1
    log.close()


def test_read_after_rotation(tmp_path: Path) -> None:
    """Records spread over many segments read back from each, before and after a restart."""
    records = [_record(seq, size=50 + seq) for seq in range(40)]
    log, _ = _opened(tmp_path, segment_bytes=500)
    for i in range(0, 40, 7):
        log.commit(records[i : i + 7], [])
    assert log.segment_count > 5
    assert [log.read(r.seq) for r in reversed(records)] == records[::-1]
    log.close()
    log, recovery = _opened(tmp_path, segment_bytes=500)
    assert recovery.pending == [_info(r) for r in records]
    assert [log.read(r.seq) for r in records] == records
    before = log.segment_count
    log.commit([], range(20))
    assert log.read(19) is None
    assert log.read(20) == records[20]
    assert log.segment_count < before  # wholly acknowledged segments are deleted
    assert int(_segments(tmp_path)[0].name[:-4]) <= 20
    log.close()


def test_fsync_off(tmp_path: Path) -> None:
    """fsync=False appends, acknowledges and recovers the same way."""
    records = [_record(seq) for seq in range(4)]
    log, _ = _opened(tmp_path, fsync=False)
    log.commit(records, [0])
    log.close()
    log, recovery = _opened(tmp_path, fsync=False)
    assert _seqs(recovery.pending) == [1, 2, 3]
    assert log.read(2) == records[2]
    log.close()


def test_corrupt_ack_file_resends_rather_than_loses(tmp_path: Path) -> None:
    """A damaged acked file makes every record on disk pending again, and says so."""
    log, _ = _opened(tmp_path)
    log.commit([_record(seq) for seq in range(5)], [0, 1, 3])
    log.close()
    ack = tmp_path / "acked"
    data = bytearray(ack.read_bytes())
    data[10] ^= 1
    ack.write_bytes(bytes(data))
    log, recovery = _opened(tmp_path)
    assert recovery.ack_state_corrupt
    assert _seqs(recovery.pending) == [0, 1, 2, 3, 4]
    assert any("acked" in line for line in recovery.problems)
    log.close()
    _, recovery = _opened(tmp_path)
    assert not recovery.ack_state_corrupt  # rewritten at open


def test_directory_that_cannot_be_created(tmp_path: Path) -> None:
    """An unusable directory is the one setup failure that raises, naming the path."""
    blocker = tmp_path / "file"
    blocker.write_bytes(b"")
    with pytest.raises(DiskQueueError, match=str(blocker)):
        WriteAheadLog(blocker / "wal").open()


def test_failed_write_is_data_and_leaves_no_torn_frame(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A write that fails halfway (disk full) is rolled back and reported; later commits and a
    restart see no damage."""
    log, _ = _opened(tmp_path)
    log.commit([_record(0)], [])
    real = wal._write_all

    def half_then_enospc(fd: int, data: bytes) -> None:
        real(fd, data[: len(data) // 2])
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(wal, "_write_all", half_then_enospc)
    result = log.commit([_record(1), _record(2)], [])
    monkeypatch.setattr(wal, "_write_all", real)
    assert result.unwritten == [1, 2]
    assert result.errors
    assert log.io_errors >= 1
    assert log.read(1) is None
    assert log.pending_records == 1
    assert log.commit([_record(3)], []).errors == []
    log.close()
    log, recovery = _opened(tmp_path)
    assert _seqs(recovery.pending) == [0, 3]
    assert recovery.corrupt_records == 0
    assert log.read(3) == _record(3)
    log.close()


def test_use_before_open_is_a_programming_error(tmp_path: Path) -> None:
    """commit and read need open(); close without open is a no-op."""
    log = WriteAheadLog(tmp_path)
    log.close()
    with pytest.raises(RuntimeError, match="not open"):
        log.commit([], [])


def test_scanner_fuzz() -> None:
    """2,000 random flips, truncations, insertions and deletions: the scanner never raises,
    recovers only byte-identical records, and loses only the records the mutation touched."""
    rng = random.Random(20261206)
    pool = [make_segment(rng) for _ in range(64)]
    problems = []
    for case in range(2000):
        original = pool[case % len(pool)]
        mutation = mutate(rng, original)
        problem = check(original, mutation)
        if problem is not None:
            problems.append(f"case {case} {mutation.kind} {mutation.start}: {problem}")
    assert problems == []


def test_open_fuzz(tmp_path: Path) -> None:
    """Mutated segment files through open(): never raises, every pending record reads back
    byte-identical, and appending after recovery leaves a clean log."""
    rng = random.Random(8)
    records = [_record(seq, size=rng.randint(0, 120)) for seq in range(6)]
    source = tmp_path / "source"
    _write(source, records)
    (segment,) = _segments(source)
    whole = segment.read_bytes()
    originals = {r.seq: r for r in records}
    for case in range(150):
        directory = tmp_path / f"case{case}"
        shutil.copytree(source, directory)
        data = bytearray(whole)
        kind = case % 4
        at = rng.randrange(len(data))
        if kind == 0:
            data[at] ^= rng.randint(1, 255)
        elif kind == 1:
            del data[at:]
        elif kind == 2:
            data[at:at] = rng.randbytes(rng.randint(1, 16))
        else:
            del data[at : at + rng.randint(1, 16)]
        (directory / segment.name).write_bytes(bytes(data))
        log, recovery = _opened(directory)
        for info in recovery.pending:
            assert log.read(info.seq) == originals[info.seq], case
        log.commit([_record(6)], [])
        log.close()
        log, again = _opened(directory)
        assert _seqs(again.pending)[-1] == 6, case
        assert again.pending[:-1] == recovery.pending, case
        assert log.read(6) == _record(6), case
        log.close()
