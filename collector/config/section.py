"""Step 3 of a load, the reading side: typed, strict, located access to one YAML mapping.

The area loaders (`scrape`, `discovery`, `http_client`, `remote_write`) read the expanded tree
through a `Section`: it refuses unknown keys, converts scalars the way Go's yaml.v2 does
(``cannot unmarshal !!str `x` into uint``) and knows the YAML path of every value.

Problems are collected, not raised. A `Section` getter that meets a bad value reports it to the
file's `Source` and returns the default, so the rest of the section (and of the file) is still
checked; the key goes into `Section.failed` so that checks across keys can skip values that are
already wrong. `Source` places each problem at ``line:column`` using the locations `compose`
recorded, and `Problems` gathers them for the whole load (main file and
``scrape_config_files``) until the loader raises them as one `ConfigError`.

Prometheus counterpart: the ``UnmarshalYAML`` methods and ``yaml.UnmarshalStrict`` type errors.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from typing import TypeVar

from collector.config.yaml_tree import (
    Expanded,
    Location,
    Scalar,
    Tree,
    describe,
    idx,
    is_empty,
    join,
    relabel_plain,
)
from collector.errors import ConfigError
from collector.model import relabel
from collector.model.duration import parse_duration, parse_size
from collector.model.relabel import RelabelConfig

__all__ = [
    "Problems",
    "Section",
    "Source",
    "as_bool",
    "as_float",
    "as_int",
    "as_size",
    "as_str",
    "names",
    "valid_utf8",
]

_T = TypeVar("_T")


def names(text: str) -> frozenset[str]:
    """A set of YAML key names written as whitespace-separated words."""
    return frozenset(text.split())


class Problems:
    """Every problem of one load, across the main file and the files it includes."""

    def __init__(self) -> None:
        self.items: list[ConfigError] = []
        self.files: list[str] = []
        """Files in the order they were loaded: problems are sorted by file, then position."""

    def add(self, error: ConfigError) -> None:
        """Record one problem (or each problem of a collected error)."""
        self.items.extend(error.problems)

    def raise_if_any(self) -> None:
        """Raise one `ConfigError` for all problems so far, in file order; nothing if none."""
        if not self.items:
            return
        rank = {file: i for i, file in enumerate(self.files)}
        ordered = sorted(self.items, key=lambda p: (rank.get(p.file, len(rank)), p.line, p.column))
        raise ConfigError.collect(ordered)


class Source:
    """One YAML file being loaded: its name and directory, node locations, the load's problems."""

    def __init__(
        self,
        *,
        file: str,
        base_dir: str,
        env: Mapping[str, str],
        problems: Problems,
    ) -> None:
        self.file = file
        self.base_dir = base_dir
        self.env = env
        self.problems = problems
        self.locations: Mapping[str, Location] = {}
        """YAML path -> position, from `compose` (set once the text is read)."""
        problems.files.append(file)

    def locate(self, path: str) -> Location:
        """Where ``path`` is written, or its nearest written ancestor; ``(0, 0)`` if unknown.

        A path names a key that is absent (``modulus`` of a hashmod rule without one) when the
        problem is that it is missing; the enclosing mapping is then the place to look.
        """
        while path not in self.locations and path:
            path = (
                path[: path.rfind("[")] if path.endswith("]") else path[: max(path.rfind("."), 0)]
            )
        return self.locations.get(path, (0, 0))

    def error(self, message: str, path: str = "") -> ConfigError:
        """A `ConfigError` at ``path`` of this file, with its line and column."""
        line, column = self.locate(path)
        return ConfigError(message, path=path, file=self.file, line=line, column=column)

    def report(self, message: str, path: str = "") -> None:
        """Record a problem at ``path``; loading goes on."""
        self.problems.add(self.error(message, path))

    def join_dir(self, path: str) -> str:
        """Prometheus ``config.JoinDir``: relative paths are joined to the config directory."""
        if not path or os.path.isabs(path):
            return path
        return os.path.join(self.base_dir, path)


