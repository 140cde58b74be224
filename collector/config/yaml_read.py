"""Reading YAML safely: the loader that the config and file_sd documents go through.

The config (`collector.config.yaml_tree`) composes nodes with `Loader` and converts them
itself; file_sd (`collector.discovery.file`) takes plain Python values from `safe_load`. Both
stand on libyaml's parser (C) and share the hardening that fuzzing asked for: a nesting depth
limit, Go yaml.v2's excessive-aliasing rule, explicit tags that cannot crash a constructor, and
syntax errors worded and line-numbered as yaml.v2 words them (`go_line`).

Prometheus counterpart: ``gopkg.in/yaml.v2`` as ``config.LoadFile`` and
``discovery/file`` use it.
"""

from __future__ import annotations

import datetime
from typing import Any, cast

import yaml

from collector.gcpause import gc_paused

__all__ = [
    "MAX_DEPTH",
    "Loader",
    "StrictConstructor",
    "excessive_aliasing",
    "go_line",
    "safe_load",
    "too_deep",
]


def go_line(exc: yaml.MarkedYAMLError) -> str:
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


MAX_DEPTH = 64
_TOO_DEEP = f"exceeded maximum nesting depth ({MAX_DEPTH})"


class _UnknownAnchor(yaml.composer.ComposerError):
    """An alias to no anchor, worded as yaml.v2 words it (which names no line)."""


class _DepthLimit(yaml.composer.Composer):
    """PyYAML's composer refusing collections nested deeper than ``MAX_DEPTH``.

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
            if self._depth > MAX_DEPTH:
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

    class Loader(
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

    class Loader(_DepthLimit, StrictConstructor, yaml.SafeLoader):  # type: ignore[no-redef]
        """Pure-Python ``SafeLoader`` with the depth limit on flow levels too.

        PyYAML's scanner rechecks every open flow level on every token, so ``[[[[...`` costs
        quadratic time (fuzzing: 4 KB took 1.2 s).
        """

        def fetch_flow_collection_start(self, TokenClass: type[yaml.Token]) -> None:
            """``[`` or ``{``: one flow level deeper, if allowed."""
            if self.flow_level >= MAX_DEPTH:
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


# The Cython composer of PyYAML's libyaml binding: ~3x faster than `Loader`'s Python composer
# (no depth limit of its own, hence `too_deep` first).
_CSafeLoader: Any = getattr(yaml, "CSafeLoader", None)

_FastLoader: Any = Loader  # PyYAML built without libyaml

if _CSafeLoader is not None:

    class _CStrictLoader(StrictConstructor, _CSafeLoader):  # type: ignore[misc]
        """libyaml's parser and composer with `StrictConstructor`."""

    _FastLoader = _CStrictLoader


def too_deep(content: bytes | str) -> yaml.Mark | None:
    """Where ``content`` first nests flow collections (``[``, ``{``) deeper than `MAX_DEPTH`.

    libyaml rechecks every open flow level on every token, so ``[[[[...`` 991 levels deep
    costs quadratic time (fuzzing: 250 KB took 0.5 s in the parser alone, 1.7 s with PyYAML's
    composer), and the composer we use for speed has no limit of its own (libyaml stops at
    1,000 levels). Block levels cost nothing of the kind and are left to that limit. Only
    events are read (C), and only when the text holds more brackets than the limit, so that
    the count bounds the depth; a syntax error is left to the load that follows, which reports
    it.
    """
    opening = ("[", "{") if isinstance(content, str) else (b"[", b"{")
    if content.count(opening[0]) + content.count(opening[1]) <= MAX_DEPTH:  # type: ignore[arg-type]
        return None
    parser = _CParser(content) if _CParser is not None else yaml.SafeLoader(content)
    depth = 0
    open_flows: list[bool] = []  # per open collection: flow style?
    try:
        while parser.check_event():
            event = parser.get_event()
            if isinstance(event, yaml.CollectionStartEvent):
                flow = bool(event.flow_style)
                open_flows.append(flow)
                depth += flow
                if depth > MAX_DEPTH:
                    return cast("yaml.Mark", event.start_mark)
            elif isinstance(event, yaml.CollectionEndEvent):
                depth -= open_flows.pop()
    except yaml.YAMLError:
        return None
    finally:
        parser.dispose()
    return None


def safe_load(content: bytes) -> object:
    """``yaml.safe_load`` for plain-value documents (file_sd), hardened; raises `yaml.YAMLError`.

    On top of PyYAML: the depth limit (`too_deep`), excessive aliasing refused as yaml.v2
    refuses it (an alias ladder expands to far more groups than the file holds), explicitly
    tagged values that cannot crash (`StrictConstructor`), an over-long integer refused, and no
    cyclic garbage collection while the objects are built: a document is thousands of new
    containers at once, none garbage, and the collections they triggered cost more than the
    load itself (fuzzing: 143 KB of nested lists 1.04 s with them, 0.19 s without).
    """
    mark = too_deep(content)
    if mark is not None:
        raise yaml.composer.ComposerError("while composing a node", mark, _TOO_DEEP, mark)
    loader = _FastLoader(content)
    try:
        with gc_paused():
            node = loader.get_single_node()
            if node is None:
                return None
            if excessive_aliasing(node) is not None:
                raise yaml.YAMLError("document contains excessive aliasing")
            return loader.construct_document(node)
    except RecursionError:
        raise yaml.YAMLError("document is nested too deeply") from None
    except ValueError as exc:  # an integer of over 4,300 digits: int()'s limit (fuzzing)
        raise yaml.YAMLError(f"unreadable value: {exc}") from None
    finally:
        loader.dispose()
