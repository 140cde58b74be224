"""Tree edits for targets whose input is a JSON or YAML document, and writing trees back.

`mutate_tree` edits a decoded tree in place: a node replaced by a value of another type
(`odd_value`: null, huge integers, NaN, odd unicode, long strings, deep nesting), a subtree
copied elsewhere, a node deleted or repeated, keys seen anywhere in the seeds added in the
wrong place. `dump_json` writes any tree back, however deep or shared, within a size limit.
Everything draws from the `random.Random` passed in.
"""

from __future__ import annotations

import copy
import json
import random
from collections.abc import Sequence
from json.encoder import encode_basestring as _ENCODE
from json.encoder import encode_basestring_ascii as _ENCODE_ASCII

import orjson

from benchmarks.fuzzing.mutate import ODD_UNICODE

__all__ = ["Tree", "collect_keys", "dump_json", "expanded_size", "mutate_tree", "odd_value"]

Tree = object
"""A decoded JSON/YAML value: dict, list, str, int, float, bool or None."""


def odd_value(rng: random.Random, keys: Sequence[str]) -> object:
    """A value of a random JSON type, often an odd one."""
    kind = rng.randrange(14)
    if kind == 0:
        return None
    if kind == 1:
        return rng.choice((True, False))
    if kind == 2:
        return rng.choice((0, -1, 1 << 31, 1 << 63, -(1 << 63) - 1, 1 << 64, 10**400))
    if kind == 3:
        return rng.choice((0.5, -0.0, 1e308, float("inf"), float("nan")))
    if kind == 4:
        return ""
    if kind == 5:
        return rng.choice(ODD_UNICODE).decode("utf-8", "surrogateescape")
    if kind == 6:
        return "x" * int(10 ** rng.uniform(1, 5.5 if rng.random() < 0.2 else 3))
    if kind == 7:
        return []
    if kind == 8:
        return {}
    if kind == 9:
        return [odd_value(rng, keys) for _ in range(rng.randint(1, 3))]
    if kind == 10:
        return {rng.choice(keys) if keys else "k": odd_value(rng, keys)}
    if kind == 11:
        value: object = "x"
        for _ in range(int(10 ** rng.uniform(1, 3.2))):
            value = [value]
        return value
    if kind == 12:
        return rng.choice(keys) if keys else "k"
    return [rng.choice(keys) if keys else "k"] * int(
        10 ** rng.uniform(1, 4 if rng.random() < 0.2 else 2)
    )


def _slots(tree: Tree, out: list[tuple[object, object]], budget: int) -> None:
    """Every (container, key-or-index) of ``tree``, depth first, at most ``budget``."""
    stack = [tree]
    while stack and len(out) < budget:
        node = stack.pop()
        if isinstance(node, dict):
            for key, value in node.items():
                out.append((node, key))
                stack.append(value)
        elif isinstance(node, list):
            for index, value in enumerate(node):
                out.append((node, index))
                stack.append(value)


def mutate_tree(rng: random.Random, tree: Tree, keys: Sequence[str]) -> Tree:
    """Edit a decoded tree in place (and return it; a scalar root is replaced).

    Picks a slot and replaces its value with an odd one, a copy of another slot's value,
    deletes it, or adds a key from ``keys`` (every key seen in the seeds) next to it.
    """
    slots: list[tuple[object, object]] = []
    _slots(tree, slots, 4096)
    if not slots:
        return odd_value(rng, keys)
    container, key = rng.choice(slots)
    action = rng.randrange(6)
    if action <= 1:
        new = odd_value(rng, keys)
    elif action == 2:
        other, other_key = rng.choice(slots)
        # A copy: the slot may be an ancestor of this one, and a shared one would be a cycle.
        try:
            new = copy.deepcopy(other[other_key])  # type: ignore[index]  # a slot of a dict/list
        except RecursionError:  # a subtree nested past the interpreter's limit (an edit's)
            new = odd_value(rng, keys)
    elif action == 3:
        if isinstance(container, dict | list):
            del container[key]  # type: ignore[arg-type]  # a slot of a dict or list
        return tree
    elif action == 4 and isinstance(container, dict):
        container[rng.choice(keys) if keys else "k"] = odd_value(rng, keys)
        return tree
    else:
        new = [container[key]] * rng.randint(2, 8)  # type: ignore[index]  # a slot
    container[key] = new  # type: ignore[index]  # a slot of a dict or list
    return tree


