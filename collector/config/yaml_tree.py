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

import datetime
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, NoReturn, cast

import yaml

from collector.errors import ConfigError

__all__ = [
    "Composed",
    "Expanded",
    "Location",
    "Scalar",
    "StrictConstructor",
    "Tree",
    "compose",
    "describe",
    "excessive_aliasing",
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
    loader: _Loader | None = None
    try:
        # Inside the try: the reader refuses non-printable characters already here (fuzzing).
        loader = _Loader(text)
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
        where = _go_line(exc)
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


def _go_line(exc: yaml.MarkedYAMLError) -> str:
    """The ``line N: `` of Go yaml.v2's message for a syntax error, so that collector words it
    as Prometheus does (``parser.fail`` in yaml.v2's ``decode.go``).

    yaml.v2 is a port of libyaml and says the problem mark's 0-based line for a parser error
    (the line before the one the mark is on: "global: [" is "line 1" though the stream ends
    on line 2) and the 1-based line for a scanner error; without a problem line, the context's
    0-based line; "line 0" is left out. The error's location (``file:line:column``) is the
    true 1-based position either way. Problems of our own (nesting depth, aliasing) are not
    libyaml's and say their own 1-based line.
    """
    if isinstance(exc, _UnknownAnchor):
        return ""
    problem, context = exc.problem_mark, exc.context_mark
    scanner = isinstance(exc, yaml.scanner.ScannerError)
    if not isinstance(exc, (yaml.scanner.ScannerError, yaml.parser.ParserError)):
        mark = problem or context
        return f"line {mark.line + 1}: " if mark is not None else ""
    if problem is not None and problem.line:
        line = problem.line + 1 if scanner else problem.line
    else:
        line = context.line if context is not None else 0
    return f"line {line}: " if line else ""


_MAX_FLOW_DEPTH = 64
_TOO_DEEP = f"exceeded maximum nesting depth ({_MAX_FLOW_DEPTH})"


class _UnknownAnchor(yaml.composer.ComposerError):
    """An alias to no anchor, worded as yaml.v2 words it (which names no line)."""


class _DepthLimit(yaml.composer.Composer):
    """PyYAML's composer refusing collections nested deeper than ``_MAX_FLOW_DEPTH``.

    The composer recurses per level of any kind, so ~300 block levels overflow the stack
    (fuzzing); libyaml itself refuses depth past 1,000 with this message. No config comes near
    64 (the deepest shipped one has 8 levels).
    """

    _depth = 0

    def compose_node(self, parent: yaml.Node | None, index: int) -> yaml.Node | None:
        """One node, one level deeper, if allowed."""
        if self.check_event(yaml.AliasEvent):  # type: ignore[attr-defined]
            event = self.peek_event()  # type: ignore[attr-defined]
            if event.anchor not in self.anchors:
                raise _UnknownAnchor(
                    None, None, f"unknown anchor '{event.anchor}' referenced", event.start_mark
                )
        self._depth += 1
        try:
            if self._depth > _MAX_FLOW_DEPTH:
                mark = self.peek_event().start_mark  # type: ignore[attr-defined]
                raise yaml.composer.ComposerError("while composing a node", mark, _TOO_DEEP, mark)
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


class StrictConstructor(yaml.constructor.SafeConstructor):
    """PyYAML's safe constructors, with the two that crash on a bad explicitly tagged value
    made to refuse it as a located YAML error: ``!!timestamp xyz`` (AttributeError) and
    ``!!bool xyz`` (KeyError), found by fuzzing. The config and file_sd loaders use it."""

    def construct_yaml_timestamp(self, node: yaml.ScalarNode) -> datetime.date:
        """A timestamp, or a located error when the value is not one."""
        if self.timestamp_regexp.match(self.construct_scalar(node)) is None:
            raise yaml.constructor.ConstructorError(
                None, None, f"invalid !!timestamp value {node.value!r}", node.start_mark
            )
        return super().construct_yaml_timestamp(node)

    def construct_yaml_bool(self, node: yaml.ScalarNode) -> bool:
        """A bool, or a located error when the value is not one."""
        if self.construct_scalar(node).lower() not in self.bool_values:
            raise yaml.constructor.ConstructorError(
                None, None, f"invalid !!bool value {node.value!r}", node.start_mark
            )
        return super().construct_yaml_bool(node)


# The stubs type add_constructor for loaders only; a constructor class is what PyYAML takes.
StrictConstructor.add_constructor(  # type: ignore[type-var]
    "tag:yaml.org,2002:timestamp", StrictConstructor.construct_yaml_timestamp
)
StrictConstructor.add_constructor(  # type: ignore[type-var]
    "tag:yaml.org,2002:bool", StrictConstructor.construct_yaml_bool
)


# libyaml's parser, if PyYAML was built with it (PyPI's wheels are).
_CParser: Any = getattr(getattr(yaml, "cyaml", None), "CParser", None)

if _CParser is not None:

    class _Loader(
        _DepthLimit,
        _CParser,  # type: ignore[misc]
        StrictConstructor,
        yaml.resolver.Resolver,
    ):
        """libyaml's scanner and parser (C: ~15x PyYAML's), our composer, safe constructors.

        Composing in Python keeps the depth limit and PyYAML's node marks; libyaml's events
        carry the same line and column.
        """

        def __init__(self, stream: str) -> None:
            _CParser.__init__(self, stream)
            StrictConstructor.__init__(self)
            yaml.resolver.Resolver.__init__(self)
            _DepthLimit.__init__(self)

else:  # pragma: no cover - PyYAML built without libyaml

    class _Loader(_DepthLimit, StrictConstructor, yaml.SafeLoader):  # type: ignore[no-redef]
        """Pure-Python ``SafeLoader`` with the depth limit on flow levels too.

        PyYAML's scanner rechecks every open flow level on every token, so ``[[[[...`` costs
        quadratic time (fuzzing: 4 KB took 1.2 s).
        """

        def fetch_flow_collection_start(self, TokenClass: type[yaml.Token]) -> None:
            """``[`` or ``{``: one flow level deeper, if allowed."""
            if self.flow_level >= _MAX_FLOW_DEPTH:
                mark = self.get_mark()
                raise yaml.scanner.ScannerError(
                    "while increasing flow level", mark, _TOO_DEEP, mark
                )
            super().fetch_flow_collection_start(TokenClass)


_ALIAS_RATIO_LOW = 400_000
_ALIAS_RATIO_HIGH = 4_000_000


def _allowed_alias_ratio(decoded: int) -> float:
    """Share of decoded nodes that may come from alias expansion (Go yaml.v2's rule)."""
    if decoded <= _ALIAS_RATIO_LOW:
        return 0.99  # small and medium documents: nearly anything
    if decoded >= _ALIAS_RATIO_HIGH:
        return 0.10
    span = _ALIAS_RATIO_HIGH - _ALIAS_RATIO_LOW
    return 0.99 - 0.89 * (decoded - _ALIAS_RATIO_LOW) / span


def excessive_aliasing(root: yaml.Node) -> yaml.Node | None:
    """The node where expanding ``root``'s aliases turns into a "billion laughs", or None.

    A few hundred bytes of anchors that alias each other expand exponentially: PyYAML's
    constructors share what an alias points at, but anything that walks the result (our
    converter, a list of target groups) pays for every copy (fuzzing: 258 bytes of config took
    6 s and 120 MB). The nodes are walked as a conversion would, counting every node and those
    reached through an alias, with Go yaml.v2's limit (``decode.go``, "document contains
    excessive aliasing"): past 1,000 nodes and 100 aliased ones, at most 99 % may be aliased,
    down to 10 % from 400,000 to 4,000,000 nodes. A recursive alias is not followed (the
    converter reports it).
    """
    decoded = aliased = 0
    seen: set[int] = set()
    active: set[int] = set()
    stack: list[tuple[yaml.Node, bool, bool]] = [(root, False, False)]
    while stack:
        node, in_alias, leaving = stack.pop()
        key = id(node)
        if leaving:
            active.discard(key)
            continue
        if key in active:
            continue
        in_alias = in_alias or key in seen  # the first visit, in document order, is the anchor
        seen.add(key)
        decoded += 1
        aliased += in_alias
        if aliased > 100 and decoded > 1000 and aliased / decoded > _allowed_alias_ratio(decoded):
            return node
        if isinstance(node, yaml.SequenceNode):
            children = list(node.value)
        elif isinstance(node, yaml.MappingNode):
            children = [child for pair in node.value for child in pair]
        else:
            continue
        active.add(key)
        stack.append((node, in_alias, True))
        stack.extend((child, in_alias, False) for child in reversed(children))
    return None


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
