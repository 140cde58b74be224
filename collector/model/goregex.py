"""Go RE2 regex syntax translated to Python ``re``, with Go's meaning and Go's error messages.

Place in the pipeline: config load only. Every relabel rule's ``regex`` (``relabel_configs``,
``metric_relabel_configs``, ``write_relabel_configs``) is translated when the rule is parsed
(`collector.model.relabel_config.parse_rule`); compiling the rules
(`collector.model.relabel.compile_rules`) asks again and normally hits the cache. Nothing is
translated while relabeling.

`compile_regex` translates the RE2 pattern into a Python `re` pattern with Go's meaning, fully
anchored and with ``.`` matching ``\\n`` (``^(?s:<regex>)$``, spec §5.1). A pattern RE2 refuses
raises `ConfigError` worded like Go's (``error parsing regexp: <code>: ...``). Character classes
are built as code point ranges by `collector.model.goregex_classes`.

Deliberate deviation from Prometheus: Unicode script classes (``\\p{Greek}``) are refused at load:
Python's ``re`` has no script data. General categories (``\\pL``, ``\\p{Lu}``, ``\\PN``, ...) and
``\\p{Any}`` are supported exactly, built from ``unicodedata`` (Unicode 14 in Python 3.11; Go may
be a version ahead).

Prometheus counterpart: ``NewRegexp`` in ``model/relabel/relabel.go``; Go ``regexp/syntax`` for
the dialect.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

from collector.errors import ConfigError
from collector.model.goregex_classes import (
    MAX_RUNE,
    PERL_CLASSES,
    POSIX_CLASSES,
    Ranges,
    class_body,
    escape_code_point,
    merge_ranges,
    negate_ranges,
    unicode_class,
)

__all__ = ["CompiledRegex", "compile_regex", "compile_with_names"]

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
            self.out.append("[" + class_body(ranges) + "]")
            self._atom(width)
            return
        code, width = self._char_escape(start)
        self.out.append(escape_code_point(code))
        self._atom(width)

    def _class_escape(self, start: int) -> tuple[Ranges | None, int]:
        """``\\d``, ``\\W``, ``\\pL``, ``\\p{^Lu}`` ... as ranges; (None, 0) for other escapes."""
        src = self.src
        char = src[start + 1]
        if char.lower() in PERL_CLASSES:
            ranges = PERL_CLASSES[char.lower()]
            return (negate_ranges(ranges) if char.isupper() else ranges), 2
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
        table = unicode_class(name)
        if table is None:
            hint = (
                "Unicode scripts are not supported; use explicit ranges"
                if name[:1].isupper() and len(name) > 2
                else ""
            )
            raise _RegexSyntaxError(
                "invalid character class range", src[start : start + width], hint
            )
        return (negate_ranges(table) if negate else table), width

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
                if _is_hex(digits) and int(digits, 16) <= MAX_RUNE:
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
        ranges: Ranges = []
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
                    posix = POSIX_CLASSES.get(name.lstrip("^"))
                    if posix is None:
                        raise _RegexSyntaxError("invalid character class range", src[pos : end + 2])
                    ranges.extend(negate_ranges(posix) if posix_negate else posix)
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
        merged = merge_ranges(ranges)
        if negate:
            merged = negate_ranges(merged)
        # An empty set (``[^\x00-\x{10FFFF}]``) matches nothing, which Python spells ``(?!)``.
        self.out.append("[" + class_body(merged) + "]" if merged else "(?!)")
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


@dataclass(frozen=True, slots=True)
class CompiledRegex:
    """A translated pattern with its capture-group names as Go counts them."""

    pattern: re.Pattern[str]
    """The Python pattern, compiled with ``re.DOTALL``; use ``fullmatch``."""
    names: Mapping[str, tuple[int, ...]]
    """Group numbers per name; Go allows duplicate names and names Python refuses (``1a``)."""


@functools.lru_cache(maxsize=1024)
def _compile(pattern: str) -> CompiledRegex:
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
    return CompiledRegex(compiled, names)


def compile_regex(pattern: str) -> re.Pattern[str]:
    """Compile an RE2 pattern to a Python pattern with the same meaning; use ``fullmatch``.

    The result is meant for ``fullmatch`` (Prometheus anchors as ``^(?s:<regex>)$``) and is
    compiled with ``re.DOTALL``. Go's ASCII ``\\d``/``\\w``/``\\s``/``\\b``, end-of-text ``$``,
    octal escapes, ``\\x{...}``, ``\\Q...\\E``, ``[[:alpha:]]``, Unicode general categories,
    mid-pattern flags and ``(?<name>...)`` are translated. Constructs RE2 refuses (backreferences,
    lookaround, atomic groups, possessive or stacked quantifiers, ``\\Z``, ``(?#...)``) and
    Unicode scripts are refused with `ConfigError` (``path=""``) in Go's message format.
    Capture names Python accepts are kept (``groupindex``); others (``(?P<1a>...)``, duplicate
    names, both valid in Go) become plain groups; `compile_with_names` keeps all of them.
    """
    return _compile(pattern).pattern


def compile_with_names(pattern: str, *, path: str) -> CompiledRegex:
    """`compile_regex` with Go's group names kept, for relabel rules and their templates.

    A refused pattern raises `ConfigError` whose ``path`` is ``path`` (the key inside the rule).
    """
    try:
        return _compile(pattern)
    except ConfigError as exc:
        raise ConfigError(exc.message, path=path) from None
