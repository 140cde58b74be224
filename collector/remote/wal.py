"""The per-destination write-ahead log: segment files of sealed batches, and where sending stopped.

Place in the pipeline: `RemoteWriter` seals batches and gives each a seq. Once per group-commit
interval (at most 1 s) it hands the newly sealed batches *and* the seqs acknowledged since the
last call to `WriteAheadLog.commit`, in one call on its single I/O thread. Shards send from
memory when they can and from the log (`WriteAheadLog.read`) when they must: after a restart,
or once memory is full. Nothing is lost across outages, restarts and backpressure (issue 8):
every batch is on disk within one interval of being sealed, and a restart resumes exactly where
acknowledgements stopped.

Directory layout (the writer passes ``<storage.path>/<remote_name>/wal``)::

    00000000000000000042.seg   records with seq >= 42: named after the first seq it holds
    00000000000000001337.seg   (framing and recovery rules: `collector.remote.walformat`)
    acked                      AckState: watermark, acked seqs above it, next_seq
    quarantine/                segments that could not be read, moved aside and reported

Threading: one owner thread calls every method; there is no lock and no asyncio here. All file
I/O is plain ``os`` calls on raw descriptors: a commit costs one ``write`` per segment it
touches, then one ``fsync`` per segment (when ``fsync=True``), then the small ``acked`` file.

Durability: with ``fsync=True`` a commit's records and acknowledgements survive a machine crash
once `commit` returns; with ``fsync=False`` they survive a process crash (the OS has them) but a
machine crash can lose the last seconds. Either way a crash mid-commit leaves at worst a torn
last frame, which `open` truncates and reports. The ``acked`` file is replaced atomically
(write a temporary file, fsync, ``os.replace``); if it is damaged anyway, every record on disk is
treated as unacknowledged: resent, never lost.

Run-time trouble is data, not exceptions: damaged records, quarantined segments, records dropped
because the disk cap was reached and failed writes are returned in `Recovery` / `CommitResult`
and counted. Only programming errors raise (seqs out of order, a field out of range, use before
`open`), and `DiskQueueError` when the directory itself cannot be used.

Prometheus counterpart: ``tsdb/wlog`` (segments, torn-tail repair) plus the remote-write
``WALWatcher`` checkpoint of where sending stopped; the agent re-reads its WAL to send, we keep the
encoded batches themselves so a resend costs a read, not a re-encode.
"""

from __future__ import annotations

import os
import struct
from bisect import bisect_left, bisect_right
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from collector.errors import DiskQueueError
from collector.remote.walformat import (
    FRAME_OVERHEAD,
    HEADER_SIZE,
    MAX_BODY,
    SEGMENT_HEADER,
    SEQ_WINDOW,
    AckState,
    Record,
    RecordInfo,
    decode_frame,
    encode_ack_state,
    frame_parts,
)
from collector.remote.walrecovery import (
    ACK_FILE,
    Recovery,
    Segment,
    first_of,
    load_ack_state,
    quarantine,
    recover_segment,
)

__all__ = ["CommitResult", "Record", "RecordInfo", "Recovery", "WriteAheadLog"]

_SUFFIX = ".seg"
_NAME_DIGITS = 20  # u64 in decimal
_ACK_TMP = "acked.tmp"
_O_CLOEXEC = getattr(os, "O_CLOEXEC", 0)


@dataclass(slots=True, kw_only=True)
class CommitResult:
    """What one `WriteAheadLog.commit` did besides the expected."""

    dropped: list[tuple[int, int]] = field(default_factory=list)
    """(seq, count) of unacknowledged records deleted to stay under ``max_bytes`` (disk full)."""
    unwritten: list[int] = field(default_factory=list)
    """Seqs of records that could not be written (I/O error): not on disk, not readable."""
    errors: list[str] = field(default_factory=list)
    """One line per I/O error (write, fsync, ``acked`` file, unlink)."""
    disk_bytes: int = 0
    """Bytes in segment files after the commit."""


