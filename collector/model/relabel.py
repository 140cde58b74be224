"""Relabeling: every action of Prometheus's ``relabel_config``, compiled once.

Place in the pipeline: target relabeling (``relabel_configs``) runs on every discovered target,
metric relabeling (``metric_relabel_configs``) on every *new* series of a scrape (the scrape cache
remembers the verdict), and ``write_relabel_configs`` on every series before remote write. All
three share this module.

Three stages, each done once per rule at config load:

1. `parse_rule` turns one YAML mapping into a validated `RelabelConfig` (spec §5.1, §5.4).
2. `compile_regex` translates the RE2 pattern into a Python `re` pattern with Go's meaning,
   fully anchored and with ``.`` matching ``\\n`` (``^(?s:<regex>)$``, spec §5.1).
3. `compile_rules` turns the rules into a `Relabeler`: one small closure per rule with every
   template pre-split (Go ``regexp.Expand`` semantics, spec §5.3) and every constant folded.

``Relabeler.process`` then mutates a builder dict (``""`` means absent, as in
``labels.Builder``) and returns it, or None when the label set is dropped.

Deliberate deviations from Prometheus (documented where they happen):

* Unicode script classes (``\\p{Greek}``) are refused at load: Python's ``re`` has no script data.
  General categories (``\\pL``, ``\\p{Lu}``, ``\\PN``, ...) and ``\\p{Any}`` are supported exactly,
  built from ``unicodedata`` (Unicode 14 in Python 3.11; Go may be a version ahead).
* Names are always validated with the Prometheus 3 UTF-8 scheme; the legacy scheme is not offered.
* ``labelmap`` never creates a label with an empty name (Prometheus would, and the target then
  fails validation later); when two source names map to one target name, the later one in the
  dict's order wins (Prometheus: later in its builder's order).

Prometheus counterpart: ``model/relabel/relabel.go``; Go ``regexp/syntax`` for the dialect.
"""

from __future__ import annotations

import functools
import hashlib
import re
import unicodedata
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Final, Literal, TypeAlias, cast, get_args

from collector.errors import ConfigError
from collector.model.labels import is_valid_label_name

__all__ = [
    "Action",
    "RelabelConfig",
    "Relabeler",
    "compile_regex",
    "compile_rules",
    "expand_template",
    "go_lower",
    "go_upper",
    "parse_rule",
    "relabel",
]

Action = Literal[
    "replace",
    "keep",
    "drop",
    "keepequal",
    "dropequal",
    "hashmod",
    "labelmap",
    "labeldrop",
    "labelkeep",
    "lowercase",
    "uppercase",
]

_ACTIONS: Final[frozenset[str]] = frozenset(get_args(Action))
DEFAULT_REGEX: Final = "(.*)"
DEFAULT_REPLACEMENT: Final = "$1"
DEFAULT_SEPARATOR: Final = ";"


@dataclass(frozen=True, slots=True, kw_only=True)
class RelabelConfig:
    """One validated ``relabel_config`` rule with Prometheus's defaults."""

    source_labels: tuple[str, ...] = ()
    """Labels whose values are joined with `separator`; a missing label contributes ``""``."""
    separator: str = ";"
    """Placed between the source values."""
    regex: str = "(.*)"
    """RE2 pattern, matched fully anchored against the joined value (or the label name)."""
    modulus: int = 0
    """Divisor for ``hashmod``; must be non-zero there."""
    target_label: str = ""
    """Label written by replace/hashmod/lowercase/uppercase, compared by keepequal/dropequal."""
    replacement: str = "$1"
    """Go ``regexp.Expand`` template for replace and labelmap."""
    action: Action = "replace"
    """What the rule does; parsed case-insensitively."""


# --------------------------------------------------------------------------- rule parsing

_NULL_RULE_MESSAGES: Final[Mapping[str, str]] = {
    "target": "empty or null target relabeling rule in scrape config",
    "metric": "empty or null metric relabeling rule in scrape config",
    "write": "empty or null relabeling rule in remote write config",
}
_KEYS: Final = (
    "source_labels",
    "separator",
    "regex",
    "modulus",
    "target_label",
    "replacement",
    "action",
)
_MAX_UINT64: Final = 2**64 - 1


