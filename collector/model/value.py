"""Sample values with special bit patterns.

Prometheus marks a series stale with one particular NaN, bits ``0x7ff0000000000002``, and
stores every other NaN as ``0x7ff8000000000001``. Python floats keep NaN payloads through
``struct`` round-trips, but ``float('nan')`` has neither pattern and ``==`` can never tell NaNs
apart, so both are built from their bits and compared by bits (spec §4.9, STYLE gotchas).

Prometheus counterpart: ``model/value``.
"""

from __future__ import annotations

import struct

__all__ = ["NORMAL_NAN", "NORMAL_NAN_BITS", "STALE_NAN", "STALE_NAN_BITS", "float_bits", "is_stale"]

STALE_NAN_BITS = 0x7FF0000000000002
NORMAL_NAN_BITS = 0x7FF8000000000001

_Q = struct.Struct("<Q")
_D = struct.Struct("<d")

STALE_NAN: float = _D.unpack(_Q.pack(STALE_NAN_BITS))[0]
"""The staleness marker value. Compare with `is_stale`, never with ``==``."""

NORMAL_NAN: float = _D.unpack(_Q.pack(NORMAL_NAN_BITS))[0]
"""The NaN Prometheus stores for any scraped NaN."""


def float_bits(value: float) -> int:
    """The IEEE-754 bit pattern of ``value`` as an unsigned 64-bit int."""
    bits: int = _Q.unpack(_D.pack(value))[0]
    return bits


def is_stale(value: float) -> bool:
    """True when ``value`` is the staleness marker (by bits)."""
    return value != value and float_bits(value) == STALE_NAN_BITS