class Section:
    """One YAML mapping being read: typed getters that know their path, strict keys.

    ``valid`` is False when the value was not a mapping at all (reported); the section then reads
    as empty and the caller should not report what is missing from it.
    """

    def __init__(
        self,
        raw: Tree,
        path: str,
        *,
        src: Source,
        kind: str,
        known: frozenset[str],
        unsupported: frozenset[str] = frozenset(),
    ) -> None:
        self.src = src
        self.path = path
        self.failed: set[str] = set()
        """Keys whose value was reported as wrong."""
        self.valid = raw is None or isinstance(raw, dict)
        if not isinstance(raw, dict):
            if raw is not None:
                src.report(f"cannot unmarshal {describe(raw)} into {kind}", path)
            raw = {}
        self.raw = raw
        for key, value in raw.items():
            if key in known:
                continue
            if key in unsupported:
                if is_empty(value):
                    continue
                self.fail(f"field {key} is not supported by collector", key)
            else:
                self.fail(f"field {key} not found in type {kind}", key)

    def at(self, key: str) -> str:
        """Path of ``key`` in this section."""
        return join(self.path, key)

    def report(self, message: str, key: str | None = None) -> None:
        """Record a problem at this section, or at ``key`` within it."""
        self.src.report(message, self.at(key) if key else self.path)

    def fail(self, message: str, key: str) -> None:
        """Record a problem with ``key``'s value and remember that it failed."""
        self.failed.add(key)
        self.report(message, key)

    def unsupported(self, key: str, why: str, *, path: str | None = None) -> None:
        """Refuse a value of ``key`` that collector accepts the key of but would not honour.

        Silent acceptance is worse than refusal (issue 12): a setting that loads must act, so a
        value nothing downstream implements is a located ``field X is not supported by
        collector`` error saying why; ``path`` places it below ``key`` (a list item).
        """
        self.failed.add(key)
        self.src.report(
            f"field {key.rpartition('.')[2]} is not supported by collector: {why}",
            path or self.at(key),
        )

    def get(self, key: str) -> Tree:
        """The raw value, None when absent."""
        return self.raw.get(key)

    def has(self, key: str) -> bool:
        """Whether ``key`` is present with a non-null value."""
        return self.raw.get(key) is not None

    def _typed(self, key: str, convert: Callable[[Tree], _T], default: _T) -> _T:
        """``convert`` the value of ``key``; ``default`` when absent or refused (reported)."""
        value = self.get(key)
        if value is None:
            return default
        try:
            return convert(value)
        except ValueError as exc:
            self.fail(str(exc), key)
            return default

    def str_(self, key: str, default: str = "") -> str:
        """A string; numbers and bools give their source text (as in Go)."""
        return self._typed(key, as_str, default)

    def bool_(self, key: str, default: bool) -> bool:
        """A boolean."""
        return self._typed(key, as_bool, default)

    def opt_bool(self, key: str) -> bool | None:
        """A boolean, None when absent (or refused)."""
        return self._typed(key, as_bool, None)

    def int_(self, key: str, default: int = 0, *, unsigned: bool = True) -> int:
        """An integer (non-negative unless ``unsigned=False``)."""
        return self._typed(key, lambda v: as_int(v, unsigned=unsigned), default)

    def float_(self, key: str, default: float = 0.0) -> float:
        """A float (ints accepted)."""
        return self._typed(key, as_float, default)

    def duration(self, key: str) -> float | None:
        """A Prometheus duration in seconds, None when absent (or refused)."""
        return self._typed(key, lambda v: parse_duration(as_str(v)), None)

    def size(self, key: str) -> int:
        """A byte size (``10MB``, ``1GiB``, or a plain integer of bytes); 0 when absent."""
        return self._typed(key, as_size, 0)

    def list_(self, key: str) -> list[Tree]:
        """A sequence; [] when absent (or not a sequence, reported)."""
        value = self.get(key)
        if value is None:
            return []
        if not isinstance(value, list):
            self.fail(f"cannot unmarshal {describe(value)} into a list", key)
            return []
        return value

    def str_list(self, key: str) -> list[str]:
        """A sequence of strings; items that are not strings are reported and left out."""
        return _strings(self, key, self.at(key), self.list_(key))

    def mapping(self, key: str) -> dict[str, Tree]:
        """A mapping with arbitrary keys; {} when absent (or not a mapping, reported)."""
        value = self.get(key)
        if value is None:
            return {}
        if not isinstance(value, dict):
            self.fail(f"cannot unmarshal {describe(value)} into a map", key)
            return {}
        return value

    def str_map(self, key: str) -> list[tuple[str, str]]:
        """A mapping of string to string, in file order; bad values are reported, left out."""
        path = self.at(key)
        out: list[tuple[str, str]] = []
        for name, value in self.mapping(key).items():
            try:
                out.append((name, as_str(value)))
            except ValueError as exc:
                self.failed.add(key)
                self.src.report(str(exc), join(path, name))
        return out

    def str_lists_map(self, key: str) -> list[tuple[str, tuple[str, ...]]]:
        """A mapping of string to a list of strings (``params``, ``proxy_connect_header``)."""
        path = self.at(key)
        out: list[tuple[str, tuple[str, ...]]] = []
        for name, values in self.mapping(key).items():
            vpath = join(path, name)
            if not isinstance(values, list):
                self.failed.add(key)
                self.src.report(f"cannot unmarshal {describe(values)} into []string", vpath)
                continue
            out.append((name, tuple(_strings(self, key, vpath, values))))
        return out

    def section(
        self,
        key: str,
        *,
        kind: str,
        known: frozenset[str],
        unsupported: frozenset[str] = frozenset(),
    ) -> Section:
        """A nested mapping as a `Section` (empty when absent)."""
        return Section(
            self.get(key),
            self.at(key),
            src=self.src,
            kind=kind,
            known=known,
            unsupported=unsupported,
        )

    def relabel_list(self, key: str, context: str, null_message: str) -> tuple[RelabelConfig, ...]:
        """A list of relabel rules, each validated by `collector.model.relabel.parse_rule`.

        A rule is checked up to its first problem (reported at the rule's path joined with the
        key ``parse_rule`` names); the other rules are still checked.
        """
        rules: list[RelabelConfig] = []
        for i, raw in enumerate(self.list_(key)):
            path = idx(self.at(key), i)
            if raw is None:
                self.failed.add(key)
                self.src.report(null_message, path)
                continue
            try:
                rules.append(relabel.parse_rule(relabel_plain(raw), context=context))
            except ConfigError as exc:
                self.failed.add(key)
                self.src.report(exc.message, join(path, exc.path))
        return tuple(rules)