def parse_rule(data: object, *, context: str = "relabel") -> RelabelConfig:
    """Turn one ``yaml.safe_load``-ed relabel rule into a validated `RelabelConfig`.

    Strict like Prometheus's ``UnmarshalStrict``: unknown keys and wrong types are refused. A YAML
    ``null`` for a key means that key's zero value (``regex: null`` is the empty regex), as in Go.
    ``context`` (``"target"``, ``"metric"`` or ``"write"``) picks the wording for a null rule.
    Errors are `ConfigError` whose ``path`` names the key inside the rule (``""`` for the rule);
    the config loader prefixes the outer path.
    """
    if data is None:
        raise ConfigError(_NULL_RULE_MESSAGES.get(context, "empty or null relabeling rule"))
    if not isinstance(data, Mapping):
        raise ConfigError(f"relabel rule must be a mapping, got {_yaml_type(data)}")
    values: dict[str, object] = {}
    for key, raw in data.items():
        if not isinstance(key, str) or key not in _KEYS:
            raise ConfigError(f"unknown field {key!r} in relabel rule", path=str(key))
        values[key] = raw

    # Field conversion runs in document order, as Go's decoder does, so the first bad key wins.
    source_labels: tuple[str, ...] = ()
    separator, regex, target_label = DEFAULT_SEPARATOR, DEFAULT_REGEX, ""
    replacement, action, modulus = DEFAULT_REPLACEMENT, "replace", 0
    for key, raw in values.items():
        if key == "source_labels":
            source_labels = _to_label_names(raw)
        elif key == "modulus":
            modulus = _to_modulus(raw)
        elif key == "action":
            action = _to_action(raw)
        else:
            text = _to_string(raw, key)
            if key == "regex":
                _compile_or_raise(text, path="regex")
                regex = text
            elif key == "separator":
                separator = text
            elif key == "target_label":
                target_label = text
            else:
                replacement = text
    if not action:
        raise ConfigError("relabel action cannot be empty", path="action")
    config = RelabelConfig(
        source_labels=source_labels,
        separator=separator,
        regex=regex,
        modulus=modulus,
        target_label=target_label,
        replacement=replacement,
        action=cast("Action", action),
    )
    _validate(
        config,
        regex_given="regex" in values,
        source_labels_given=values.get("source_labels") is not None,
    )
    return config


def _yaml_type(value: object) -> str:
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, list | tuple):
        return "a list"
    return type(value).__name__


def _to_string(raw: object, key: str) -> str:
    # Go's YAML decoder stores any scalar into a string field (``regex: 1``, ``replacement: 80``);
    # the resolved Python value is the closest we have to the scalar's text. Booleans are refused:
    # YAML 1.1 spells them ``yes``/``on``/``True`` and the original text is lost.
    if raw is None:
        return ""
    if isinstance(raw, str):
        return raw
    if isinstance(raw, int | float) and not isinstance(raw, bool):
        return str(raw)
    raise ConfigError(f"{key} must be a string, got {_yaml_type(raw)}", path=key)


def _to_label_names(raw: object) -> tuple[str, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list | tuple):
        raise ConfigError(
            f"source_labels must be a list of label names, got {_yaml_type(raw)}",
            path="source_labels",
        )
    names = []
    for index, item in enumerate(raw):
        path = f"source_labels[{index}]"
        name = _to_string(item, path)
        if not is_valid_label_name(name):
            raise ConfigError(f"{_go_quote(name)} is not a valid label name", path=path)
        names.append(name)
    return tuple(names)


def _to_modulus(raw: object) -> int:
    if raw is None:
        return 0
    if isinstance(raw, bool) or not isinstance(raw, int) or not 0 <= raw <= _MAX_UINT64:
        raise ConfigError(f"modulus must be an integer in [0, 2^64), got {raw!r}", path="modulus")
    return raw


def _to_action(raw: object) -> str:
    if raw is None:
        return ""  # Go leaves the zero value; Validate then says "cannot be empty".
    text = _to_string(raw, "action")
    action = text.lower()
    if action not in _ACTIONS:
        raise ConfigError(f"unknown relabel action {_go_quote(text)}", path="action")
    return action


def _go_quote(text: str) -> str:
    """Render like Go's ``%q`` so messages match Prometheus byte for byte on plain input."""
    out = ['"']
    for char in text:
        if char in '"\\':
            out.append("\\" + char)
        elif char in _GO_ESCAPES:
            out.append(_GO_ESCAPES[char])
        elif char.isprintable():
            out.append(char)
        elif ord(char) < 0x80:
            out.append(f"\\x{ord(char):02x}")
        elif ord(char) < 0x10000:
            out.append(f"\\u{ord(char):04x}")
        else:
            out.append(f"\\U{ord(char):08x}")
    out.append('"')
    return "".join(out)


_GO_ESCAPES: Final = {
    "\a": "\\a",
    "\b": "\\b",
    "\f": "\\f",
    "\n": "\\n",
    "\r": "\\r",
    "\t": "\\t",
    "\v": "\\v",
}


