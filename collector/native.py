"""Whether the C extension `collector._native` is used, decided once per process at import.

Place in the pipeline: beside it, not in it. The scrape hot path has a few steps written twice,
in pure Python (the reference, always present) and in C (``collector/_native.c``, built by
``setup.py`` when a compiler is there). Modules with such a step take the C function from here
and fall back to their own Python code when it is None; both give identical results, which
``tests/model/test_native_parity.py`` checks. Today that is one step: the steady-state value
pass of `IncrementalParser` (`steady_values`).

``COLLECTOR_NATIVE=0`` in the environment forces pure Python everywhere (read here, at import,
and inherited by the scrape worker processes); any other value, or none, uses the extension
when it imports. ``collector --version`` prints `describe`.

Prometheus counterpart: none (Go needs no second implementation).
"""

from __future__ import annotations

import os
from collections.abc import Callable

__all__ = ["ACTIVE", "REASON", "SteadyValues", "describe", "steady_values"]

SteadyValues = Callable[[bytes, int, bytes, tuple[bytes, ...], list[bytes]], list[float] | None]
"""``steady_values(body, nlines, mask, fixed, keys)``: see `collector._native`."""


def _load() -> tuple[SteadyValues | None, str]:
    """The C function to use, or None; and why, for `describe`."""
    if os.environ.get("COLLECTOR_NATIVE") == "0":
        return None, "COLLECTOR_NATIVE=0"
    try:
        import collector._native as _native
    except ImportError as exc:  # no compiler at install time, or a foreign build
        return None, f"not built: {exc}"
    return _native.steady_values, "collector._native"


_LOADED = _load()

steady_values: SteadyValues | None = _LOADED[0]
"""The steady-state value pass in C, or None: use the pure-Python one."""

REASON: str = _LOADED[1]
"""Where the C functions come from (``collector._native``), or why there are none."""

ACTIVE: bool = steady_values is not None
"""True when the C extension is in use."""


def describe() -> str:
    """``on (collector._native)``, ``off (COLLECTOR_NATIVE=0)`` or ``off (not built: ...)``."""
    return f"{'on' if ACTIVE else 'off'} ({REASON})"
