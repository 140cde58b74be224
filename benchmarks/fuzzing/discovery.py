"""Fuzz targets of file_sd and http_sd documents (a list of ``{targets, labels}``).

- ``file_sd``: the input is written to a ``.json`` and (up to `MAX_YAML_SIZE`) a ``.yml``
  file and each is read with `collector.discovery.file.read_file`, which documents
  `DiscoveryError` as its only error.
- ``http_sd``: `HTTPDiscoverer.fetch` with a session that answers 200,
  ``application/json`` and the input as the body; `DiscoveryError` only. One discoverer serves
  every input, so shrinking lists (the empty groups that delete old sources) are covered too.

Both check what they return: groups whose targets and labels are all strings. Edits: tree
edits of the decoded document (written back as JSON, which is also YAML, or as block YAML),
YAML anchors and aliases (a "billion laughs" ladder), and the byte edits of `Mutator`.

Prometheus counterpart: ``discovery/file/file_test.go``, ``discovery/http/http_test.go``.
"""

from __future__ import annotations

import random
import shutil
import tempfile
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, cast

import aiohttp
import orjson
import yaml

from benchmarks.fuzzing.harness import Target, Violation
from benchmarks.fuzzing.mutate import Mutator, alias_ladder
from benchmarks.fuzzing.trees import collect_keys, dump_json, expanded_size, mutate_tree
from collector.config import HTTPSDConfig
from collector.discovery.file import read_file
from collector.discovery.http import HTTPDiscoverer
from collector.errors import DiscoveryError
from collector.model.targetgroup import TargetGroup

__all__ = ["MAX_YAML_SIZE", "run_sync", "sd_seeds", "targets", "tree_edit"]

_TREE_NODES = 20_000
"""Trees larger than this (shared subtrees counted each time) are not edited as trees."""

_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

MAX_YAML_SIZE = 256 * 1024
"""Largest input also read as a ``.yml`` file (every input is read as ``.json``). PyYAML builds
Python objects at ~0.45 s per MiB of target groups even over libyaml with the garbage collector
paused (measured: 1 MiB of groups 0.41-0.46 s of CPU), and up to ~2.4 s per MiB for nested
lists 63 deep (one node every two bytes), so a YAML file past ~400 KB can take over the 1 s
limit whatever it holds. Files are written by local tooling, not sent by peers (http_sd, the
network-facing one, is JSON only and takes every size)."""

SEEDS = Path(__file__).resolve().parents[2] / "tests" / "fixtures" / "fuzz" / "seeds" / "sd"

TOKENS = [
    b'"targets"',
    b'"labels"',
    b"targets:",
    b"labels:",
    b"- ",
    b"&a ",
    b"*a",
    b"<<: *a",
    b"!!binary ",
    b"!!python/object:os.system ",
    b"!!set ",
    b"? ",
    b"---\n",
    b"...\n",
    b"null",
    b"~",
    b"[",
    b"]",
    b"{",
    b"}",
    b":",
    b",",
    b'"',
    b"'",
    b"\t",
]


def sd_seeds() -> list[bytes]:
    """The file_sd/http_sd seed documents."""
    return [path.read_bytes() for path in sorted(SEEDS.iterdir())]


def _load(data: bytes) -> object:
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        pass
    try:
        return yaml.load(data, Loader=_LOADER)
    except Exception:  # any unreadable input is edited as bytes instead (PyYAML's own
        return None  # constructors raise KeyError/AttributeError on `!!bool xyz`/`!!timestamp xyz`)


def tree_edit(keys: list[str], *, max_size: int) -> Any:
    """An edit that decodes a JSON/YAML document, edits the tree and writes it back."""

    def edit(rng: random.Random, data: bytes) -> bytes:
        if len(data) > 64 * 1024:
            return data  # decoding and writing back a huge document would be the slow part
        tree = _load(data)
        if expanded_size(tree, cap=_TREE_NODES) >= _TREE_NODES:
            return data  # aliases that expand a lot: the text edits handle those
        tree = mutate_tree(rng, tree, keys)
        out = dump_json(tree, ascii_only=rng.random() < 0.1, limit=max_size)
        if len(out) < 16 * 1024 and rng.random() < 0.3:
            try:
                text = yaml.safe_dump(tree, allow_unicode=True, default_flow_style=False)
            except (yaml.YAMLError, RecursionError):
                return out
            return text.encode("utf-8", "surrogateescape")
        return out

    return edit


