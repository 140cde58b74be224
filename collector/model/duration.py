"""Prometheus durations and byte sizes: parse config strings, render canonical durations.

Pure functions, used by the config loader (``scrape_interval: 1m30s``, ``body_size_limit: 10MB``)
and wherever a duration is shown the Prometheus way (the ``__scrape_interval__`` and
``__scrape_timeout__`` target labels, the ``interval`` label of self-metrics, the status page).

Durations are ``float`` seconds in this codebase, sizes ``int`` bytes (spec §8.4).

Prometheus counterparts: ``model.ParseDuration`` / ``model.Duration.String`` in
``prometheus/common`` and ``units.ParseBase2Bytes`` in ``alecthomas/units``.
"""

from __future__ import annotations

import re

__all__ = ["format_duration", "parse_duration", "parse_size"]

_MS = 1
_S = 1000 * _MS
_M = 60 * _S
_H = 60 * _M
_D = 24 * _H
_W = 7 * _D
_Y = 365 * _D

# Units must appear in this order, each at most once, integers only (spec §8.4).
_DURATION = re.compile(
    r"(?:(?P<y>[0-9]+)y)?(?:(?P<w>[0-9]+)w)?(?:(?P<d>[0-9]+)d)?(?:(?P<h>[0-9]+)h)?"
    r"(?:(?P<m>[0-9]+)m)?(?:(?P<s>[0-9]+)s)?(?:(?P<ms>[0-9]+)ms)?",
    re.ASCII,
)
_DURATION_UNITS = {"y": _Y, "w": _W, "d": _D, "h": _H, "m": _M, "s": _S, "ms": _MS}

# Go's time.Duration is an int64 of nanoseconds; Prometheus refuses anything larger.
_MAX_MS = (2**63 - 1) // 1_000_000

# (unit, milliseconds, only-when-exact): Prometheus renders y and w only when they divide.
_FORMAT_UNITS = (
    ("y", _Y, True),
    ("w", _W, True),
    ("d", _D, False),
    ("h", _H, False),
    ("m", _M, False),
    ("s", _S, False),
    ("ms", _MS, False),
)

# Prometheus's byte sizes are base 2 for both spellings: KB == KiB == 1024 (alecthomas/units
# ParseBase2Bytes). A value uses one family: B with KiB/MiB/..., or B with KB/MB/....
_SIZE_PREFIXES = ("K", "M", "G", "T", "P", "E")
_SIZE_FAMILY_IEC = {"B": 1} | {p + "iB": 1024 ** (i + 1) for i, p in enumerate(_SIZE_PREFIXES)}
_SIZE_FAMILY_OLD = {"B": 1} | {p + "B": 1024 ** (i + 1) for i, p in enumerate(_SIZE_PREFIXES)}
_SIZE_TERM = re.compile(r"([0-9]*)(?:\.([0-9]*))?([^0-9.]*)", re.ASCII)


def parse_duration(s: str) -> float:
    """Parse a Prometheus duration (``1h30m``, ``500ms``, ``2w``, ``0``) into seconds.

    Units must come in the order y, w, d, h, m, s, ms, each at most once, with integer counts;
    ``y`` is 365 days and ``w`` 7 days. ``"0"`` is allowed, ``""`` is not. Raises
    `ValueError` with Prometheus's message (``not a valid duration string: "5x"``).
    """
    if s == "":
        raise ValueError("empty duration string")
    if s == "0":
        return 0.0
    match = _DURATION.fullmatch(s)
    # The all-optional regex also matches "" — refused above — so any match names a unit.
    if match is None:
        raise ValueError(f"not a valid duration string: {_quote(s)}")
    total_ms = 0
    for unit, mult in _DURATION_UNITS.items():
        count = match.group(unit)
        if count is not None:
            total_ms += int(count) * mult
            if total_ms > _MAX_MS:
                raise ValueError("duration out of range")
    return total_ms / 1000.0


def format_duration(seconds: float) -> str:
    """Render seconds the way Prometheus prints a duration: ``1m30s``, ``1s500ms``, ``2w``.

    Zero is ``0s``. Sub-millisecond parts are truncated, as Prometheus works in whole
    milliseconds. ``y`` and ``w`` are used only when they divide the value exactly (``10d``
    stays ``10d``, ``14d`` is ``2w``). Negative values raise `ValueError`.
    """
    if seconds < 0:
        raise ValueError(f"negative duration: {seconds!r}")
    # Round to the microsecond first so that float noise (0.0299999...) cannot lose a ms.
    ms = round(seconds * 1_000_000) // 1000
    if ms == 0:
        return "0s"
    parts: list[str] = []
    for unit, mult, exact in _FORMAT_UNITS:
        if exact and ms % mult != 0:
            continue
        count, ms = divmod(ms, mult)
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts)


def parse_size(s: str) -> int:
    """Parse a Prometheus byte size (``512MB``, ``1GiB``, ``1KB512B``, ``1.5KB``, ``0``) to bytes.

    Units are ``B`` and ``KB``/``MB``/``GB``/``TB``/``PB``/``EB`` or ``KiB``/``MiB``/...; both
    prefixed spellings are base 2 (``1KB`` is 1024), as in Prometheus. A bare number other than
    ``0`` has no unit and is refused; a leading ``-`` is refused (sizes are limits).
    Fractions are truncated to whole bytes. Raises `ValueError`.
    """
    if s == "0":
        return 0
    if s.startswith("-"):
        raise ValueError(f"invalid size {_quote(s)}: must not be negative")
    body = s[1:] if s.startswith("+") else s
    if body == "0":
        return 0
    if not body:
        raise ValueError(f"invalid size {_quote(s)}")
    last_error = ""
    for family in (_SIZE_FAMILY_IEC, _SIZE_FAMILY_OLD):
        try:
            return _parse_size_terms(body, family)
        except ValueError as exc:
            last_error = str(exc)
    raise ValueError(f"invalid size {_quote(s)}: {last_error}")


def _parse_size_terms(body: str, family: dict[str, int]) -> int:
    """Sum ``<number><unit>`` terms of one unit family; raise `ValueError` on anything else."""
    total = 0.0
    pos = 0
    while pos < len(body):
        match = _SIZE_TERM.match(body, pos)
        # The pattern can match empty; a term must have digits and move forward.
        if match is None or match.end() == pos:
            raise ValueError("expected a number")
        whole, frac, unit = match.group(1), match.group(2), match.group(3)
        if not whole and not frac:
            raise ValueError("expected a number")
        if unit not in family:
            raise ValueError(f"unknown unit {unit!r}" if unit else "missing unit")
        value = float(whole or "0")
        if frac:
            value += int(frac) / 10 ** len(frac)
        total += value * family[unit]
        pos = match.end()
    if total >= 2**63:
        raise ValueError("overflow")
    return int(total)


def _quote(s: str) -> str:
    """Go's ``%q`` for the ASCII cases that matter in messages: double quotes, escaped."""
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'