def _strings(section: Section, key: str, path: str, values: list[Tree]) -> list[str]:
    """``values`` (of ``key``) as strings; others are reported at ``path[i]`` and left out."""
    out: list[str] = []
    for i, value in enumerate(values):
        try:
            out.append(as_str(value))
        except ValueError as exc:
            section.failed.add(key)
            section.src.report(str(exc), idx(path, i))
    return out


# ------------------------------------------------------------------------------ converters
# Each raises ValueError with Go's type-error message; `Section` turns that into a problem.


def as_str(value: Tree) -> str:
    """A string value; a number or bool gives its source text, as Go's yaml.v2 does."""
    if isinstance(value, str):
        return str(value)
    if isinstance(value, Scalar):
        return value.text
    raise ValueError(f"cannot unmarshal {describe(value)} into string")


_TRUE_WORDS = frozenset({"true", "True", "TRUE", "yes", "Yes", "YES", "on", "On", "ON", "y", "Y"})
_FALSE_WORDS = frozenset(
    {"false", "False", "FALSE", "no", "No", "NO", "off", "Off", "OFF", "n", "N"}
)


def as_bool(value: Tree) -> bool:
    """A boolean; a string produced by env expansion may spell one."""
    if isinstance(value, Scalar) and isinstance(value.value, bool):
        return value.value
    if isinstance(value, Expanded):
        if value in _TRUE_WORDS:
            return True
        if value in _FALSE_WORDS:
            return False
    raise ValueError(f"cannot unmarshal {describe(value)} into bool")


def as_int(value: Tree, *, unsigned: bool) -> int:
    """An integer; a string produced by env expansion may spell one."""
    number: int | None = None
    if (
        isinstance(value, Scalar)
        and isinstance(value.value, int)
        and not isinstance(value.value, bool)
    ):
        number = value.value
    elif isinstance(value, Expanded) and re.fullmatch(r"[-+]?[0-9]+", value):
        number = int(value)
    if number is None or (unsigned and number < 0):
        raise ValueError(f"cannot unmarshal {describe(value)} into {'uint' if unsigned else 'int'}")
    return number


def as_float(value: Tree) -> float:
    """A float (ints accepted); a string produced by env expansion may spell one."""
    if isinstance(value, Scalar) and not isinstance(value.value, bool):
        return float(value.value)
    if isinstance(value, Expanded):
        try:
            return float(value)
        except ValueError:
            pass
    raise ValueError(f"cannot unmarshal {describe(value)} into float64")


def as_size(value: Tree) -> int:
    """A byte size: a non-negative integer of bytes or ``parse_size`` text (``10MB``)."""
    if isinstance(value, Scalar) and isinstance(value.value, int):
        if isinstance(value.value, bool) or value.value < 0:
            raise ValueError(f"cannot unmarshal {describe(value)} into size")
        return value.value
    text = as_str(value)
    if isinstance(value, Expanded) and text.isdigit():
        return int(text)
    return parse_size(text)


def valid_utf8(value: str) -> bool:
    """Whether ``value`` encodes as UTF-8 (no lone surrogates)."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True