def _aliases(rng: random.Random, data: bytes) -> bytes:
    """A group list whose targets are an alias ladder, or a ladder before the document."""
    if rng.random() < 0.5:
        width = rng.randint(2, 200)
        group = b"- &g {targets: [" + b",".join([b"a:1"] * width) + b"]}\n"
        return group + b"- *g\n" * rng.randint(1, 20_000)
    return alias_ladder(rng, prefix=b"# ") + data if rng.random() < 0.1 else alias_ladder(rng)


def _check_groups(groups: list[TargetGroup]) -> None:
    for group in groups:
        for target in group.targets:
            if not all(type(k) is str and type(v) is str for k, v in target.items()):
                raise Violation("sd targets: a target label is not a string")
        if not all(type(k) is str and type(v) is str for k, v in group.labels.items()):
            raise Violation("sd labels: a group label is not a string")


class _Reply:
    """The response of `_Session.get`: 200, JSON, the body."""

    status = 200
    reason = "OK"

    def __init__(self, body: bytes) -> None:
        self.headers = {"Content-Type": "application/json; charset=utf-8"}
        self._body = body

    async def __aenter__(self) -> _Reply:
        return self

    async def __aexit__(self, *_: object) -> None:
        return None

    async def read(self) -> bytes:
        """The body."""
        return self._body


class _Session:
    """An ``aiohttp.ClientSession`` whose every GET answers the current input."""

    def __init__(self) -> None:
        self.body = b""

    def get(self, _url: str, **_: object) -> _Reply:
        """A reply with the current body."""
        return _Reply(self.body)


def run_sync(coro: Coroutine[Any, Any, Any]) -> Any:
    """Run a coroutine that never waits (fakes answer at once) without an event loop."""
    try:
        coro.send(None)
    except StopIteration as stop:
        return stop.value
    coro.close()
    raise Violation("run_sync: the coroutine waited for something")


def targets(*, max_size: int) -> list[Target]:
    """``file_sd`` and ``http_sd``."""
    seeds = sd_seeds()
    trees = [_load(seed) for seed in seeds]
    keys = [*collect_keys(trees), "targets", "labels"]
    mutator = Mutator(
        seeds,
        tokens=TOKENS,
        nest=[(b"[", b"]"), (b"{a: ", b"}"), (b"- ", b"")],
        extra=[tree_edit(keys, max_size=max_size), tree_edit(keys, max_size=max_size), _aliases],
        max_size=max_size,
    )
    folder = Path(tempfile.mkdtemp(prefix="fuzz-sd-", dir=_tmp_root()))
    json_path, yaml_path = folder / "sd.json", folder / "sd.yml"

    def check_file(data: bytes) -> None:
        """`read_file` of the input as ``.json`` and as ``.yml``: `DiscoveryError` only."""
        for path in (json_path, yaml_path) if len(data) <= MAX_YAML_SIZE else (json_path,):
            path.write_bytes(data)
            try:
                groups = read_file(str(path))
            except DiscoveryError:
                continue
            _check_groups(groups)

    session = _Session()
    discoverer = HTTPDiscoverer(HTTPSDConfig(url="http://sd.invalid/targets"))

    def check_http(data: bytes) -> None:
        """`HTTPDiscoverer.fetch` answering the input: `DiscoveryError` only."""
        session.body = data
        try:
            groups = run_sync(discoverer.fetch(cast("aiohttp.ClientSession", session)))
        except DiscoveryError:
            return
        _check_groups(groups)

    # Memory: PyYAML keeps a node (with two marks) per scalar: ~1 KB for "a," in a flow list.
    return [
        Target(
            name="file_sd",
            summary="read_file of a .json and a .yml file; DiscoveryError only",
            check=check_file,
            mutate=mutator.mutate,
            seeds=seeds,
            memory_factor=2048,
            close=lambda: shutil.rmtree(folder, ignore_errors=True),
        ),
        Target(
            name="http_sd",
            summary="HTTPDiscoverer.fetch of a JSON body; DiscoveryError only",
            check=check_http,
            mutate=mutator.mutate,
            seeds=seeds,
            memory_factor=256,
            carries_state=True,  # the discoverer diffs each answer against the last one
        ),
    ]


def _tmp_root() -> str | None:
    """``/dev/shm`` when there is one: a file per input, twice, stays off the disk."""
    shm = Path("/dev/shm")
    return str(shm) if shm.is_dir() else None