def _validate(config: RelabelConfig, *, regex_given: bool, source_labels_given: bool) -> None:
    """Prometheus ``Config.Validate`` (UTF-8 name scheme), same checks in the same order."""
    action, target, replacement = config.action, config.target_label, config.replacement
    if not action:
        raise ConfigError("relabel action cannot be empty", path="action")
    if action not in _ACTIONS:
        raise ConfigError(f"unknown relabel action {_go_quote(action)}", path="action")
    if action == "hashmod" and config.modulus == 0:
        raise ConfigError(
            "relabel configuration for hashmod requires non-zero modulus", path="modulus"
        )
    if not 0 <= config.modulus <= _MAX_UINT64:
        raise ConfigError(f"modulus must be an integer in [0, 2^64), got {config.modulus}")
    needs_target = action in ("replace", "hashmod", "lowercase", "uppercase")
    equal_action = action in ("keepequal", "dropequal")
    if (needs_target or equal_action) and not target:
        raise ConfigError(
            f"relabel configuration for {action} action requires 'target_label' value",
            path="target_label",
        )
    # Under the UTF-8 scheme a target with ``$`` templates is checked like any other name: any
    # non-empty valid UTF-8 string passes, and the expanded name is checked again at run time.
    if (needs_target or equal_action) and not is_valid_label_name(target):
        raise ConfigError(
            f"{_go_quote(target)} is invalid 'target_label' for {action} action",
            path="target_label",
        )
    if (action in ("lowercase", "uppercase") or equal_action) and (
        replacement != DEFAULT_REPLACEMENT
    ):
        raise ConfigError(f"'replacement' can not be set for {action} action", path="replacement")
    if action == "labelmap" and not is_valid_label_name(replacement):
        raise ConfigError(
            f"{_go_quote(replacement)} is invalid 'replacement' for {action} action",
            path="replacement",
        )
    if equal_action and (
        regex_given
        or config.regex != DEFAULT_REGEX
        or config.modulus != 0
        or config.separator != DEFAULT_SEPARATOR
        or config.replacement != DEFAULT_REPLACEMENT
    ):
        # Prometheus compares the regex by pointer, so even an explicit ``regex: (.*)`` fails.
        raise ConfigError(
            f"{action} action requires only 'source_labels' and `target_label`, and no other fields"
        )
    if action in ("labeldrop", "labelkeep") and (
        source_labels_given
        or config.source_labels
        or target
        or config.modulus != 0
        or config.separator != DEFAULT_SEPARATOR
        or config.replacement != DEFAULT_REPLACEMENT
    ):
        raise ConfigError(f"{action} action requires only 'regex', and no other fields")


# --------------------------------------------------------------------------- RE2 -> Python re

_MAX_RUNE: Final = 0x10FFFF
_Ranges: TypeAlias = list[tuple[int, int]]

