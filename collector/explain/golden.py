"""Golden relabel tests: ``collector test relabel CASES.yml``.

Place in the pipeline: beside it (see `collector.explain`). A cases file names a rule chain
and, per case, an input label set and the exact label set the rules must return, or that they
drop it::

    relabel_configs: [ ... ]      # or: config_file: F, job: J [, stage: target|metric|write:<name>]
    tests:
      - name: keeps annotated pods
        input: {__address__: "10.0.0.1:8080", __meta_..._scrape: "true"}
        output: {__address__: "10.0.0.1:8080", __meta_..._scrape: "true"}
      - name: drops the rest
        input: {__address__: "10.0.0.2:8080"}
        dropped: true

The input goes to the rules exactly as written, at every stage: nothing is added before them
(no job defaults, target labels or external labels) and nothing happens after them (no
``instance`` default, no removal of ``__`` labels). ``output`` is compared with every label the
rules return, ``__meta_*`` and ``__tmp*`` included, as Prometheus's ``relabel.Process`` returns
it; ``""`` means absent on both sides. ``dropped: true`` means a rule dropped the set; rules that
merely remove every label return ``output: {}``.

The file is read with the config loader's YAML reader, so ``8080`` or ``true`` written unquoted
are the strings ``"8080"`` and ``"true"`` (as Go's YAML decoding into strings gives them) and
problems name their line. Exit codes: 0 every case passed, 1 a case failed (each failure is
printed with a diff), 2 the file is invalid.

Prometheus counterpart: none; ``promtool test rules`` is the model for the workflow.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from collector.config import AgentOptions, load_config
from collector.config.yaml_tree import Scalar, Tree, compose, idx, join, relabel_plain
from collector.errors import CollectorError, ConfigError
from collector.explain.core import compiled, remote_write_config, scrape_config
from collector.explain.render import Style, describe_drop
from collector.model.relabel import Relabeler, parse_rule
from collector.model.relabel_steps import trace_rules

__all__ = ["Case", "Suite", "check_case", "load_suite", "run_files"]

_TOP_KEYS = ("relabel_configs", "config_file", "job", "stage", "tests")
_CASE_KEYS = ("name", "input", "output", "dropped")


@dataclass(frozen=True, slots=True, kw_only=True)
class Case:
    """One golden case."""

    name: str
    where: str
    """``file:line`` of the case, for the report."""
    input: Mapping[str, str]
    output: Mapping[str, str] | None
    """The exact expected labels; None when the case expects a drop."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Suite:
    """A loaded cases file."""

    file: str
    rules: str
    """What is under test, for the report (``relabel_configs`` or ``job "x" target stage``)."""
    relabeler: Relabeler
    cases: tuple[Case, ...]


def _labels(tree: Tree, *, fail: _Fail, path: str) -> dict[str, str]:
    """A ``{name: value}`` mapping; scalars keep their text, null is ``""``."""
    if tree is None:
        return {}
    if not isinstance(tree, dict):
        raise fail(path, "must be a mapping of label names to values")
    out = {}
    for name, value in tree.items():
        if not name:
            raise fail(path, "label names must not be empty")
        if isinstance(value, Scalar):
            out[name] = value.text
        elif value is None or isinstance(value, str):
            out[name] = value or ""
        else:
            raise fail(join(path, name), "label values must be strings")
    return out


class _Fail:
    """Builds `ConfigError`s located in one cases file (``file:line:column: path: message``)."""

    def __init__(self, file: str, locations: Mapping[str, tuple[int, int]]) -> None:
        self.file = file
        self.locations = locations

    def __call__(self, path: str, message: str) -> ConfigError:
        line, column = self.locations.get(path, (0, 0))
        return ConfigError(message, path=path, file=self.file, line=line, column=column)


def load_suite(file: str) -> Suite:
    """Read and validate a cases file; raises a located `ConfigError` for the first problem."""
    try:
        text = Path(file).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read: {exc}", file=file) from exc
    composed = compose(text, file=file)
    if composed.problems:
        raise composed.problems[0]
    fail = _Fail(file, composed.locations)
    root = composed.tree
    if not isinstance(root, dict):
        raise fail("", "must be a mapping with relabel_configs (or config_file and job) and tests")
    for key in root:
        if key not in _TOP_KEYS:
            raise fail(key, f"unknown key (expected one of {', '.join(_TOP_KEYS)})")
    rules, relabeler = _rules(root, fail, base=Path(file).parent)
    tests = root.get("tests")
    if not isinstance(tests, list) or not tests:
        raise fail("tests", "must be a non-empty list of cases")
    cases = tuple(_case(item, idx("tests", i), fail) for i, item in enumerate(tests))
    return Suite(file=file, rules=rules, relabeler=relabeler, cases=cases)


