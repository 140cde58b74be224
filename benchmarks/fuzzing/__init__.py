"""Fuzzing the agent's hostile-input surfaces (issue 13 §2): targets, mutator, harness.

Modules: `harness` (the contract checked per input, runs, crash files), `mutate` (the
structured mutator), `trees` (its edits of JSON/YAML trees), `coverage` (the same targets
under atheris/libFuzzer, coverage-guided), and one module of targets per area: `textparse`
(text, OpenMetrics, stream, incremental), `remote` (the remote-write codec and receiver),
`scrape` (the scrape's HTTP response reader), `kubernetes` (watch streams into the informer
and the role converters), `discovery` (file_sd and http_sd documents) and `config` (the
config loader). The command line is `benchmarks.fuzz`.

Target modules are imported by `load_targets` only when asked for, so that the coverage
engine can instrument `collector` before anything imports it.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence

from benchmarks.fuzzing.harness import Target

__all__ = ["MODULES", "TARGETS", "load_targets"]

MODULES = {
    "text": "textparse",
    "openmetrics": "textparse",
    "stream": "textparse",
    "incremental": "textparse",
    "remote_codec": "remote",
    "remote_receiver": "remote",
    "scrape_http": "scrape",
    "k8s_watch": "kubernetes",
    "file_sd": "discovery",
    "http_sd": "discovery",
    "config": "config",
}
"""Target name -> the module of `benchmarks.fuzzing` that defines it (report order)."""

TARGETS = tuple(MODULES)


def load_targets(names: Sequence[str], *, max_size: int) -> list[Target]:
    """The named targets, in ``TARGETS`` order (inputs up to ``max_size`` bytes)."""
    unknown = sorted(set(names) - set(MODULES))
    if unknown:
        raise ValueError(f"unknown fuzz targets: {', '.join(unknown)}")
    found: dict[str, Target] = {}
    for module_name in dict.fromkeys(MODULES[name] for name in names):
        module = importlib.import_module(f"benchmarks.fuzzing.{module_name}")
        for target in module.targets(max_size=max_size):
            found[target.name] = target
    return [found[name] for name in TARGETS if name in names]
