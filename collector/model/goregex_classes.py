"""Character classes of Go's RE2 as code point ranges, for the Go regex translator.

Place in the pipeline: config load only. `collector.model.goregex` translates each relabel regex
(``relabel_configs``, ``metric_relabel_configs``, ``write_relabel_configs``) once per rule. Every
class it meets (``\\d``, ``[[:alpha:]]``, ``\\pL``, ``[^a-z]``) becomes a list of inclusive code
point ranges here and is written back out as an explicit Python class body, so Python's Unicode
``\\d``/``\\w``/``\\s`` never stand in for Go's ASCII ones.

Unicode general categories (``\\pL``, ``\\p{Lu}``, ``\\PN``, ...) and ``\\p{Any}`` are supported
exactly, built from ``unicodedata`` on first use (Unicode 14 in Python 3.11; Go may be a version
ahead). There are no script tables (``\\p{Greek}``): Python has no script data, so the translator
refuses scripts at load, a deliberate deviation from Prometheus.

Prometheus counterpart: none; Go's ``regexp/syntax`` (``perl_groups.go``) and ``unicode`` tables.
"""

from __future__ import annotations

import functools
import unicodedata
from collections.abc import Mapping
from typing import Final, TypeAlias

__all__ = [
    "MAX_RUNE",
    "PERL_CLASSES",
    "POSIX_CLASSES",
    "Ranges",
    "class_body",
    "escape_code_point",
    "merge_ranges",
    "negate_ranges",
    "unicode_class",
]

MAX_RUNE: Final = 0x10FFFF
"""The highest Unicode code point, Go's ``unicode.MaxRune``."""
Ranges: TypeAlias = list[tuple[int, int]]
"""Inclusive ``(low, high)`` code point ranges."""

# Go's Perl classes are ASCII-only; Python's ``\d``/``\w``/``\s`` are Unicode, so they are spelt
# out as explicit ranges (and never passed through).
PERL_CLASSES: Final[Mapping[str, Ranges]] = {
    "d": [(0x30, 0x39)],
    "s": [(0x09, 0x0A), (0x0C, 0x0D), (0x20, 0x20)],
    "w": [(0x30, 0x39), (0x41, 0x5A), (0x5F, 0x5F), (0x61, 0x7A)],
}
POSIX_CLASSES: Final[Mapping[str, Ranges]] = {
    "alnum": [(0x30, 0x39), (0x41, 0x5A), (0x61, 0x7A)],
    "alpha": [(0x41, 0x5A), (0x61, 0x7A)],
    "ascii": [(0x00, 0x7F)],
    "blank": [(0x09, 0x09), (0x20, 0x20)],
    "cntrl": [(0x00, 0x1F), (0x7F, 0x7F)],
    "digit": [(0x30, 0x39)],
    "graph": [(0x21, 0x7E)],
    "lower": [(0x61, 0x7A)],
    "print": [(0x20, 0x7E)],
    "punct": [(0x21, 0x2F), (0x3A, 0x40), (0x5B, 0x60), (0x7B, 0x7E)],
    "space": [(0x09, 0x0D), (0x20, 0x20)],
    "upper": [(0x41, 0x5A)],
    "word": [(0x30, 0x39), (0x41, 0x5A), (0x5F, 0x5F), (0x61, 0x7A)],
    "xdigit": [(0x30, 0x39), (0x41, 0x46), (0x61, 0x66)],
}


def escape_code_point(code: int) -> str:
    """One code point in Python ``re`` syntax, escaped so it is literal in and out of a class."""
    if code < 0x80:
        char = chr(code)
        if char.isalnum():
            return char
        if char.isprintable():
            return "\\" + char
        return f"\\x{code:02x}"
    if code < 0x10000:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


def class_body(ranges: Ranges) -> str:
    """The inside of a Python ``[...]`` class matching exactly ``ranges``."""
    parts = []
    for low, high in ranges:
        if low == high:
            parts.append(escape_code_point(low))
        elif high == low + 1:
            parts.append(escape_code_point(low) + escape_code_point(high))
        else:
            parts.append(f"{escape_code_point(low)}-{escape_code_point(high)}")
    return "".join(parts)


def merge_ranges(ranges: Ranges) -> Ranges:
    """``ranges`` sorted, with overlapping and adjacent ranges joined."""
    merged: Ranges = []
    for low, high in sorted(ranges):
        if merged and low <= merged[-1][1] + 1:
            if high > merged[-1][1]:
                merged[-1] = (merged[-1][0], high)
        else:
            merged.append((low, high))
    return merged


def negate_ranges(ranges: Ranges) -> Ranges:
    """Every code point up to `MAX_RUNE` that is not in ``ranges``."""
    result: Ranges = []
    next_low = 0
    for low, high in merge_ranges(ranges):
        if low > next_low:
            result.append((next_low, low - 1))
        next_low = high + 1
    if next_low <= MAX_RUNE:
        result.append((next_low, MAX_RUNE))
    return result


def unicode_class(name: str) -> Ranges | None:
    """The ranges of ``\\p{name}``: ``Any`` or a general category; None when not supported."""
    if name == "Any":
        return [(0, MAX_RUNE)]
    tables = _category_tables()
    return tables.get(name)


@functools.cache
def _category_tables() -> Mapping[str, Ranges]:
    """Ranges per Unicode general category (``Lu``) and major class (``L``); built on first use.

    One pass over all code points (~0.3 s), paid only by configs that use ``\\p``.
    """
    tables: dict[str, Ranges] = {}
    for code in range(MAX_RUNE + 1):
        category = unicodedata.category(chr(code))
        for key in (category, category[0]):
            table = tables.setdefault(key, [])
            if table and table[-1][1] == code - 1:
                table[-1] = (table[-1][0], code)
            else:
                table.append((code, code))
    # Go's tables leave unassigned code points out of C; so does this (Cn is not in Go's C).
    tables["C"] = merge_ranges([r for key in ("Cc", "Cf", "Co", "Cs") for r in tables.get(key, [])])
    tables.pop("Cn", None)
    return tables
