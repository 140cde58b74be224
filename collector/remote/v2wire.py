"""Byte-level reading of 1.0 ``TimeSeries`` for the 2.0 transcoder (`collector.remote.codec2`).

Pipeline position: inside `V2Transcoder.encode`, which turns a 1.0 batch from the write-ahead
log into a 2.0 ``Request`` when it is sent. These are its byte-level helpers: varints, where a
series' ``Label`` fields end, what follows them (samples, exemplars, histograms) and how those
are renumbered for 2.0 (reference §1.1, §2: ``TimeSeries`` has exemplars at 3 and histograms
at 4 in 1.0, the reverse in 2.0; ``Histogram`` shares its fields 1-16). No protobuf object.

Prometheus counterpart: ``storage/remote/queue_manager.go`` (``populateV2TimeSeries``).
"""

from __future__ import annotations

from collections.abc import Callable

from collector.remote.codec import DecodeError, varint

__all__ = [
    "MAX_FAST_SYMBOLS",
    "NO_SAMPLES",
    "REWRITE",
    "VARINTS",
    "check_samples",
    "labels_end",
    "parse_labels",
    "read_varint",
    "ref",
    "v2_tail",
]

VARINTS: tuple[bytes, ...] = tuple(varint(i) for i in range(1 << 14))
"""Varints of 0..16383: a symbol ref is one tuple index, not an encoding loop."""

MAX_FAST_SYMBOLS = len(VARINTS)


def ref(index: int) -> bytes:
    """The varint of a symbol ref (a table lookup below 16384)."""
    return VARINTS[index] if index < MAX_FAST_SYMBOLS else varint(index)


def read_varint(raw: bytes, pos: int) -> tuple[int, int]:
    byte = raw[pos]
    if byte < 0x80:
        return byte, pos + 1
    result = byte & 0x7F
    shift = 7
    while True:
        pos += 1
        if pos >= len(raw) or shift > 63:
            raise DecodeError("truncated or overlong varint in WriteRequest")
        byte = raw[pos]
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result, pos + 1
        shift += 7


REWRITE = 1
"""`check_samples`: an exemplar or a histogram is there (`v2_tail` rewrites them)."""
NO_SAMPLES = 2
"""`check_samples`: neither a sample nor a histogram (an exemplar-only series): not counted
as a sample, since receivers count written samples and histograms only."""


def check_samples(raw: bytes, pos: int, end: int) -> int:
    """The fields after the labels must all be ``Sample`` (2), ``Exemplar`` (3) or
    ``Histogram`` (4) fields; returns `REWRITE` and `NO_SAMPLES` flags (0: samples only,
    copied as they are)."""
    flags = NO_SAMPLES
    while pos < end:
        tag = raw[pos]
        if tag == 0x1A:
            flags |= REWRITE
        elif tag == 0x22:
            flags = (flags | REWRITE) & ~NO_SAMPLES
        elif tag == 0x12:
            flags &= ~NO_SAMPLES
        else:
            raise DecodeError(f"unexpected TimeSeries field tag {tag:#x} after the labels")
        length, pos = read_varint(raw, pos + 1)
        pos += length
    if pos != end:
        raise DecodeError("Sample field runs past its TimeSeries")
    return flags


def v2_tail(
    raw: bytes,
    pos: int,
    end: int,
    intern: Callable[[bytes, int], int],
    symbols: dict[bytes, int],
) -> bytes:
    """The fields after the labels in 2.0's numbering: a ``histograms`` field (1.0: 4) becomes
    field 3 with its bytes kept (the ``Histogram`` messages share field numbers 1-16,
    reference §2); an ``exemplars`` field (1.0: 3) becomes field 4, its ``Label`` fields
    replaced by ``labels_refs`` (1, packed) into ``symbols``, its value (2) and timestamp (3)
    kept; samples are kept."""
    out: list[bytes] = []
    while pos < end:
        tag = raw[pos]
        length, start = read_varint(raw, pos + 1)
        stop = start + length
        if tag == 0x22:
            out.append(b"\x1a" + raw[pos + 1 : stop])
        elif tag == 0x1A:
            stop_labels = labels_end(raw, start, stop)
            refs = b"".join(
                ref(intern(field, len(symbols)))
                for field in parse_labels(raw[start:stop_labels])[0]
            )
            body = (b"\x0a" + varint(len(refs)) + refs if refs else b"") + raw[stop_labels:stop]
            out.append(b"\x22" + varint(len(body)) + body)
        else:
            out.append(raw[pos:stop])
        pos = stop
    return b"".join(out)


def labels_end(raw: bytes, pos: int, end: int) -> int:
    """The offset of the first field that is not a ``Label`` (field 1) in ``raw[pos:end]``."""
    while pos < end and raw[pos] == 0x0A:
        length, after = read_varint(raw, pos + 1)
        if after + length > end:
            return pos
        pos = after + length
    return pos


def parse_labels(label_bytes: bytes) -> tuple[tuple[bytes, ...], str]:
    """The symbol fields (name, value, name, value...) of the ``Label`` fields ``label_bytes``,
    and the ``__name__`` value."""
    fields: list[bytes] = []
    name = ""
    pos = 0
    n = len(label_bytes)
    while pos < n:
        if label_bytes[pos] != 0x0A:
            raise DecodeError(f"unexpected TimeSeries field tag {label_bytes[pos]:#x}")
        length, pos = read_varint(label_bytes, pos + 1)
        end = pos + length
        label_name = label_value = b""
        while pos < end:
            tag = label_bytes[pos]
            size, pos = read_varint(label_bytes, pos + 1)
            if tag == 0x0A:
                label_name = label_bytes[pos : pos + size]
            elif tag == 0x12:
                label_value = label_bytes[pos : pos + size]
            else:
                raise DecodeError(f"unexpected Label field tag {tag:#x}")
            pos += size
        if pos != end:
            raise DecodeError("Label field runs past its length")
        if label_name == b"__name__":
            name = label_value.decode("utf-8", "replace")
        fields.extend(b"\x22" + varint(len(part)) + part for part in (label_name, label_value))
    return tuple(fields), name
