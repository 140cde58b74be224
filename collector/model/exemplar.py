"""Exemplars as remote write 1.0 sends them: the bytes of one ``prometheus.Exemplar`` message.

Place in the pipeline: the scrape loop (`collector.scrape.exemplars`) encodes each exemplar
it appends, once, with `encode`; the remote-write encoder wraps the bytes in a ``TimeSeries``
(labels of the series, ``exemplars`` field 3) for destinations with ``send_exemplars: true``.

Wire format (reference §2): ``Exemplar`` is ``labels`` (1, repeated ``Label``: name 1, value 2),
``value`` (2, double) and ``timestamp`` (3, int64 ms); proto3 omits zero scalars and empty
strings. Labels are sorted by name and empty values dropped, as Prometheus's parsers and
``AppendExemplar`` leave them.

Prometheus counterpart: ``exemplar.Exemplar``; ``prompb.Exemplar`` as built by
``storage/remote/queue_manager.go``.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable

__all__ = ["encode"]

_pack_d = struct.Struct("<d").pack
_MASK64 = (1 << 64) - 1


def _varint(n: int) -> bytes:
    n &= _MASK64
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _field(tag: int, payload: bytes) -> bytes:
    return bytes((tag,)) + _varint(len(payload)) + payload


def encode(labels: Iterable[tuple[str, str]], value: float, ts_ms: int) -> bytes:
    """The ``Exemplar`` message bytes (labels sorted, empty values dropped)."""
    parts: list[bytes] = []
    for name, label_value in sorted(labels):
        if not label_value:
            continue
        body = (_field(0x0A, name.encode()) if name else b"") + _field(0x12, label_value.encode())
        parts.append(_field(0x0A, body))
    if value != 0:
        parts.append(b"\x11" + _pack_d(value))
    if ts_ms:
        parts.append(b"\x18" + _varint(ts_ms))
    return b"".join(parts)