def collect_keys(trees: Sequence[Tree]) -> list[str]:
    """Every mapping key of the seeds' trees (sorted, for reproducible draws)."""
    keys: set[str] = set()
    for tree in trees:
        slots: list[tuple[object, object]] = []
        _slots(tree, slots, 100_000)
        keys.update(key for container, key in slots if isinstance(key, str))
    return sorted(keys)


class _Text:
    """Punctuation on `dump_json`'s stack."""

    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text


def _scalar(item: object, *, ascii_only: bool) -> str:
    if isinstance(item, str):
        return (_ENCODE_ASCII if ascii_only else _ENCODE)(item)
    if item is None or isinstance(item, bool):
        return "null" if item is None else ("true" if item else "false")
    if isinstance(item, int):
        return str(item)
    if isinstance(item, float):
        if item != item:
            return "NaN"
        if item in (float("inf"), float("-inf")):
            return "Infinity" if item > 0 else "-Infinity"
        return repr(item)
    return _ENCODE(str(item))  # a YAML date or bytes: as a string


def expanded_size(tree: Tree, *, cap: int) -> int:
    """Nodes of ``tree`` with shared subtrees counted each time they appear, up to ``cap``."""
    count = 0
    stack = [tree]
    while stack and count < cap:
        node = stack.pop()
        count += 1
        if isinstance(node, dict):
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return count


def dump_json(tree: Tree, *, ascii_only: bool = False, limit: int = 1 << 24) -> bytes:
    """JSON text of a tree of any depth (``json.dumps`` recurses; edits nest 1,000s deep).

    Writes what strict JSON has no spelling for as Python's ``json`` does (NaN, Infinity,
    integers of any size) and lone surrogates as the bytes they escaped: hostile on purpose.
    Stops after about ``limit`` characters: a tree with shared subtrees (YAML aliases, edits
    that repeat a subtree) can stand for far more text than it holds.
    """
    if expanded_size(tree, cap=limit // 8) < limit // 8:
        # C speed for the common tree (orjson, then json for integers past 64 bits and NaN);
        # the loop below for depths json cannot recurse to, and for trees whose shared
        # subtrees expand past the limit (orjson would write them whole, and it crashes the
        # process when an allocation fails).
        try:
            if not ascii_only:
                return orjson.dumps(tree)[:limit]
        except (orjson.JSONEncodeError, TypeError):
            pass
        try:
            text = json.dumps(tree, ensure_ascii=ascii_only, separators=(",", ":"))
            return text.encode("utf-8", "surrogateescape")[:limit]
        except (RecursionError, TypeError, ValueError, UnicodeEncodeError):
            pass
    out: list[str] = []
    size = 0
    stack: list[object] = [tree]
    while stack and size < limit:
        item = stack.pop()
        if isinstance(item, _Text):
            text = item.text
        elif isinstance(item, dict):
            text = "{"
            stack.append(_Text("}"))
            entries = list(item.items())
            for i in range(len(entries) - 1, -1, -1):
                key, value = entries[i]
                stack.append(value)
                stack.append(_Text(_scalar(str(key), ascii_only=ascii_only) + ":"))
                if i:
                    stack.append(_Text(","))
        elif isinstance(item, list):
            text = "["
            stack.append(_Text("]"))
            for i in range(len(item) - 1, -1, -1):
                stack.append(item[i])
                if i:
                    stack.append(_Text(","))
        else:
            text = _scalar(item, ascii_only=ascii_only)
        out.append(text)
        size += len(text)
    return "".join(out).encode("utf-8", "surrogateescape")