def _rules(root: dict[str, Tree], fail: _Fail, *, base: Path) -> tuple[str, Relabeler]:
    """The chain under test: inline ``relabel_configs`` or a stage of a job in a config file."""
    if "relabel_configs" in root:
        for key in ("config_file", "job", "stage"):
            if key in root:
                raise fail(key, "give either relabel_configs or config_file and job, not both")
        items = root["relabel_configs"]
        if not isinstance(items, list):
            raise fail("relabel_configs", "must be a list of relabel rules")
        rules = []
        for i, item in enumerate(items):
            path = idx("relabel_configs", i)
            try:
                rules.append(parse_rule(relabel_plain(item), context="target"))
            except ConfigError as exc:
                raise fail(join(path, exc.path) if exc.path else path, exc.message) from exc
        return "relabel_configs", compiled(tuple(rules))
    config_file, job, stage = root.get("config_file"), root.get("job"), root.get("stage", "target")
    if not isinstance(config_file, str) or not config_file:
        raise fail("", "needs relabel_configs, or config_file and job")
    if not isinstance(job, str) or not job:
        raise fail("job", "config_file needs the job whose rules are tested")
    if not isinstance(stage, str) or not (
        stage in ("target", "metric") or stage.startswith("write:")
    ):
        raise fail("stage", 'must be "target", "metric" or "write:<remote_write name>"')
    config_path = base / config_file
    try:
        config = load_config(str(config_path), env=AgentOptions().config_env(os.environ))
    except ConfigError as exc:
        raise fail("config_file", f"{config_path} is invalid:\n{exc.render()}") from exc
    try:
        scrape = scrape_config(config, job)
    except CollectorError as exc:
        raise fail("job", f"{exc} in {config_path}") from exc
    if stage == "target":
        chain = scrape.relabel_configs
    elif stage == "metric":
        chain = scrape.metric_relabel_configs
    else:
        try:
            remote = remote_write_config(config, stage.removeprefix("write:"))
        except CollectorError as exc:
            raise fail("stage", str(exc)) from exc
        chain = remote.write_relabel_configs
    return f"job {job!r}, {stage} stage, of {config_path}", compiled(chain)


def _case(item: Tree, path: str, fail: _Fail) -> Case:
    if not isinstance(item, dict):
        raise fail(path, "a case must be a mapping with name, input and output (or dropped)")
    for key in item:
        if key not in _CASE_KEYS:
            raise fail(join(path, key), f"unknown key (expected one of {', '.join(_CASE_KEYS)})")
    name = item.get("name")
    if isinstance(name, Scalar):
        name = name.text
    if name is not None and not isinstance(name, str):
        raise fail(join(path, "name"), "must be a string")
    if "input" not in item:
        raise fail(path, "needs input")
    labels = _labels(item["input"], fail=fail, path=join(path, "input"))
    dropped = item.get("dropped")
    if dropped is not None and not (
        isinstance(dropped, Scalar) and isinstance(dropped.value, bool)
    ):
        raise fail(join(path, "dropped"), "must be true or false")
    expects_drop = isinstance(dropped, Scalar) and dropped.value is True
    if expects_drop and "output" in item:
        raise fail(path, "give output or dropped: true, not both")
    if not expects_drop and "output" not in item:
        raise fail(path, "needs output (the exact labels the rules return) or dropped: true")
    output = None if expects_drop else _labels(item["output"], fail=fail, path=join(path, "output"))
    line = fail.locations.get(path)
    return Case(
        name=name or f"case {path}",
        where=f"{fail.file}:{line[0]}" if line else fail.file,
        input=labels,
        output=None if output is None else {k: v for k, v in output.items() if v},
    )


def check_case(case: Case, relabeler: Relabeler, style: Style) -> list[str]:
    """The report lines of a failing case; empty when it passes."""
    trace = trace_rules(case.input, relabeler)
    dropped = trace.dropped_by >= 0
    if case.output is None:
        if dropped:
            return []
        return [
            "expected the rules to drop the labels; they returned:",
            *_diff({}, trace.output, style, show_all=True),
        ]
    if dropped:
        step = trace.dropped_by
        before = trace.steps[step - 1].output if step else trace.input
        rule = trace.steps[step].rule
        return [
            f"expected labels, but rule {step + 1} ({rule.action}) dropped them: "
            + describe_drop(rule, before)
        ]
    if dict(trace.output) == case.output:
        return []
    return ["labels differ (- expected, + got):", *_diff(case.output, trace.output, style)]


def _diff(
    expected: Mapping[str, str], got: Mapping[str, str], style: Style, *, show_all: bool = False
) -> list[str]:
    lines = []
    same = 0
    for name in sorted(set(expected) | set(got)):
        want, have = expected.get(name), got.get(name)
        if want == have:
            same += 1
            continue
        if want is not None:
            lines.append("    " + style.paint("31", f"- {name}={_q(want)}"))
        if have is not None:
            lines.append("    " + style.paint("32", f"+ {name}={_q(have)}"))
    if same and not show_all:
        lines.append(f"      ({same} other label(s) as expected)")
    if not lines:
        lines.append("    (no labels)")
    return lines


def _q(value: str) -> str:
    return json.dumps(value, ensure_ascii=False)


def run_files(files: Sequence[str], *, out: TextIO, err: TextIO, style: Style) -> int:
    """Run every cases file; the exit code is the worst: 2 invalid, 1 failed, 0 passed."""
    worst = 0
    for file in files:
        print(f"Testing {file}", file=out)
        try:
            suite = load_suite(file)
        except ConfigError as exc:
            print(f"  INVALID: {exc.render()}", file=err)
            worst = 2
            continue
        failed = 0
        for case in suite.cases:
            report = check_case(case, suite.relabeler, style)
            if not report:
                continue
            failed += 1
            print(f"  FAILED: {case.name} ({case.where})", file=out)
            for line in report:
                print(f"    {line}", file=out)
        total = len(suite.cases)
        if failed:
            print(f"  {failed} of {total} case(s) failed ({suite.rules})", file=out)
            worst = max(worst, 1)
        else:
            print(f"  SUCCESS: {total} case(s) passed ({suite.rules})", file=out)
    return worst
