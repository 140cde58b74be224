"""The disk queue: append-only segment files holding encoded batches, replayed in FIFO order.

A remote writer whose memory queue is full appends its sealed batches here, and feeds its shards
from here as memory frees up; at shutdown it writes what it could not send *in front of* the
unread records (`prepend`), so a restart delivers the oldest data first.

Layout under ``<storage.path>/<remote_name>/``::

    0000010000000000.seg   records: [u32 length LE][u32 crc32 LE][payload] ...
    0000010000000001.seg
    cursor                 "<seq> <offset>": where reading stopped inside a segment (clean stop)

* Segments are named by a hex sequence number; reading goes in ascending order. Appends go to the
  last segment, rotated at ``segment_bytes``; a new process never appends to an old segment, so a
  torn record left by a crash stays at the end of its own segment.
* A fully read segment is deleted; when the reader catches up with the writer the last segment
  is deleted too, so an idle queue holds no files.
* A record whose header, length or CRC is wrong raises `DiskQueueError` once; the rest of that
  segment is skipped, every earlier record has already been returned, and later segments are
  still read.
* Durability: records are flushed to the OS on every append and fsynced on `close`; a machine
  crash can lose what the OS had not written, a process crash cannot. After a crash the cursor
  may be stale, so records can be delivered twice (at-least-once), never skipped.

Prometheus counterpart: none (the agent keeps a WAL and loses unsent samples on restart,
spec §6.8); the segment naming and record framing follow ``tsdb/wlog``.
"""

from __future__ import annotations

import contextlib
import os
import struct
import zlib
from collections import deque
from collections.abc import Iterable
from pathlib import Path
from typing import BinaryIO

from collector.errors import DiskQueueError

__all__ = ["DiskQueue"]

_HEADER = struct.Struct("<II")
_FIRST_SEQ = 1 << 40
"""Fresh directories start here, leaving room below for `DiskQueue.prepend`."""
_SUFFIX = ".seg"
_CURSOR = "cursor"
_MAX_RECORD = 1 << 30