class WriteAheadLog:
    """Segment files of records plus the acknowledged state; see the module docstring.

    Call `open` once, then `commit` / `read` from one thread, then `close`.
    """

    __slots__ = (
        "_acked",
        "_active",
        "_closed",
        "_dir",
        "_dir_fd",
        "_dirty",
        "_disk_bytes",
        "_fsync",
        "_io_errors",
        "_max_bytes",
        "_next_seq",
        "_opened",
        "_pending",
        "_read_errors",
        "_read_fd",
        "_read_segment",
        "_segment_bytes",
        "_segments",
        "_watermark",
    )

    def __init__(
        self,
        directory: Path,
        *,
        segment_bytes: int = 16 << 20,
        max_bytes: int = 1 << 30,
        fsync: bool = True,
    ) -> None:
        """Remember the settings; nothing touches the disk before `open`.

        ``segment_bytes``: rotate once the active segment reaches this size. ``max_bytes``: cap
        on segment bytes; past it the oldest segments are deleted and their unacknowledged
        records reported as dropped. ``fsync``: make each commit durable against machine
        crashes, not only process crashes.
        """
        if segment_bytes <= len(SEGMENT_HEADER) or max_bytes <= 0:
            raise ValueError(f"segment_bytes {segment_bytes} / max_bytes {max_bytes} too small")
        self._dir = directory
        self._segment_bytes = segment_bytes
        self._max_bytes = max_bytes
        self._fsync = fsync
        self._segments: list[Segment] = []
        self._active: Segment | None = None
        self._watermark = 0
        self._acked: set[int] = set()
        self._next_seq = 0
        self._pending = 0
        self._disk_bytes = 0
        self._dirty = False
        self._dir_fd = -1
        self._read_fd = -1
        self._read_segment: Segment | None = None
        self._io_errors = 0
        self._read_errors = 0
        self._opened = False
        self._closed = False

    # ------------------------------------------------------------------ properties

    @property
    def directory(self) -> Path:
        """Where the segments live."""
        return self._dir

    @property
    def disk_bytes(self) -> int:
        """Bytes in segment files (acknowledged records in a kept segment included)."""
        return self._disk_bytes

    @property
    def pending_records(self) -> int:
        """Records on disk not yet acknowledged."""
        return self._pending

    @property
    def next_seq(self) -> int:
        """One past the highest seq appended (or recovered)."""
        return self._next_seq

    @property
    def watermark(self) -> int:
        """The lowest seq not yet acknowledged; ``next_seq`` when nothing is pending."""
        return self._watermark

    @property
    def segment_count(self) -> int:
        """Segment files on disk."""
        return len(self._segments)

    @property
    def io_errors(self) -> int:
        """Failed writes, fsyncs, ``acked`` updates and unlinks so far."""
        return self._io_errors

    @property
    def read_errors(self) -> int:
        """`read` calls that found a damaged record or could not read it."""
        return self._read_errors

    # ------------------------------------------------------------------ open

    def open(self) -> Recovery:
        """Create the directory if needed, recover every segment and the acknowledged state.

        Raises `DiskQueueError` only when the directory cannot be created or listed.
        """
        if self._opened:
            raise RuntimeError(f"write-ahead log {self._dir} is already open")
        try:
            self._dir.mkdir(parents=True, exist_ok=True)
            names = os.listdir(self._dir)
            self._dir_fd = os.open(self._dir, os.O_RDONLY | _O_CLOEXEC)
        except OSError as exc:
            raise DiskQueueError(
                f"cannot open write-ahead log directory {self._dir}: {exc}"
            ) from exc
        self._opened = True
        recovery = Recovery(
            pending=[], next_seq=0, lost={"corrupt": 0, "quarantined": 0}, corrupt_records=0
        )
        state = load_ack_state(self._dir, recovery)
        if _ACK_TMP in names:
            try:
                os.unlink(self._dir / _ACK_TMP)  # a crash between write and replace
            except OSError:
                pass
        found: list[tuple[int, Path]] = []
        for name in names:
            if not name.endswith(_SUFFIX):
                continue
            path = self._dir / name
            stem = name[: -len(_SUFFIX)]
            if len(stem) == _NAME_DIGITS and stem.isdigit():
                found.append((int(stem), path))
            elif path.is_file():
                quarantine(self._dir, path, "not a segment name", recovery)
        found.sort()
        next_seq = state.next_seq if state is not None else 0
        # Damage is reported in samples only for records not acknowledged before the crash.
        file_watermark = state.watermark if state is not None else 0
        file_acked = frozenset(state.acked if state is not None else ())

        def unacked(seq: int) -> bool:
            return seq >= file_watermark and seq not in file_acked

        infos: list[list[RecordInfo]] = []
        last_seq = -1
        for i, (first, path) in enumerate(found):
            next_seq = max(next_seq, first)
            segment, segment_infos = recover_segment(
                self._dir,
                first,
                path,
                last=i == len(found) - 1,
                prev_seq=max(first - 1, last_seq),
                recovery=recovery,
                unacked=unacked,
            )
            if segment is None:
                continue
            if segment_infos:
                last_seq = segment_infos[-1].seq
                next_seq = max(next_seq, last_seq + 1)
            self._segments.append(segment)
            infos.append(segment_infos)
            self._disk_bytes += segment.size
        self._next_seq = next_seq

        # Acknowledged state: a damaged file means everything on disk is pending (resend).
        self._watermark = file_watermark
        self._acked = {seq for seq in file_acked if self._locate(seq)}
        self._advance_watermark()
        watermark, acked_now = self._watermark, self._acked
        for segment_infos in infos:
            for info in segment_infos:
                if info.seq >= watermark and info.seq not in acked_now:
                    recovery.pending.append(info)
        self._pending = len(recovery.pending)

        # Reclaim wholly acknowledged segments. The new acked file (with next_seq) goes first:
        # if it cannot be written, the newest segment stays so next_seq survives a restart.
        persisted = self._persist(recovery.problems)
        doomed = [s for s in self._segments if not s.seqs or s.seqs[-1] < watermark]
        if not persisted and doomed and doomed[-1] is self._segments[-1]:
            doomed.pop()
        self._delete(doomed, recovery.problems)

        last = self._segments[-1] if self._segments else None
        if last is not None and last.end == last.size and last.size < self._segment_bytes:
            try:
                last.fd = os.open(last.path, os.O_RDWR | os.O_APPEND | _O_CLOEXEC)
                self._active = last
            except OSError as exc:
                recovery.problems.append(f"cannot reopen {last.path} for appending: {exc}")
        recovery.next_seq = self._next_seq
        recovery.disk_bytes = self._disk_bytes
        return recovery

    # ------------------------------------------------------------------ commit

    def commit(self, records: Sequence[Record], acked: Iterable[int] = ()) -> CommitResult:
        """Append ``records``, then apply ``acked``, then keep the disk under ``max_bytes``.

        ``records`` must have strictly increasing seqs, each at least `next_seq` (ValueError
        otherwise, before anything is written). Acks for seqs the log does not hold (never
        given, already acknowledged, dropped) are ignored: pass an ack in the same commit as its
        record or a later one.
        """
        self._check_open()
        result = CommitResult()
        if records:
            self._append(records, result)
        changed = False
        for seq in acked:
            if seq >= self._watermark and seq not in self._acked and self._locate(seq):
                self._acked.add(seq)
                self._pending -= 1
                changed = self._dirty = True
        if changed:
            self._advance_watermark()
        doomed = self._reclaimable()
        result.dropped = self._over_cap(doomed)
        if result.dropped:
            self._advance_watermark()
        if self._dirty or doomed:
            self._persist(result.errors)
        self._delete(doomed, result.errors)
        result.disk_bytes = self._disk_bytes
        return result

    def _append(self, records: Sequence[Record], result: CommitResult) -> None:
        # Encode and check everything first: a programming error leaves the log untouched.
        groups: list[_Group] = []
        group: _Group | None = None
        active = self._active
        limit = self._segment_bytes
        size = 0
        next_seq = self._next_seq
        for record in records:
            seq = record.seq
            if seq < next_seq:
                raise ValueError(f"record seq {seq} is below the next seq {next_seq}")
            if len(record.body) > MAX_BODY:
                raise ValueError(f"record {seq}: body of {len(record.body)} bytes is too large")
            try:
                parts = frame_parts(record)
            except struct.error as exc:  # a field does not fit its width
                raise ValueError(f"record {seq}: {exc}") from exc
            # A seq jump past the scanner's window starts a new segment: its name restarts the
            # window, so recovery still accepts the record.
            jump = seq - (next_seq - 1) > SEQ_WINDOW
            if group is None or size >= limit or jump:
                if group is None and active is not None and active.size < limit and not jump:
                    group = _Group(active, active.first)
                    size = active.size
                else:
                    group = _Group(None, seq)
                    group.pieces.append(SEGMENT_HEADER)
                    size = len(SEGMENT_HEADER)
                groups.append(group)
            group.seqs.append(seq)
            group.offsets.append(size)
            group.counts.append(record.count)
            group.pieces.extend(parts)
            size += FRAME_OVERHEAD + HEADER_SIZE + len(record.body)
            next_seq = seq + 1
        self._next_seq = next_seq

        touched: list[Segment] = []
        created = False
        for index, group in enumerate(groups):
            segment = self._write_group(group, result)
            if segment is None:
                for rest in groups[index:]:
                    result.unwritten.extend(rest.seqs)
                break
            touched.append(segment)
            created = created or group.segment is None
            self._pending += len(group.seqs)
        if self._fsync:
            for segment in touched:
                self._sync(segment.fd, segment.path, result.errors)
            if created:
                self._sync(self._dir_fd, self._dir, result.errors)
        # The last segment written stays active unless it is full; every other one is sealed.
        newest = touched[-1] if touched else self._active
        if self._active is not None and self._active is not newest:
            self._seal(self._active)
        for segment in touched:
            if segment is not newest or segment.size >= limit:
                self._seal(segment)
        self._active = newest if newest is not None and newest.fd >= 0 else None

    def _write_group(self, group: _Group, result: CommitResult) -> Segment | None:
        """One write of a group's frames; on failure the file is put back as it was."""
        segment = group.segment
        data = b"".join(group.pieces)
        if segment is None:
            path = self._dir / f"{group.first:0{_NAME_DIGITS}d}{_SUFFIX}"
            flags = os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND | _O_CLOEXEC
            try:
                fd = os.open(path, flags, 0o644)
            except OSError as exc:
                self._io_error(result.errors, f"cannot create {path}: {exc}")
                return None
            try:
                _write_all(fd, data)
            except OSError as exc:
                self._io_error(result.errors, f"cannot write {path}: {exc}")
                os.close(fd)
                self._unlink_quietly(path, result.errors)
                return None
            segment = Segment(group.first, path, size=0, end=0)
            segment.fd = fd
            self._segments.append(segment)
        else:
            try:
                _write_all(segment.fd, data)
            except OSError as exc:
                self._io_error(result.errors, f"cannot write {segment.path}: {exc}")
                try:
                    os.ftruncate(segment.fd, segment.size)
                except OSError:
                    # The torn frame stays past ``end``; seal the segment so nothing is appended
                    # after it (recovery skips it as damage).
                    size = _file_size(segment.fd, segment.size)
                    self._disk_bytes += size - segment.size
                    segment.size = size
                    self._seal(segment)
                    if segment is self._active:
                        self._active = None
                return None
        segment.seqs.extend(group.seqs)
        segment.offsets.extend(group.offsets)
        segment.counts.extend(group.counts)
        segment.size += len(data)
        segment.end = segment.size
        self._disk_bytes += len(data)
        return segment

    # ------------------------------------------------------------------ acknowledgements, cap

    def _advance_watermark(self) -> None:
        """Move the watermark to the lowest seq still pending, forgetting acks it passes."""
        watermark = self._watermark
        acked = self._acked
        segments = self._segments
        i = max(0, bisect_right(segments, watermark, key=first_of) - 1)
        new = self._next_seq
        for segment in segments[i:]:
            seqs = segment.seqs
            j = bisect_left(seqs, watermark)
            while j < len(seqs) and seqs[j] in acked:
                acked.discard(seqs[j])
                j += 1
            if j < len(seqs):
                new = seqs[j]
                break
        if new != watermark:
            self._watermark = new
            self._dirty = True

    def _reclaimable(self) -> list[Segment]:
        """Sealed segments whose every record is acknowledged. The newest segment is kept:
        while it exists, its name and records carry next_seq across a restart."""
        watermark = self._watermark
        return [s for s in self._segments[:-1] if not s.seqs or s.seqs[-1] < watermark]

    def _over_cap(self, doomed: list[Segment]) -> list[tuple[int, int]]:
        """Add the oldest segments to ``doomed`` until the rest fit in ``max_bytes``.

        Returns (seq, count) of the unacknowledged records they hold. The newest segment is never
        taken, so a commit never drops the records it just wrote; when it alone is over the cap
        it is sealed, and the next commit can drop it.
        """
        doomed_set = {id(s) for s in doomed}
        total = self._disk_bytes - sum(s.size for s in doomed)
        dropped: list[tuple[int, int]] = []
        watermark, acked = self._watermark, self._acked
        for segment in self._segments[:-1]:
            if total <= self._max_bytes:
                break
            if id(segment) in doomed_set:
                continue
            doomed.append(segment)
            total -= segment.size
            for seq, count in zip(segment.seqs, segment.counts, strict=True):
                if seq >= watermark and seq not in acked:
                    dropped.append((seq, count))
                else:
                    acked.discard(seq)
        self._pending -= len(dropped)
        if total > self._max_bytes and self._active is not None:
            self._seal(self._active)
            self._active = None
        if dropped:
            self._dirty = True
        return dropped

    def _persist(self, errors: list[str]) -> bool:
        """Replace the ``acked`` file atomically; False (and an error line) if that failed."""
        state = AckState(
            watermark=self._watermark, next_seq=self._next_seq, acked=tuple(sorted(self._acked))
        )
        tmp = self._dir / _ACK_TMP
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | _O_CLOEXEC, 0o644)
            try:
                _write_all(fd, encode_ack_state(state))
                if self._fsync:
                    os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, self._dir / ACK_FILE)
            if self._fsync:
                os.fsync(self._dir_fd)
        except OSError as exc:
            self._io_error(errors, f"cannot write {self._dir / ACK_FILE}: {exc}")
            return False
        self._dirty = False
        return True

    def _delete(self, doomed: list[Segment], errors: list[str]) -> None:
        if not doomed:
            return
        gone = {id(s) for s in doomed}
        self._segments = [s for s in self._segments if id(s) not in gone]
        for segment in doomed:
            if segment is self._active:
                self._active = None
            if segment is self._read_segment:
                self._close_reader()
            self._seal(segment)
            self._disk_bytes -= segment.size
            self._unlink_quietly(segment.path, errors)

    # ------------------------------------------------------------------ read, close

    def read(self, seq: int) -> Record | None:
        """The pending record ``seq`` from disk, checksum verified; None when it was
        acknowledged, dropped, never held, or is damaged now."""
        self._check_open()
        if seq < self._watermark or seq in self._acked:
            return None
        found = self._locate(seq)
        if found is None:
            return None
        segment, j = found
        offset = segment.offsets[j]
        stop = segment.offsets[j + 1] if j + 1 < len(segment.offsets) else segment.end
        fd = segment.fd if segment.fd >= 0 else self._reader(segment)
        try:
            data = os.pread(fd, stop - offset, offset)
        except OSError:
            self._read_errors += 1
            return None
        record = decode_frame(data)
        if record is None or record.seq != seq:
            self._read_errors += 1
            return None
        return record

    def close(self) -> None:
        """Fsync and close the segments and save the acknowledged state. Idempotent."""
        if not self._opened or self._closed:
            return
        self._closed = True
        errors: list[str] = []
        if self._active is not None and self._fsync:
            self._sync(self._active.fd, self._active.path, errors)
        for segment in self._segments:
            self._seal(segment)
        self._active = None
        self._close_reader()
        self._persist(errors)  # small, and saves next_seq even if no ack changed
        os.close(self._dir_fd)
        self._dir_fd = -1

    # ------------------------------------------------------------------ internals

    def _check_open(self) -> None:
        if not self._opened or self._closed:
            raise RuntimeError(f"write-ahead log {self._dir} is not open")

    def _locate(self, seq: int) -> tuple[Segment, int] | None:
        segments = self._segments
        i = bisect_right(segments, seq, key=first_of) - 1
        if i < 0:
            return None
        segment = segments[i]
        j = bisect_left(segment.seqs, seq)
        if j < len(segment.seqs) and segment.seqs[j] == seq:
            return segment, j
        return None

    def _reader(self, segment: Segment) -> int:
        """A read descriptor for a sealed segment; the last one is kept (replay reads in order)."""
        if self._read_segment is not segment:
            self._close_reader()
            try:
                self._read_fd = os.open(segment.path, os.O_RDONLY | _O_CLOEXEC)
            except OSError:
                return -1  # pread on -1 fails and counts as a read error
            self._read_segment = segment
        return self._read_fd

    def _close_reader(self) -> None:
        if self._read_fd >= 0:
            os.close(self._read_fd)
        self._read_fd = -1
        self._read_segment = None

    def _seal(self, segment: Segment) -> None:
        if segment.fd >= 0:
            os.close(segment.fd)
            segment.fd = -1

    def _sync(self, fd: int, path: Path, errors: list[str]) -> None:
        try:
            os.fsync(fd)
        except OSError as exc:
            self._io_error(errors, f"cannot fsync {path}: {exc}")

    def _unlink_quietly(self, path: Path, errors: list[str]) -> None:
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
        except OSError as exc:
            self._io_error(errors, f"cannot delete {path}: {exc}")

    def _io_error(self, errors: list[str], message: str) -> None:
        self._io_errors += 1
        errors.append(message)


class _Group:
    """The frames of one commit that go to one segment: joined and written with one call."""

    __slots__ = ("counts", "first", "offsets", "pieces", "segment", "seqs")

    def __init__(self, segment: Segment | None, first: int) -> None:
        self.segment = segment
        """The active segment to append to, or None for a new segment named ``first``."""
        self.first = first
        self.pieces: list[bytes] = []
        self.seqs: list[int] = []
        self.offsets: list[int] = []
        self.counts: list[int] = []


def _write_all(fd: int, data: bytes) -> None:
    """``os.write`` until done: a regular file takes it in one call unless the disk fills."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _file_size(fd: int, default: int) -> int:
    try:
        return os.fstat(fd).st_size
    except OSError:
        return default