# Go's Perl classes are ASCII-only; Python's ``\d``/``\w``/``\s`` are Unicode, so they are spelt
# out as explicit ranges (and never passed through).
_PERL_CLASSES: Final[Mapping[str, _Ranges]] = {
    "d": [(0x30, 0x39)],
    "s": [(0x09, 0x0A), (0x0C, 0x0D), (0x20, 0x20)],
    "w": [(0x30, 0x39), (0x41, 0x5A), (0x5F, 0x5F), (0x61, 0x7A)],
}
_POSIX_CLASSES: Final[Mapping[str, _Ranges]] = {
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
_SIMPLE_ESCAPES: Final = {"a": 0x07, "f": 0x0C, "n": 0x0A, "r": 0x0D, "t": 0x09, "v": 0x0B}
_REPEAT = re.compile(r"\{(0|[1-9][0-9]*)(?:(,)(0|[1-9][0-9]*)?)?\}")
_MAX_REPEAT: Final = 1000


def _repeat_count(digits: str) -> int:
    """A repeat count; any count of over 4 digits is past Go's 1000 (and int() refuses more
    than 4,300 digits: fuzzing found ``a{<4,301 digits>}`` raising ValueError)."""
    return int(digits) if len(digits) <= 4 else _MAX_REPEAT + 1


class _RegexSyntaxError(Exception):
    """A pattern Go's RE2 would refuse (or that we cannot translate faithfully)."""

    def __init__(self, code: str, fragment: str, hint: str = "") -> None:
        self.code = code
        self.fragment = fragment
        self.hint = hint
        super().__init__(code)

    def render(self) -> str:
        text = f"error parsing regexp: {self.code}: `{self.fragment}`"
        return f"{text} ({self.hint})" if self.hint else text


@dataclass(slots=True)
class _Frame:
    """One open group while translating: its flags and the scoped flag groups it opened."""

    flags: dict[str, bool]
    openers: list[str]


class _Translator:
    """Single pass over an RE2 pattern, emitting the equivalent Python ``re`` syntax.

    Besides the translated text it records capture groups (count and names) itself, because Go
    allows names Python refuses (leading digits, duplicates) and template expansion needs them.
    """

    def __init__(self, pattern: str) -> None:
        self.src = pattern
        self.pos = 0
        self.out: list[str] = []
        self.groups = 0
        self.names: dict[str, list[int]] = {}
        # Go compiles ``^(?s:<regex>)$``: dot-all on, case and multi-line off.
        self.stack = [_Frame(flags={"i": False, "m": False, "s": True}, openers=[])]
        self.has_operand = False

    def run(self) -> str:
        src = self.src
        while self.pos < len(src):
            char = src[self.pos]
            if char == "(":
                self._open_group()
            elif char == ")":
                self._close_group()
            elif char == "|":
                frame = self.stack[-1]
                self.out.append(")" * len(frame.openers) + "|" + "".join(frame.openers))
                self.pos += 1
                self.has_operand = False
            elif char in "*+?" or (char == "{" and _REPEAT.match(src, self.pos)):
                self._repeat()
            elif char == "[":
                self._class()
            elif char == "\\":
                self._escape()
            elif char == "$":
                # Go's ``$`` without (?m) is end of text only; Python's also matches before a
                # final newline, so ``\Z`` stands in.
                self.out.append("$" if self.stack[-1].flags["m"] else r"\Z")
                self._atom(1)
            elif char in ".^":
                self.out.append(char)
                self._atom(1)
            else:
                # ``{`` that is not a valid repeat is a literal in Go (Python would read
                # ``{,3}`` as a repeat), so every other character is emitted escaped.
                self.out.append(re.escape(char))
                self._atom(1)
        if len(self.stack) > 1:
            raise _RegexSyntaxError("missing closing )", src)
        self.out.append(")" * len(self.stack[0].openers))
        return "".join(self.out)

    def _atom(self, width: int) -> None:
        self.pos += width
        self.has_operand = True

    def _open_group(self) -> None:
        src, start = self.src, self.pos
        frame = self.stack[-1]
        if src.startswith("(?", start):
            rest = src[start + 2 : start + 4]
            name_start = 0
            if rest.startswith("P<"):
                name_start = start + 4
            elif rest.startswith("<") and rest[1:2] not in ("=", "!"):
                name_start = start + 3
            if name_start:
                end = src.find(">", name_start)
                name = src[name_start:end] if end >= 0 else ""
                if end < 0 or not name or not all(_is_word_ascii(c) for c in name):
                    fragment = src[start : end + 1] if end >= 0 else src[start:]
                    raise _RegexSyntaxError("invalid named capture", fragment)
                self.groups += 1
                # Keep the name for Python when it can (``groupindex``); Go also accepts names
                # Python refuses (``1a``, duplicates), which become plain groups.
                python_ok = name.isidentifier() and name not in self.names
                self.names.setdefault(name, []).append(self.groups)
                self.out.append(f"(?P<{name}>" if python_ok else "(")
                self.stack.append(_Frame(flags=dict(frame.flags), openers=[]))
                self.pos = end + 1
                self.has_operand = False
                return
            self._flag_group(start)
            return
        self.groups += 1
        self.out.append("(")
        self.stack.append(_Frame(flags=dict(frame.flags), openers=[]))
        self.pos += 1
        self.has_operand = False

    def _flag_group(self, start: int) -> None:
        src = self.src
        pos = start + 2
        flags = dict(self.stack[-1].flags)
        negate = False
        saw_flag = False
        while pos < len(src):
            char = src[pos]
            if char in "ims":
                flags[char] = not negate
                saw_flag = True
            elif char == "-" and not negate:
                # Go: ``(?-i)`` is fine, ``(?i-)`` and ``(?-)`` are not.
                negate, saw_flag = True, False
            elif char in ":)" and (saw_flag or not negate):
                spec = _flag_spec(flags, self.stack[-1].flags)
                if char == ":":
                    self.out.append(f"(?{spec}:" if spec else "(?:")
                    self.stack.append(_Frame(flags=flags, openers=[]))
                    self.has_operand = False
                else:
                    # ``(?i)`` lasts to the end of the enclosing group, across ``|``; Python
                    # 3.11 only allows flags there as a scoped group, reopened after each ``|``.
                    frame = self.stack[-1]
                    frame.flags = flags
                    if spec:
                        opener = f"(?{spec}:"
                        frame.openers.append(opener)
                        self.out.append(opener)
                self.pos = pos + 1
                return
            else:
                break
            pos += 1
        fragment = src[start : pos + 1]
        head = src[start : start + 4]
        hint = ""
        if head.startswith(("(?=", "(?!", "(?<=", "(?<!")):
            hint = "lookaround is not supported by RE2"
        elif head.startswith("(?>"):
            hint = "atomic groups are not supported by RE2"
        elif head.startswith(("(?P=", "(?P>")):
            hint = "backreferences and recursion are not supported by RE2"
        elif "U" in fragment:
            hint = "the ungreedy flag U is not supported here"
        raise _RegexSyntaxError("invalid or unsupported Perl syntax", fragment, hint)

    def _close_group(self) -> None:
        if len(self.stack) == 1:
            raise _RegexSyntaxError("unexpected )", self.src)
        frame = self.stack.pop()
        self.out.append(")" * len(frame.openers) + ")")
        self._atom(1)

    def _repeat(self) -> None:
        src, start = self.src, self.pos
        if not self.has_operand:
            end = self._repeat_end(start)
            raise _RegexSyntaxError("missing argument to repetition operator", src[start:end])
        end = self._repeat_end(start)
        op = src[start:end]
        match = _REPEAT.fullmatch(op.rstrip("?")) if op.startswith("{") else None
        if match is not None:
            low = _repeat_count(match.group(1))
            # ``{n}`` -> n..n, ``{n,}`` -> n..unbounded, ``{n,m}`` -> n..m; Go caps counts at 1000.
            bounded = match.group(2) is None or match.group(3) is not None
            high = _repeat_count(match.group(3)) if bounded and match.group(3) else low
            if low > _MAX_REPEAT or high > _MAX_REPEAT or high < low:
                raise _RegexSyntaxError("invalid repeat count", op)
        if end < len(src) and (src[end] in "*+?" or _REPEAT.match(src, end)):
            # Go refuses stacked operators; Python 3.11 would read ``a*+`` as possessive.
            raise _RegexSyntaxError(
                "invalid nested repetition operator", src[start : self._repeat_end(end)]
            )
        self.out.append(op)
        self.pos = end
        # has_operand stays True: Go then reports the next operator as nested, done above.

    def _repeat_end(self, pos: int) -> int:
        src = self.src
        match = _REPEAT.match(src, pos) if src[pos] == "{" else None
        end = match.end() if match else pos + 1
        if end < len(src) and src[end] == "?":
            end += 1
        return end

    def _escape(self) -> None:
        src, start = self.src, self.pos
        if start + 1 >= len(src):
            raise _RegexSyntaxError("trailing backslash at end of expression", "")
        char = src[start + 1]
        if char == "Q":
            end = src.find(r"\E", start + 2)
            literal = src[start + 2 :] if end < 0 else src[start + 2 : end]
            self.out.append("".join(re.escape(c) for c in literal))
            self.pos = len(src) if end < 0 else end + 2
            self.has_operand = self.has_operand or bool(literal)
            return
        if char in "AbB":
            # Go's word boundary is ASCII; ``(?a:...)`` scopes Python's ASCII mode to it.
            self.out.append(r"\A" if char == "A" else rf"(?a:\{char})")
            self._atom(2)
            return
        if char == "z":
            self.out.append(r"\Z")
            self._atom(2)
            return
        ranges, width = self._class_escape(start)
        if ranges is not None:
            self.out.append("[" + _class_body(ranges) + "]")
            self._atom(width)
            return
        code, width = self._char_escape(start)
        self.out.append(_literal(code))
        self._atom(width)

    def _class_escape(self, start: int) -> tuple[_Ranges | None, int]:
        """``\\d``, ``\\W``, ``\\pL``, ``\\p{^Lu}`` ... as ranges; (None, 0) for other escapes."""
        src = self.src
        char = src[start + 1]
        if char.lower() in _PERL_CLASSES:
            ranges = _PERL_CLASSES[char.lower()]
            return (_negate(ranges) if char.isupper() else ranges), 2
        if char not in "pP":
            return None, 0
        negate = char == "P"
        if start + 2 >= len(src):
            raise _RegexSyntaxError("invalid character class range", src[start:])
        if src[start + 2] == "{":
            end = src.find("}", start + 3)
            if end < 0:
                raise _RegexSyntaxError("invalid character class range", src[start:])
            name = src[start + 3 : end]
            width = end + 1 - start
        else:
            name = src[start + 2]
            width = 3
        if name.startswith("^"):
            negate, name = not negate, name[1:]
        table = _unicode_class(name)
        if table is None:
            hint = (
                "Unicode scripts are not supported; use explicit ranges"
                if name[:1].isupper() and len(name) > 2
                else ""
            )
            raise _RegexSyntaxError(
                "invalid character class range", src[start : start + width], hint
            )
        return (_negate(table) if negate else table), width

    def _char_escape(self, start: int) -> tuple[int, int]:
        """A backslash escape that denotes one character: (code point, width)."""
        src = self.src
        char = src[start + 1]
        if char in "1234567" and not (start + 2 < len(src) and src[start + 2] in "01234567"):
            raise _RegexSyntaxError(
                "invalid escape sequence",
                src[start : start + 2],
                "backreferences are not supported by RE2",
            )
        if char in "01234567":
            # Go reads up to three octal digits; Python would read ``\12`` as group 12.
            end = start + 2
            while end < len(src) and end < start + 4 and src[end] in "01234567":
                end += 1
            return int(src[start + 1 : end], 8), end - start
        if char == "x":
            if src.startswith("{", start + 2):
                end = src.find("}", start + 3)
                digits = src[start + 3 : end] if end >= 0 else ""
                if _is_hex(digits) and int(digits, 16) <= _MAX_RUNE:
                    return int(digits, 16), end + 1 - start
            else:
                digits = src[start + 2 : start + 4]
                if len(digits) == 2 and _is_hex(digits):
                    return int(digits, 16), 4
            raise _RegexSyntaxError("invalid escape sequence", src[start : start + 4])
        if char in _SIMPLE_ESCAPES:
            return _SIMPLE_ESCAPES[char], 2
        if ord(char) < 0x80 and not char.isalnum():
            return ord(char), 2
        hint = {
            "8": "backreferences are not supported by RE2",
            "9": "backreferences are not supported by RE2",
            "Z": "use \\z for end of text",
        }.get(char, "")
        raise _RegexSyntaxError("invalid escape sequence", src[start : start + 2], hint)

    def _class(self) -> None:
        src, start = self.src, self.pos
        pos = start + 1
        negate = src.startswith("^", pos)
        if negate:
            pos += 1
        ranges: _Ranges = []
        first = True
        while True:
            if pos >= len(src):
                raise _RegexSyntaxError("missing closing ]", src[start:])
            char = src[pos]
            if char == "]" and not first:
                pos += 1
                break
            first = False
            if src.startswith("[:", pos):
                end = src.find(":]", pos + 2)
                if end >= 0:
                    name = src[pos + 2 : end]
                    posix_negate = name.startswith("^")
                    posix = _POSIX_CLASSES.get(name.lstrip("^"))
                    if posix is None:
                        raise _RegexSyntaxError("invalid character class range", src[pos : end + 2])
                    ranges.extend(_negate(posix) if posix_negate else posix)
                    pos = end + 2
                    continue
            if char == "\\":
                class_ranges, width = self._class_escape(pos) if pos + 1 < len(src) else (None, 0)
                if class_ranges is not None:
                    ranges.extend(class_ranges)
                    pos += width
                    continue
            low, pos = self._class_char(pos)
            high = low
            if src.startswith("-", pos) and pos + 1 < len(src) and src[pos + 1] != "]":
                high, end = self._class_char(pos + 1)
                if high < low:
                    raise _RegexSyntaxError("invalid character class range", src[pos - 1 : end])
                pos = end
            ranges.append((low, high))
        merged = _merge(ranges)
        if negate:
            merged = _negate(merged)
        # An empty set (``[^\x00-\x{10FFFF}]``) matches nothing, which Python spells ``(?!)``.
        self.out.append("[" + _class_body(merged) + "]" if merged else "(?!)")
        self.pos = pos
        self.has_operand = True

    def _class_char(self, pos: int) -> tuple[int, int]:
        src = self.src
        if pos >= len(src):
            raise _RegexSyntaxError("missing closing ]", src[self.pos :])
        if src[pos] != "\\":
            return ord(src[pos]), pos + 1
        if pos + 1 >= len(src):
            raise _RegexSyntaxError("missing closing ]", src[self.pos :])
        if src[pos + 1] in "dDsSwWpP":
            raise _RegexSyntaxError("invalid character class range", src[pos : pos + 2])
        code, width = self._char_escape(pos)
        return code, pos + width


def _flag_spec(flags: Mapping[str, bool], outer: Mapping[str, bool]) -> str:
    on = "".join(f for f in "ims" if flags[f] and not outer[f])
    off = "".join(f for f in "ims" if outer[f] and not flags[f])
    return on + ("-" + off if off else "")


def _is_word_ascii(char: str) -> bool:
    return char == "_" or (char.isascii() and char.isalnum())


def _is_hex(text: str) -> bool:
    return bool(text) and all(c in "0123456789abcdefABCDEF" for c in text)


def _literal(code: int) -> str:
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


def _class_body(ranges: _Ranges) -> str:
    parts = []
    for low, high in ranges:
        if low == high:
            parts.append(_literal(low))
        elif high == low + 1:
            parts.append(_literal(low) + _literal(high))
        else:
            parts.append(f"{_literal(low)}-{_literal(high)}")
    return "".join(parts)


def _merge(ranges: _Ranges) -> _Ranges:
    merged: _Ranges = []
    for low, high in sorted(ranges):
        if merged and low <= merged[-1][1] + 1:
            if high > merged[-1][1]:
                merged[-1] = (merged[-1][0], high)
        else:
            merged.append((low, high))
    return merged


def _negate(ranges: _Ranges) -> _Ranges:
    result: _Ranges = []
    next_low = 0
    for low, high in _merge(ranges):
        if low > next_low:
            result.append((next_low, low - 1))
        next_low = high + 1
    if next_low <= _MAX_RUNE:
        result.append((next_low, _MAX_RUNE))
    return result


def _unicode_class(name: str) -> _Ranges | None:
    if name == "Any":
        return [(0, _MAX_RUNE)]
    tables = _category_tables()
    return tables.get(name)


@functools.cache
def _category_tables() -> Mapping[str, _Ranges]:
    """Ranges per Unicode general category (``Lu``) and major class (``L``); built on first use.

    One pass over all code points (~0.3 s), paid only by configs that use ``\\p``.
    """
    tables: dict[str, _Ranges] = {}
    for code in range(_MAX_RUNE + 1):
        category = unicodedata.category(chr(code))
        for key in (category, category[0]):
            table = tables.setdefault(key, [])
            if table and table[-1][1] == code - 1:
                table[-1] = (table[-1][0], code)
            else:
                table.append((code, code))
    # Go's tables leave unassigned code points out of C; so does this (Cn is not in Go's C).
    tables["C"] = _merge([r for key in ("Cc", "Cf", "Co", "Cs") for r in tables.get(key, [])])
    tables.pop("Cn", None)
    return tables


@dataclass(frozen=True, slots=True)
class _CompiledRegex:
    pattern: re.Pattern[str]
    names: Mapping[str, tuple[int, ...]]


@functools.lru_cache(maxsize=1024)
def _compile(pattern: str) -> _CompiledRegex:
    translator = _Translator(pattern)
    try:
        translated = translator.run()
    except _RegexSyntaxError as exc:
        raise ConfigError(exc.render()) from None
    try:
        compiled = re.compile(translated, re.DOTALL)
    except re.error as exc:  # what the translator let through but Python still refuses
        raise ConfigError(f"error parsing regexp: {exc.msg}: `{pattern}`") from exc
    names = {name: tuple(indexes) for name, indexes in translator.names.items()}
    return _CompiledRegex(compiled, names)


def compile_regex(pattern: str) -> re.Pattern[str]:
    """Compile an RE2 pattern to a Python pattern with the same meaning; use ``fullmatch``.

    The result is meant for ``fullmatch`` (Prometheus anchors as ``^(?s:<regex>)$``) and is
    compiled with ``re.DOTALL``. Go's ASCII ``\\d``/``\\w``/``\\s``/``\\b``, end-of-text ``$``,
    octal escapes, ``\\x{...}``, ``\\Q...\\E``, ``[[:alpha:]]``, Unicode general categories,
    mid-pattern flags and ``(?<name>...)`` are translated. Constructs RE2 refuses (backreferences,
    lookaround, atomic groups, possessive or stacked quantifiers, ``\\Z``, ``(?#...)``) and
    Unicode scripts are refused with `ConfigError` (``path=""``) in Go's message format.
    Capture names Python accepts are kept (``groupindex``); others (``(?P<1a>...)``, duplicate
    names, both valid in Go) become plain groups, and `compile_rules` tracks all names itself.
    """
    return _compile(pattern).pattern


def _compile_or_raise(pattern: str, *, path: str) -> _CompiledRegex:
    try:
        return _compile(pattern)
    except ConfigError as exc:
        raise ConfigError(exc.message, path=path) from None


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


_Expander: TypeAlias = Callable[["re.Match[str]"], str]


def _make_expander(parts: list[_Part]) -> _Expander:
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


def expand_template(template: str, match: re.Match[str]) -> str:
    """Expand ``template`` for ``match`` with Go ``regexp.Expand`` rules (spec §5.3).

    ``$$`` is ``$``; ``$name`` takes the longest run of letters, digits and ``_``; ``${name}``
    delimits it; an all-digit name is a group number; missing or non-participating groups expand
    to ``""``; a ``$`` not followed by a valid name stays literal. Named groups are looked up in
    ``match.re.groupindex``; `compile_rules` pre-splits templates instead of calling this.
    """
    names = {name: (index,) for name, index in match.re.groupindex.items()}
    return _make_expander(_parse_template(template, match.re.groups, names))(match)


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


# --------------------------------------------------------------------------- compiled rules

_Step: TypeAlias = Callable[[dict[str, str]], bool]
"""One compiled rule: mutates the builder dict, returns False to drop the label set."""
_Getter: TypeAlias = Callable[[dict[str, str]], str]
_Matcher: TypeAlias = Callable[[str], bool]

_REGEX_META: Final = frozenset("\\.+*?()|[]{}^$")


def _make_getter(names: tuple[str, ...], separator: str) -> _Getter:
    if not names:
        return lambda labels: ""
    if len(names) == 1:
        (name,) = names
        return lambda labels: labels.get(name, "")
    return lambda labels: separator.join([labels.get(name, "") for name in names])


def _literal_prefix(regex: str) -> str:
    """A prefix every match must start with, to skip the regex engine for most label names.

    Conservative: no prefix when the pattern has a top-level-or-nested ``|``; a character
    followed by a quantifier is not part of the prefix.
    """
    if "|" in regex:
        return ""
    end = 0
    while end < len(regex) and regex[end] not in _REGEX_META:
        end += 1
    if end < len(regex) and regex[end] in "*?{+":
        end -= 1
    return regex[: max(end, 0)]


def _make_matcher(regex: str, pattern: re.Pattern[str]) -> _Matcher:
    """A boolean matcher; literals and literal alternations skip the regex engine."""
    if regex == DEFAULT_REGEX:
        return lambda value: True  # ``(.*)`` with dot-all matches every string
    alternatives = regex.split("|")
    if all(not (_REGEX_META & set(alt)) for alt in alternatives):
        if len(alternatives) == 1:
            return regex.__eq__
        return frozenset(alternatives).__contains__
    fullmatch = pattern.fullmatch
    prefix = _literal_prefix(regex)
    if prefix:
        return lambda value: value.startswith(prefix) and fullmatch(value) is not None
    return lambda value: fullmatch(value) is not None


def _set(labels: dict[str, str], name: str, value: str) -> None:
    # Builder semantics: setting "" deletes.
    if value:
        labels[name] = value
    else:
        labels.pop(name, None)


def _compile_step(rule: RelabelConfig) -> _Step:
    compiled = _compile_or_raise(rule.regex, path="regex")
    pattern = compiled.pattern
    get = _make_getter(rule.source_labels, rule.separator)
    target = rule.target_label
    action = rule.action

    if action == "replace":
        return _replace_step(rule, compiled, get)
    if action in ("keep", "drop"):
        matches = _make_matcher(rule.regex, pattern)
        keep = action == "keep"
        return lambda labels: matches(get(labels)) is keep
    if action == "keepequal":
        return lambda labels: labels.get(target, "") == get(labels)
    if action == "dropequal":
        return lambda labels: labels.get(target, "") != get(labels)
    if action == "hashmod":
        modulus = rule.modulus

        def hashmod(labels: dict[str, str]) -> bool:
            # surrogateescape gives back the original bytes of values decoded that way.
            digest = hashlib.md5(get(labels).encode("utf-8", "surrogateescape")).digest()
            labels[target] = str(int.from_bytes(digest[8:], "big") % modulus)
            return True

        return hashmod
    if action in ("lowercase", "uppercase"):
        convert = go_lower if action == "lowercase" else go_upper

        def change_case(labels: dict[str, str]) -> bool:
            _set(labels, target, convert(get(labels)))
            return True

        return change_case
    if action == "labelmap":
        return _labelmap_step(rule, compiled)
    matches = _make_matcher(rule.regex, pattern)
    drop_matching = action == "labeldrop"

    def label_filter(labels: dict[str, str]) -> bool:
        doomed = [name for name in labels if matches(name) is drop_matching]
        for name in doomed:
            del labels[name]
        return True

    return label_filter


def _replace_step(rule: RelabelConfig, compiled: _CompiledRegex, get: _Getter) -> _Step:
    target, replacement = rule.target_label, rule.replacement
    if rule.regex == DEFAULT_REGEX and "$" not in target and "$" not in replacement:
        # Prometheus's fast path, generalised: ``(.*)`` matches every value and neither template
        # refers to it, so the rule is a constant assignment (or deletion when replacement is "").
        def constant(labels: dict[str, str]) -> bool:
            _set(labels, target, replacement)
            return True

        return constant

    pattern = compiled.pattern
    fullmatch = pattern.fullmatch
    groups = pattern.groups
    expand_value = _make_expander(_parse_template(replacement, groups, compiled.names))
    if "$" not in target:

        def replace(labels: dict[str, str]) -> bool:
            match = fullmatch(get(labels))
            if match is not None:
                _set(labels, target, expand_value(match))
            return True

        return replace

    expand_target = _make_expander(_parse_template(target, groups, compiled.names))

    def replace_templated(labels: dict[str, str]) -> bool:
        match = fullmatch(get(labels))
        if match is None:
            return True
        name = expand_target(match)
        if is_valid_label_name(name):  # an invalid expanded name makes the rule a no-op
            _set(labels, name, expand_value(match))
        return True

    return replace_templated


def _labelmap_step(rule: RelabelConfig, compiled: _CompiledRegex) -> _Step:
    fullmatch = compiled.pattern.fullmatch
    expand = _make_expander(
        _parse_template(rule.replacement, compiled.pattern.groups, compiled.names)
    )

    prefix = _literal_prefix(rule.regex)

    def labelmap(labels: dict[str, str]) -> bool:
        # Iterate a snapshot: names created here are not examined again by this rule.
        for name, value in list(labels.items()):
            if not value or not name.startswith(prefix):
                continue
            match = fullmatch(name)
            if match is not None:
                new_name = expand(match)
                if new_name:
                    labels[new_name] = value
        return True

    return labelmap


class Relabeler:
    """A compiled rule chain; ``process`` applies it to one builder dict.

    Build it once per config (`compile_rules`) and call ``process`` per target or new series.
    A `Relabeler` without rules is falsy so callers can skip the call altogether.
    """

    __slots__ = ("_steps", "rules")

    def __init__(self, rules: Sequence[RelabelConfig], steps: Sequence[_Step]) -> None:
        self.rules: tuple[RelabelConfig, ...] = tuple(rules)
        """The rules this chain was compiled from, in order."""
        self._steps = tuple(steps)

    def process(self, labels: dict[str, str]) -> dict[str, str] | None:
        """Apply every rule in order to ``labels`` (mutated in place) and return it.

        Returns None when a rule drops the set or when no non-empty label is left (spec §5.2).
        """
        for step in self._steps:
            if not step(labels):
                return None
        for value in labels.values():
            if value:
                return labels
        return None

    def trace(self, labels: dict[str, str]) -> Iterator[bool]:
        """Apply the rules one at a time to ``labels`` (mutated in place), yielding after each
        whether the set is still kept; stop at the first False. For `relabel_steps`."""
        for step in self._steps:
            yield step(labels)

    def __bool__(self) -> bool:
        return bool(self._steps)

    def __len__(self) -> int:
        return len(self._steps)

    def __repr__(self) -> str:
        return f"Relabeler({len(self._steps)} rules)"


def compile_rules(rules: Sequence[RelabelConfig]) -> Relabeler:
    """Validate and compile ``rules`` into a `Relabeler` (regexes and templates done once).

    Rules built in code (not by `parse_rule`) are validated here too, so a zero ``modulus`` or a
    bad regex fails at load, never while relabeling. Raises `ConfigError`.
    """
    steps = []
    for rule in rules:
        _validate(
            rule,
            regex_given=rule.regex != DEFAULT_REGEX,
            source_labels_given=bool(rule.source_labels),
        )
        steps.append(_compile_step(rule))
    return Relabeler(rules, steps)


def relabel(
    labels: Mapping[str, str], rules: Relabeler | Sequence[RelabelConfig]
) -> dict[str, str] | None:
    """Relabel a copy of ``labels``; convenient for tests and one-off calls, not the hot path."""
    relabeler = rules if isinstance(rules, Relabeler) else compile_rules(rules)
    return relabeler.process(dict(labels))