class DiskQueue:
    """A FIFO of byte records in segment files. Synchronous: appends are small buffered writes."""

    __slots__ = (
        "_dir",
        "_read_file",
        "_read_offset",
        "_segment_bytes",
        "_segments",
        "_sizes",
        "_start_offsets",
        "_write_file",
        "corruptions",
    )

    def __init__(self, directory: Path, *, segment_bytes: int = 8 << 20) -> None:
        """Open (creating) ``directory`` and index its segments; nothing is read yet."""
        self._dir = directory
        self._segment_bytes = segment_bytes
        self._segments: deque[int] = deque()
        self._sizes: dict[int, int] = {}
        self._start_offsets: dict[int, int] = {}
        self._read_file: BinaryIO | None = None
        self._read_offset = 0
        self._write_file: BinaryIO | None = None
        self.corruptions = 0
        """Corrupt records found so far (each skipped the rest of its segment)."""
        try:
            directory.mkdir(parents=True, exist_ok=True)
            found = sorted(
                int(p.name[: -len(_SUFFIX)], 16)
                for p in directory.iterdir()
                if p.name.endswith(_SUFFIX) and _is_hex(p.name[: -len(_SUFFIX)])
            )
            for seq in found:
                self._segments.append(seq)
                self._sizes[seq] = self._path(seq).stat().st_size
            self._load_cursor()
        except OSError as exc:
            raise DiskQueueError(f"cannot open disk queue {directory}: {exc}") from exc
        if self._segments:
            self._read_offset = self._start_offsets.pop(self._segments[0], 0)

    @property
    def directory(self) -> Path:
        """Where the segments live."""
        return self._dir

    @property
    def empty(self) -> bool:
        """True when every record has been read."""
        segments = self._segments
        if not segments:
            return True
        return len(segments) == 1 and self._read_offset >= self._sizes[segments[0]]

    @property
    def size_bytes(self) -> int:
        """Bytes in segment files (read records of the first segment included)."""
        return sum(self._sizes.values())

    @property
    def segment_count(self) -> int:
        """Segment files on disk."""
        return len(self._segments)

    def append(self, record: bytes) -> None:
        """Add ``record`` at the end of the queue."""
        try:
            if self._write_file is None or self._sizes[self._segments[-1]] >= self._segment_bytes:
                self._rotate()
            assert self._write_file is not None
            self._write_file.write(_frame(record))
            self._write_file.flush()
        except OSError as exc:
            raise DiskQueueError(f"cannot append to disk queue {self._dir}: {exc}") from exc
        self._sizes[self._segments[-1]] += _HEADER.size + len(record)

    def prepend(self, records: Iterable[bytes]) -> None:
        """Put ``records`` (in order) in front of every unread record, in a segment of their own."""
        data = b"".join(_frame(r) for r in records)
        if not data:
            return
        if self._segments:
            # Remember where reading stopped in the current first segment.
            self._start_offsets[self._segments[0]] = self._read_offset
            seq = self._segments[0] - 1
        else:
            seq = _FIRST_SEQ
        try:
            with open(self._path(seq), "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
        except OSError as exc:
            raise DiskQueueError(f"cannot write disk queue {self._dir}: {exc}") from exc
        self._close_reader()
        self._segments.appendleft(seq)
        self._sizes[seq] = len(data)
        self._read_offset = 0

    def pop(self) -> bytes | None:
        """The oldest unread record, or None when the queue is empty.

        Raises `DiskQueueError` for a corrupt record, after skipping the rest of its segment.
        """
        segments = self._segments
        while segments:
            seq = segments[0]
            size = self._sizes[seq]
            if self._read_offset >= size:
                if len(segments) == 1 and self._write_file is not None:
                    # Caught up with the writer: drop the segment, the next append starts anew.
                    self._close_writer()
                self._drop_first()
                continue
            try:
                record = self._read_record(seq, size)
            except OSError as exc:
                self._read_offset = size
                self.corruptions += 1
                raise DiskQueueError(f"cannot read disk queue segment {seq:016x}: {exc}") from exc
            if self._read_offset >= size:
                # Truncate eagerly: a consumed segment is deleted as soon as it is read.
                if len(segments) == 1:
                    self._close_writer()
                self._drop_first()
            return record
        return None

    def close(self) -> None:
        """Fsync and close the files and record where reading stopped."""
        self._close_reader()
        if self._write_file is not None:
            try:
                os.fsync(self._write_file.fileno())
            except OSError:
                pass
            self._close_writer()
        offsets = dict(self._start_offsets)
        if self._segments and self._read_offset:
            offsets[self._segments[0]] = self._read_offset
        cursor = self._dir / _CURSOR
        try:
            if offsets:
                tmp = self._dir / (_CURSOR + ".tmp")
                tmp.write_text("".join(f"{seq:x} {off}\n" for seq, off in offsets.items()))
                os.replace(tmp, cursor)
            else:
                cursor.unlink(missing_ok=True)
        except OSError as exc:
            raise DiskQueueError(f"cannot write disk queue cursor {cursor}: {exc}") from exc

    # ------------------------------------------------------------------ internals

    def _path(self, seq: int) -> Path:
        return self._dir / f"{seq:016x}{_SUFFIX}"

    def _load_cursor(self) -> None:
        cursor = self._dir / _CURSOR
        if not cursor.exists():
            return
        for line in cursor.read_text().splitlines():
            parts = line.split()
            if len(parts) == 2 and _is_hex(parts[0]) and parts[1].isdigit():
                seq, offset = int(parts[0], 16), int(parts[1])
                if seq in self._sizes and offset <= self._sizes[seq]:
                    self._start_offsets[seq] = offset

    def _rotate(self) -> None:
        self._close_writer()
        seq = self._segments[-1] + 1 if self._segments else _FIRST_SEQ
        self._write_file = open(self._path(seq), "ab")  # noqa: SIM115  # lives across calls
        self._segments.append(seq)
        self._sizes[seq] = 0

    def _read_record(self, seq: int, size: int) -> bytes:
        if self._read_file is None:
            self._read_file = open(self._path(seq), "rb")  # noqa: SIM115  # lives across calls
            self._read_file.seek(self._read_offset)
        f = self._read_file
        header = f.read(_HEADER.size)
        problem = ""
        record = b""
        if len(header) < _HEADER.size:
            problem = "truncated record header"
        else:
            length, crc = _HEADER.unpack(header)
            if length > _MAX_RECORD or self._read_offset + _HEADER.size + length > size:
                problem = f"record length {length} runs past the end of the segment"
            else:
                record = f.read(length)
                if len(record) < length:
                    problem = "truncated record"
                elif zlib.crc32(record) != crc:
                    problem = "record checksum mismatch"
        if problem:
            at = self._read_offset
            self._read_offset = size
            self.corruptions += 1
            raise DiskQueueError(
                f"corrupt disk queue segment {self._path(seq)} at offset {at}: {problem}; "
                "skipping the rest of the segment"
            )
        self._read_offset += _HEADER.size + len(record)
        return record

    def _drop_first(self) -> None:
        seq = self._segments.popleft()
        self._close_reader()
        del self._sizes[seq]
        self._start_offsets.pop(seq, None)
        with contextlib.suppress(FileNotFoundError):
            self._path(seq).unlink()
        self._read_offset = self._start_offsets.pop(self._segments[0], 0) if self._segments else 0

    def _close_reader(self) -> None:
        if self._read_file is not None:
            self._read_file.close()
            self._read_file = None

    def _close_writer(self) -> None:
        if self._write_file is not None:
            self._write_file.close()
            self._write_file = None


def _frame(record: bytes) -> bytes:
    return _HEADER.pack(len(record), zlib.crc32(record)) + record


def _is_hex(text: str) -> bool:
    return bool(text) and all(c in "0123456789abcdef" for c in text)
