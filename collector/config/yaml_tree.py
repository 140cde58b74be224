"""Step 1 and 2 of a load: YAML text -> a plain tree with locations, then environment expansion.

The YAML is composed into nodes and converted here, not by ``yaml.safe_load``'s constructors,
so that a scalar keeps its source text: ``version: 1.10`` is the string ``"1.10"`` and
``env: on`` is ``"on"`` where a string is expected, as with Go's yaml.v2. Duplicate mapping keys
are refused, as Go's strict decoder does; they are collected as problems and the tree is still
built, so the rest of the file gets checked too.

Every node's position is recorded against its YAML path (``scrape_configs[1].scrape_interval``,
the same spelling the loader uses in errors): a mapping entry is located at its key, a sequence
item at the item. `Source.locate <collector.config.section.Source.locate>` turns a path into
``line:column`` for each problem.

``${VAR}`` / ``$VAR`` are then expanded from the environment in every string *value* (keys are
untouched); see the `collector.config` docs for the rules and the relabel-template exception.

Prometheus counterpart: ``config.LoadFile`` (``yaml.UnmarshalStrict`` plus ``os.Expand`` for
``external_labels``).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import NoReturn, cast

import yaml

from collector.config.yaml_read import Loader, StrictConstructor, excessive_aliasing, go_line
from collector.errors import ConfigError
from collector.gcpause import gc_paused

__all__ = [
    "Composed",
    "Expanded",
    "Location",
    "Scalar",
    "Tree",
    "compose",
    "describe",
    "expand_env",
    "idx",
    "is_empty",
    "join",
    "relabel_plain",
    "to_plain",
]

# The package's one logger keeps the name it had when the package was one module.
_log = logging.getLogger("collector.config")


@dataclass(frozen=True, slots=True)
class Scalar:
    """A non-string YAML scalar (int, float, bool) together with its source text.

    Where a string is expected, Go's yaml.v2 uses the text (``1.10`` stays ``"1.10"``); where
    a number or bool is expected, the value is used.
    """

    text: str
    value: bool | int | float


class Expanded(str):
    """A string value that environment expansion changed; it may stand for a number or bool."""

    __slots__ = ()


Tree = dict[str, "Tree"] | list["Tree"] | str | Scalar | None
"""A converted YAML document: mappings with string keys, sequences, strings, `Scalar`, None."""

Location = tuple[int, int]
"""``(line, column)``, both 1-based, of a node in its file."""


@dataclass(slots=True)
class Composed:
    """The result of `compose`: the tree, where each path is written, and what was wrong.

    ``complete`` is False when a problem (bad syntax, an unsupported tag) stopped the
    conversion; ``tree`` is then None and ``problems`` says why.
    """

    tree: Tree = None
    locations: dict[str, Location] = field(default_factory=dict)
    problems: list[ConfigError] = field(default_factory=list)
    complete: bool = True


def compose(text: str, *, file: str) -> Composed:
    """Parse YAML text into a `Tree`, recording node locations and collecting problems."""
    out = Composed()
    loader: Loader | None = None
    try:
        # Inside the try: the reader refuses non-printable characters already here (fuzzing).
        loader = Loader(text)
        with gc_paused():  # thousands of new nodes and values, none garbage
            node = loader.get_single_node()
            if node is not None:
                converter = _Converter(loader, file=file, into=out)
                culprit = excessive_aliasing(node)
                if culprit is not None:
                    converter.fail("document contains excessive aliasing", culprit)
                out.tree = converter.convert(node, "")
    except _Stop as stop:
        out.problems.append(stop.error)
        out.tree, out.complete = None, False
    except RecursionError:
        # PyYAML's composer and our converter recurse per level: ~300 levels of nesting are
        # enough to overflow the stack (fuzzing: "a: [[[[...").
        out.problems.append(ConfigError("yaml: document is nested too deeply", file=file))
        out.tree, out.complete = None, False
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, column = (mark.line + 1, mark.column + 1) if mark is not None else (0, 0)
        where = go_line(exc)
        out.problems.append(
            ConfigError(
                f"yaml: {where}{exc.problem or exc.context}", file=file, line=line, column=column
            )
        )
        out.tree, out.complete = None, False
    except yaml.YAMLError as exc:
        out.problems.append(ConfigError(f"yaml: {exc}", file=file))
        out.tree, out.complete = None, False
    finally:
        if loader is not None:
            loader.dispose()
    return out


class _Stop(Exception):
    """A node the conversion cannot go past (unsupported tag, recursive alias, complex key)."""

    def __init__(self, error: ConfigError) -> None:
        super().__init__(error.message)
        self.error = error


_SCALAR_TAGS = ("tag:yaml.org,2002:bool", "tag:yaml.org,2002:int", "tag:yaml.org,2002:float")


def _short_tag(tag: str) -> str:
    """``tag:yaml.org,2002:bool`` -> ``!!bool`` (yaml.v2's ``shortTag``)."""
    prefix = "tag:yaml.org,2002:"
    return "!!" + tag[len(prefix) :] if tag.startswith(prefix) else tag


class _Converter:
    """One conversion: turns composed nodes into a `Tree` and fills ``into``'s locations."""

    def __init__(self, loader: yaml.SafeLoader, *, file: str, into: Composed) -> None:
        self.loader = loader
        self.file = file
        self.into = into
        self.active: set[int] = set()

    def error(self, message: str, node: yaml.Node) -> ConfigError:
        """``line N: message``, located at ``node``."""
        mark = node.start_mark
        return ConfigError(
            f"line {mark.line + 1}: {message}",
            file=self.file,
            line=mark.line + 1,
            column=mark.column + 1,
        )

    def problem(self, message: str, node: yaml.Node) -> None:
        """Record a problem at ``node``; the conversion goes on."""
        self.into.problems.append(self.error(message, node))

    def fail(self, message: str, node: yaml.Node) -> NoReturn:
        """End the conversion with a problem at ``node``."""
        raise _Stop(self.error(message, node))

    def locate(self, path: str, node: yaml.Node) -> None:
        """Remember where ``path`` is written."""
        mark = node.start_mark
        self.into.locations[path] = (mark.line + 1, mark.column + 1)

    def convert(self, node: yaml.Node, path: str) -> Tree:
        """Turn one composed node into a `Tree`; refuse duplicate keys and recursive aliases."""
        if not path:
            self.locate(path, node)
        if isinstance(node, yaml.ScalarNode):
            return self.scalar(node)
        if id(node) in self.active:
            self.fail("recursive YAML alias", node)
        self.active.add(id(node))
        try:
            if isinstance(node, yaml.SequenceNode):
                items: list[Tree] = []
                for i, item in enumerate(node.value):
                    self.locate(idx(path, i), item)
                    items.append(self.convert(item, idx(path, i)))
                return items
            if isinstance(node, yaml.MappingNode):
                return self.mapping(node, path)
        finally:
            self.active.discard(id(node))
        self.fail("unsupported YAML node", node)

    def scalar(self, node: yaml.ScalarNode) -> Tree:
        """A scalar: None, a `Scalar` (keeping its text) or a string."""
        tag = node.tag
        if tag == "tag:yaml.org,2002:null":
            return None
        if tag in _SCALAR_TAGS:
            try:
                value = self.loader.construct_object(node, deep=True)
            except (ValueError, yaml.YAMLError):
                # An explicit ``!!int abc`` cannot be constructed; Go refuses it as well.
                self.cannot_decode(node)
                return None
            return Scalar(str(node.value), cast("bool | int | float", value))
        if tag == "tag:yaml.org,2002:timestamp":
            # Implicit timestamps (``2001-12-14``) stay the strings they are written as, as in
            # Go; a value the resolver would not take for one was tagged by hand: refused.
            if StrictConstructor.timestamp_regexp.match(node.value) is None:
                self.cannot_decode(node)
                return None
            return str(node.value)
        if tag == "tag:yaml.org,2002:str":
            return str(node.value)
        self.fail(f"unsupported YAML tag {tag}", node)

    def cannot_decode(self, node: yaml.ScalarNode) -> None:
        """An explicitly tagged value that is not of its tag, in yaml.v2's words:
        ``cannot decode !!str `xyz` as a !!bool`` (the value's own tag, then the one given)."""
        own = self.loader.resolve(  # type: ignore[no-untyped-call]
            yaml.ScalarNode, node.value, (True, False)
        )
        self.problem(
            f"cannot decode {_short_tag(own)} `{node.value}` as a {_short_tag(node.tag)}", node
        )

    def mapping(self, node: yaml.MappingNode, path: str) -> dict[str, Tree]:
        """A mapping with string keys; a key written twice is a problem, the last value wins."""
        # Duplicates are checked among the keys written here; keys merged in with ``<<`` may be
        # overridden, as in Go's yaml.v2.
        first_line: dict[str, int] = {}
        for key_node, _value in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.key(key_node)
            line = key_node.start_mark.line + 1
            if key in first_line:
                self.problem(
                    f'mapping key "{key}" already defined at line {first_line[key]}', key_node
                )
            else:
                first_line[key] = line
        self.loader.flatten_mapping(node)
        # Only the value that wins is converted, so that its positions are the ones recorded.
        winners = {
            self.key(key_node): (key_node, value_node) for key_node, value_node in node.value
        }
        out: dict[str, Tree] = {}
        for key, (key_node, value_node) in winners.items():
            self.locate(join(path, key), key_node)
            out[key] = self.convert(value_node, join(path, key))
        return out

    def key(self, node: yaml.Node) -> str:
        """A mapping key as text (Go decodes scalar keys of string maps from their text)."""
        if not isinstance(node, yaml.ScalarNode):
            self.fail("mapping keys must be scalars", node)
        return "" if node.tag == "tag:yaml.org,2002:null" else str(node.value)


# ------------------------------------------------------------------------------ paths


def join(path: str, key: str) -> str:
    """``a.b`` path join."""
    return f"{path}.{key}" if path else key


def idx(path: str, i: int) -> str:
    """``a[3]`` path index."""
    return f"{path}[{i}]"


# ------------------------------------------------------------------------------ env expansion

# Go os.Expand, as Prometheus uses it: ``$$`` -> ``$``, ``${NAME}``, ``$NAME``.
_ENV_REF = re.compile(r"\$(?:(\$)|\{([^}]*)\}|([A-Za-z0-9_]+))")
_RELABEL_LIST_KEYS = frozenset(
    {"relabel_configs", "metric_relabel_configs", "write_relabel_configs"}
)
_RELABEL_TEMPLATE_KEYS = frozenset({"replacement", "target_label"})


def expand_env(tree: Tree, env: Mapping[str, str], path: str = "") -> Tree:
    """Expand environment references in every string value of ``tree`` (see package docs)."""
    if isinstance(tree, str):
        return _expand_string(tree, env, path)
    if isinstance(tree, list):
        return [expand_env(item, env, idx(path, i)) for i, item in enumerate(tree)]
    if isinstance(tree, dict):
        out: dict[str, Tree] = {}
        for key, value in tree.items():
            sub = join(path, key)
            if key in _RELABEL_LIST_KEYS and isinstance(value, list):
                out[key] = [
                    _expand_relabel_rule(rule, env, idx(sub, i)) for i, rule in enumerate(value)
                ]
            else:
                out[key] = expand_env(value, env, sub)
        return out
    return tree


def _expand_relabel_rule(rule: Tree, env: Mapping[str, str], path: str) -> Tree:
    """Expand a relabel rule except its ``$1``-style template fields."""
    if not isinstance(rule, dict):
        return expand_env(rule, env, path)
    return {
        key: value if key in _RELABEL_TEMPLATE_KEYS else expand_env(value, env, join(path, key))
        for key, value in rule.items()
    }


def _expand_string(s: str, env: Mapping[str, str], path: str) -> str:
    """Expand one string; returns an `Expanded` when anything changed."""
    if "$" not in s:
        return s

    def substitute(match: re.Match[str]) -> str:
        if match.group(1) is not None:
            return "$"
        name = match.group(2) if match.group(2) is not None else match.group(3)
        value = env.get(name, "")
        if not value:
            _log.warning('empty environment variable %r expanded to "" at %s', name, path)
        return value

    expanded = _ENV_REF.sub(substitute, s)
    return Expanded(expanded) if expanded != s else s


# ------------------------------------------------------------------------------ plain values


def to_plain(tree: Tree, *, text: bool = False) -> object:
    """Plain Python values for hashing and for `relabel.parse_rule`.

    With ``text``, every scalar becomes its source text instead of its YAML value.
    """
    if isinstance(tree, Scalar):
        return tree.text if text else tree.value
    if isinstance(tree, list):
        return [to_plain(item, text=text) for item in tree]
    if isinstance(tree, dict):
        return {key: to_plain(value, text=text) for key, value in tree.items()}
    if isinstance(tree, str):
        return str(tree)
    return tree


def relabel_plain(tree: Tree) -> object:
    """A relabel rule for `parse_rule`: scalars as their text, except an integer ``modulus``.

    Go decodes ``replacement: 1`` into the string ``"1"``; passing the text keeps that.
    """
    if not isinstance(tree, dict):
        return to_plain(tree)
    out: dict[str, object] = {}
    for key, value in tree.items():
        if key == "modulus" and isinstance(value, Scalar):
            out[key] = value.value
        elif key == "modulus" and isinstance(value, Expanded) and value.isdigit():
            out[key] = int(value)
        else:
            out[key] = to_plain(value, text=True)
    return out


def describe(value: Tree) -> str:
    """Go yaml.v2's way of naming a node in type errors: ``!!str `abc```; like yaml.v2, a value
    over 10 characters shows only its first 7 (``Bearer ...``), so a secret written where a
    block belongs is not echoed into logs."""
    if value is None:
        return "!!null"
    if isinstance(value, list):
        return "!!seq"
    if isinstance(value, dict):
        return "!!map"
    if isinstance(value, Scalar):
        kind = (
            "bool"
            if isinstance(value.value, bool)
            else "int"
            if isinstance(value.value, int)
            else "float"
        )
        return f"!!{kind} `{_short(value.text)}`"
    return f"!!str `{_short(str(value))}`"


def _short(text: str) -> str:
    return text if len(text) <= 10 else text[:7] + "..."


def is_empty(value: Tree) -> bool:
    """True for null, "" and empty collections: a key given so is as good as absent."""
    return value is None or value == "" or value == [] or value == {}
