"""Go's text semantics for relabeling: ``regexp.Expand`` templates and Go case mapping.

Place in the pipeline: the string work inside relabel actions. `collector.model.relabel` splits
every ``replacement`` and ``$``-templated ``target_label`` once per rule at config load
(`compile_template`, Go ``regexp.Expand`` semantics, spec §5.3), so relabeling a target or a new
series only joins the pieces. ``lowercase``/``uppercase`` use `go_lower`/`go_upper`, which map
case per code point like Go's ``strings.ToLower``/``ToUpper``, not like Python's ``str.lower``.
`expand_template` is the one-off form for callers without compiled rules (explanations, tests).

Prometheus counterpart: the ``Replace``, ``LabelMap``, ``Lowercase`` and ``Uppercase`` cases in
``model/relabel/relabel.go``; Go ``regexp.Expand`` and ``strings.ToUpper``/``ToLower``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Final, TypeAlias

__all__ = ["Expander", "compile_template", "expand_template", "go_lower", "go_upper"]

# --------------------------------------------------------------------------- templates

_Part: TypeAlias = str | int | tuple[int, ...]
"""A template piece: literal text, a group number, or the groups sharing one name."""


def _parse_template(
    template: str, groups: int, names: Mapping[str, tuple[int, ...]]
) -> list[_Part]:
    """Split a Go ``regexp.Expand`` template into literal text and group references.

    References to groups that do not exist are dropped here, since they always expand to ``""``.
    """
    parts: list[_Part] = []
    literal: list[str] = []
    pos, size = 0, len(template)
    while pos < size:
        dollar = template.find("$", pos)
        if dollar < 0:
            literal.append(template[pos:])
            break
        literal.append(template[pos:dollar])
        pos = dollar + 1
        if template.startswith("$", pos):
            literal.append("$")
            pos += 1
            continue
        brace = template.startswith("{", pos)
        start = pos + 1 if brace else pos
        end = start
        # Go takes the longest run of Unicode letters, decimal digits and ``_`` as the name.
        while end < size and (template[end] == "_" or _is_name_char(template[end])):
            end += 1
        if end == start or (brace and not template.startswith("}", end)):
            literal.append("$")  # malformed: the ``$`` is literal, the rest is re-scanned
            continue
        name = template[start:end]
        pos = end + 1 if brace else end
        reference = _resolve(name, groups, names)
        if reference is None:
            continue
        if literal:
            parts.append("".join(literal))
            literal = []
        parts.append(reference)
    if literal and "".join(literal):
        parts.append("".join(literal))
    return parts


def _is_name_char(char: str) -> bool:
    # Go: unicode.IsLetter (category L*) or unicode.IsDigit (Nd); Python's isalpha/isdecimal.
    return char.isalpha() or char.isdecimal()


def _resolve(name: str, groups: int, names: Mapping[str, tuple[int, ...]]) -> _Part | None:
    number = -1
    if name.isascii() and name.isdigit() and not (name[0] == "0" and len(name) > 1):
        # Go stops counting at 1e8 and then treats the name as a (missing) group name.
        number = int(name) if len(name) <= 9 else -1
    if number >= 0:
        return number if number <= groups else None
    indexes = names.get(name)
    if not indexes:
        return None
    return indexes[0] if len(indexes) == 1 else indexes


Expander: TypeAlias = Callable[["re.Match[str]"], str]
"""A compiled template: gives the expanded text for one match of its regex."""


def _make_expander(parts: list[_Part]) -> Expander:
    """A closure producing the expanded text for a match; the common shapes are special-cased."""
    if not parts:
        return lambda match: ""
    if len(parts) == 1:
        only = parts[0]
        if isinstance(only, str):
            return lambda match: only
        if isinstance(only, int):
            return lambda match: match[only] or ""

    def expand(match: re.Match[str]) -> str:
        out = []
        for part in parts:
            if isinstance(part, str):
                out.append(part)
            elif isinstance(part, int):
                out.append(match[part] or "")
            else:
                # Duplicate names: Go takes the first group of that name that participated.
                out.append(next((match[i] for i in part if match[i] is not None), ""))
        return "".join(out)

    return expand


def compile_template(
    template: str, *, groups: int, names: Mapping[str, tuple[int, ...]]
) -> Expander:
    """Split ``template`` once for a regex with ``groups`` groups and Go's group ``names``.

    The result expands a match of that regex with the rules of `expand_template`; references to
    groups that do not exist are resolved to ``""`` here, once.
    """
    return _make_expander(_parse_template(template, groups, names))


def expand_template(template: str, match: re.Match[str]) -> str:
    """Expand ``template`` for ``match`` with Go ``regexp.Expand`` rules (spec §5.3).

    ``$$`` is ``$``; ``$name`` takes the longest run of letters, digits and ``_``; ``${name}``
    delimits it; an all-digit name is a group number; missing or non-participating groups expand
    to ``""``; a ``$`` not followed by a valid name stays literal. Named groups are looked up in
    ``match.re.groupindex``; `compile_rules` pre-splits templates (`compile_template`) instead.
    """
    names = {name: (index,) for name, index in match.re.groupindex.items()}
    return compile_template(template, groups=match.re.groups, names=names)(match)


# --------------------------------------------------------------------------- case mapping

# Go maps case per code point with the simple mappings of UnicodeData.txt (unicode.ToUpper /
# ToLower); Python applies SpecialCasing (``ß`` -> ``SS``) and final-sigma context. Python's
# per-character result equals Go's except where the full mapping has several code points: there
# the simple mapping is the character itself, except for the entries below (checked against the
# Unicode 14 UnicodeData shipped with Perl's Unicode::UCD, the same version as Python 3.11).
_UPPER_SIMPLE: Final[Mapping[str, str]] = {
    **{chr(c): chr(c + 8) for c in range(0x1F80, 0x1F88)},
    **{chr(c): chr(c + 8) for c in range(0x1F90, 0x1F98)},
    **{chr(c): chr(c + 8) for c in range(0x1FA0, 0x1FA8)},
    "\u1fb3": "\u1fbc",
    "\u1fc3": "\u1fcc",
    "\u1ff3": "\u1ffc",
}
_LOWER_SIMPLE: Final[Mapping[str, str]] = {"\u0130": "i"}


def _upper_char(char: str) -> str:
    mapped = char.upper()
    if len(mapped) == 1:
        return mapped
    return _UPPER_SIMPLE.get(char, char)


def _lower_char(char: str) -> str:
    mapped = char.lower()
    if len(mapped) == 1:
        return mapped
    return _LOWER_SIMPLE.get(char, char)


def go_upper(text: str) -> str:
    """Go ``strings.ToUpper``: per code point, so ``ß`` and ``ﬀ`` stay as they are."""
    if text.isascii():
        return text.upper()
    return "".join([_upper_char(c) for c in text])


def go_lower(text: str) -> str:
    """Go ``strings.ToLower``: per code point, so ``İ`` becomes ``i`` and every ``Σ`` ``σ``."""
    if text.isascii():
        return text.lower()
    return "".join([_lower_char(c) for c in text])
