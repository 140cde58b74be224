"""Whether the C extension `collector._native` is used, decided once per process at import.

Place in the pipeline: beside it, not in it. The scrape hot path has a few steps written twice,
in pure Python (the reference, always present) and in C (``collector/_native*.c``, built by
``setup.py`` when a compiler is there). Modules with such a step take the C function from here
and fall back to their own Python code when it is None; both give identical results, which
``tests/model/test_native_parity.py``, ``tests/scrape/test_cache_native.py`` and
``tests/remote/test_encoder_native.py`` check. Four steps: the steady-state value pass of
`IncrementalParser` (`steady_values`), the scrape cache's append of a scrape whose series are
all cached (`bulk_append`), the remote-write encoder's commit loop over series it has encoded
before (`encode_run`) and, for a destination sending the scrape's own labels, over label sets
(`encode_labelled`; its pure-Python counterpart keeps per-series encodings instead, with the
same bytes).

``COLLECTOR_NATIVE=0`` in the environment forces pure Python everywhere (read here, at import,
and inherited by the scrape worker processes); any other value, or none, uses the extension
when it imports. ``collector --version`` prints `describe`.

Prometheus counterpart: none (Go needs no second implementation).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from types import ModuleType
from typing import Any

__all__ = [
    "ACTIVE",
    "REASON",
    "BulkAppend",
    "EncodeLabelled",
    "EncodeRun",
    "SteadyValues",
    "bulk_append",
    "describe",
    "encode_labelled",
    "encode_run",
    "steady_values",
]

SteadyValues = Callable[[bytes, int, bytes, tuple[bytes, ...], list[bytes]], list[float] | None]
"""``steady_values(body, nlines, mask, fixed, keys)``: see `collector._native`."""

EncodeRun = Callable[
    [
        list[tuple[int, float, int]],
        int,
        int,
        list[bytes | None],
        list[bytes | None],
        list[list[bytes]],
    ],
    tuple[int, int],
]
"""``encode_run(samples, start, ts, values, zeros, runs) -> (stop, dropped)``: see
`collector._native`."""

EncodeLabelled = Callable[
    [
        list[tuple[int, float, int]],
        int,
        int,
        list[Any],
        dict[int, bytes],
        list[list[bytes]],
    ],
    int,
]
"""``encode_labelled(samples, start, ts, label_sets, hist, runs) -> stop``: see
`collector._native`."""


BulkAppend = Callable[[list[int], list[float], int, list[int], list[Any]], bool]
"""``bulk_append(refs, values, now, last, batch) -> appended``: see `collector._native`."""


def _load() -> tuple[ModuleType | None, str]:
    """The C module to use, or None; and why, for `describe`."""
    if os.environ.get("COLLECTOR_NATIVE") == "0":
        return None, "COLLECTOR_NATIVE=0"
    try:
        import collector._native as _native
    except ImportError as exc:  # no compiler at install time, or a foreign build
        return None, f"not built: {exc}"
    return _native, "collector._native"


_LOADED = _load()

steady_values: SteadyValues | None = None if _LOADED[0] is None else _LOADED[0].steady_values
"""The steady-state value pass in C, or None: use the pure-Python one."""

encode_run: EncodeRun | None = None if _LOADED[0] is None else _LOADED[0].encode_run
"""The encoder's commit loop in C, or None: use the pure-Python one."""

encode_labelled: EncodeLabelled | None = None if _LOADED[0] is None else _LOADED[0].encode_labelled
"""The encoder's commit loop from label sets in C, or None: keep per-series encodings."""

bulk_append: BulkAppend | None = None if _LOADED[0] is None else _LOADED[0].bulk_append
"""The scrape cache's steady-state append in C, or None: use the pure-Python one."""
REASON: str = _LOADED[1]
"""Where the C functions come from (``collector._native``), or why there are none."""

ACTIVE: bool = steady_values is not None
"""True when the C extension is in use."""


def describe() -> str:
    """``on (collector._native)``, ``off (COLLECTOR_NATIVE=0)`` or ``off (not built: ...)``."""
    return f"{'on' if ACTIVE else 'off'} ({REASON})"
