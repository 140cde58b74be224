"""The ``dev`` extra is the whole truth: ``pip install -e '.[dev]'`` in a fresh venv runs the suite.

A green CI once hid a missing test dependency (``looptime``) that the CI machine happened to have
installed by hand. These tests compare what the suite really uses (the third-party modules that
tests/ and benchmarks/ import, and the pytest plugins loaded right now) with what the installed
``collector`` distribution declares, so a new import without a new requirement fails here on the
developer's machine, not on somebody's fresh clone.
"""

from __future__ import annotations

import ast
import importlib.metadata
import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
_OURS = {"collector", "tests", "benchmarks"}


def _canonical(name: str) -> str:
    """PEP 503 normalised distribution name."""
    return re.sub(r"[-_.]+", "-", name).lower()


def _declared() -> tuple[set[str], set[str]]:
    """(runtime requirements, dev-extra requirements) of the installed ``collector``."""
    runtime: set[str] = set()
    dev: set[str] = set()
    for requirement in importlib.metadata.requires("collector") or []:
        name = _canonical(re.split(r"[\s<>=!~;\[]", requirement, maxsplit=1)[0])
        if "extra ==" in requirement:
            if re.search(r"""extra\s*==\s*["']dev["']""", requirement):
                dev.add(name)
        else:
            runtime.add(name)
    return runtime, dev


def _imported_top_level(folder: Path) -> dict[str, Path]:
    """Every top-level module imported anywhere under ``folder`` (absolute imports only)."""
    found: dict[str, Path] = {}
    for path in sorted(folder.rglob("*.py")):
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                found.setdefault(name.split(".")[0], path)
    return found


def test_every_third_party_import_of_the_suite_is_declared() -> None:
    """tests/ and benchmarks/ import only the stdlib, our packages and declared requirements."""
    runtime, dev = _declared()
    providers = importlib.metadata.packages_distributions()
    undeclared = []
    for folder in ("tests", "benchmarks"):
        for module, where in _imported_top_level(ROOT / folder).items():
            if module in sys.stdlib_module_names or module in _OURS or module == "__future__":
                continue
            dists = {_canonical(d) for d in providers.get(module, [])}
            if not dists:
                undeclared.append(f"{where.relative_to(ROOT)}: {module} (not installed at all)")
            elif not dists & (runtime | dev):
                undeclared.append(f"{where.relative_to(ROOT)}: {module} from {sorted(dists)}")
    assert not undeclared, "add these to [project.optional-dependencies] dev:\n" + "\n".join(
        undeclared
    )


def test_every_loaded_pytest_plugin_is_declared(pytestconfig: pytest.Config) -> None:
    """Plugins pytest loaded from distributions (looptime, pytest-asyncio, ...) are in ``dev``:
    the suite's markers and fixtures depend on them."""
    _, dev = _declared()
    loaded = {
        _canonical(dist.project_name)
        for _, dist in pytestconfig.pluginmanager.list_plugin_distinfo()
    }
    assert "looptime" in loaded  # the plugin whose absence once broke a fresh machine
    missing = sorted(loaded - dev - {"pytest"})
    assert not missing, f"pytest plugins loaded but not in the dev extra: {missing}"


def test_the_declaration_check_sees_a_missing_requirement() -> None:
    """The comparison above can fail: a module no requirement provides is reported."""
    runtime, dev = _declared()
    providers = importlib.metadata.packages_distributions()
    assert "pytest" in dev
    assert "aiohttp" in runtime
    # _pytest ships with pytest, which dev declares; pip ships with the venv, which nobody does.
    assert {_canonical(d) for d in providers["_pytest"]} & dev
    assert not {_canonical(d) for d in providers.get("pip", ["pip"])} & (runtime | dev)
