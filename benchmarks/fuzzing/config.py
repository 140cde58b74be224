"""Fuzz target of the config loader (`collector.config.load_config` / `load_config_text`).

``config``: the input is written to ``collector.yml`` in a directory of its own and loaded with
`load_config` (strict UTF-8 decoding, then `load_config_text` with the directory as the base
of relative paths and an empty environment). `ConfigError` (with `ConfigFileError`) is the
only error either documents. A config that loads must render back
(`collector.config.redacted_yaml`, what ``/api/v1/status/config`` serves).

Seeds: the shipped configs (``config/``, ``deploy/base/config/``) and the fuzz seeds of
``tests/fixtures/fuzz/seeds/config``. Edits: tree edits of the YAML (keys of every section in
the wrong place, values of the wrong type, huge lists, deep nesting) written back as block
YAML or as JSON, odd durations, sizes and Go regexes, YAML anchors/aliases/merge keys/tags
(an alias ladder: a "billion laughs"), and the byte edits of `Mutator`.

Prometheus counterpart: ``config/config_test.go`` (table tests; no fuzzer).
"""

from __future__ import annotations

import random
import shutil
import tempfile
from pathlib import Path

import yaml

from benchmarks.fuzzing.discovery import tree_edit
from benchmarks.fuzzing.harness import Target
from benchmarks.fuzzing.mutate import Mutator, alias_ladder
from benchmarks.fuzzing.trees import collect_keys
from collector.config import load_config, redacted_yaml
from collector.errors import ConfigError

__all__ = ["config_seeds", "targets"]

ROOT = Path(__file__).resolve().parents[2]

TOKENS = [
    b"scrape_configs:\n- job_name: j\n",
    b"  relabel_configs:\n  - source_labels: [a]\n    regex: ",
    b"regex: ",
    b"'(a*)*b'",
    b"'(a{1000}){1000}'",
    b"'(?P<x>a)(?P<x>b)'",
    b"'\\\\'",
    b"'[[:alpha:]]'",
    b"'\\\\pL'",
    b"'(?i)K'",
    b"action: ",
    b"hashmod",
    b"labelmap",
    b"keepequal",
    b"modulus: 0",
    b"scrape_interval: ",
    b"5x",
    b"1y2w3d4h5m6s7ms",
    b"0s",
    b"-1s",
    b"999999999999y",
    b"body_size_limit: ",
    b"1EB",
    b"sample_limit: ",
    b"${VAR}",
    b"$$",
    b"${",
    b"&a ",
    b"*a",
    b"<<: *a",
    b"!!binary aGk=",
    b"!!python/object/apply:os.system ['true']",
    b"!!timestamp 2001-12-14",
    b"!!int abc",
    b"? [complex, key]\n: v\n",
    b"---\n",
    b"%YAML 1.1\n---\n",
    b"kubernetes_sd_configs:\n- role: pod\n",
    b"file_sd_configs:\n- files: ['*.json']\n",
    b"scrape_config_files: ['*']\n",
    b"remote_write:\n- url: http://x/\n",
    b"url: ",
    b"http://[::1",
    b"\t",
]


def config_seeds() -> list[bytes]:
    """The shipped configs and the fuzz seed configs."""
    paths = sorted((ROOT / "config").rglob("*.yml"))
    paths += sorted((ROOT / "deploy" / "base" / "config").glob("*.yml"))
    paths += sorted((ROOT / "tests" / "fixtures" / "fuzz" / "seeds" / "config").glob("*.yml"))
    return [path.read_bytes() for path in paths]


def _ladder(rng: random.Random, data: bytes) -> bytes:
    """An alias ladder before the config, or in place of a relabel rule's value."""
    ladder = alias_ladder(rng)
    return ladder + data if rng.random() < 0.5 else ladder


MAX_SIZE = 64 * 1024
"""Largest config input. PyYAML's pure-Python parser reads ~100 KB/s (linear, measured), so a
config past ~100 KB takes over the 1 s limit to load whatever its content; configs are written
by operators, not sent by peers, and the largest shipped one is a few KB."""


def targets(*, max_size: int) -> list[Target]:
    """``config`` (inputs up to the smaller of ``max_size`` and `MAX_SIZE`)."""
    max_size = min(max_size, MAX_SIZE)
    seeds = config_seeds()
    keys = collect_keys([yaml.safe_load(seed) for seed in seeds])
    mutator = Mutator(
        seeds,
        tokens=TOKENS,
        nest=[(b"[", b"]"), (b"{a: ", b"}"), (b"- ", b"")],
        extra=[tree_edit(keys, max_size=max_size), tree_edit(keys, max_size=max_size), _ladder],
        max_size=max_size,
    )
    folder = Path(tempfile.mkdtemp(prefix="fuzz-config-"))
    path = folder / "collector.yml"

    def check(data: bytes) -> None:
        """`load_config` of the input; `ConfigError` only; a loaded config renders."""
        path.write_bytes(data)
        try:
            config = load_config(str(path), env={})
        except ConfigError:
            return
        redacted_yaml(config)

    # Memory: PyYAML keeps a node (with two marks) per scalar, and every node's path and
    # location are recorded for error messages.
    return [
        Target(
            name="config",
            summary="load_config (load_config_text) + redacted_yaml; ConfigError only",
            check=check,
            mutate=mutator.mutate,
            seeds=seeds,
            memory_factor=2048,
            close=lambda: shutil.rmtree(folder, ignore_errors=True),
        )
    ]
