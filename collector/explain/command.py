"""The command line of ``collector explain target|series`` and ``collector test relabel``.

Place in the pipeline: beside it (see `collector.explain`). `collector.cli` hands the
arguments after ``explain`` / ``test`` to `main`, importing this module only then, so the agent
and ``check config`` never load it.

``explain`` prints the same steps as the API (``-o json`` prints the API's ``data`` object),
from a config file instead of a running agent. ``explain target --labels`` takes the labels
discovery produced; the job's defaults (``job``, ``__scheme__``, ``__metrics_path__``,
intervals, params) are added where absent first, as the scrape pool does, unless
``--no-defaults`` (then the labels go to the rules exactly as given, as the API does).

Exit codes: ``explain`` 0 when it explained, 1 when it could not (config refused, unknown job,
bad labels or series); ``test relabel`` 0 passed, 1 failed, 2 invalid file; 2 for usage errors.

Prometheus counterpart: ``cmd/promtool`` (the shape of a checking command line).
"""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Mapping, Sequence
from typing import TextIO

import orjson

from collector.config import AgentOptions, Config, load_config
from collector.errors import CollectorError, ConfigError, ParseError
from collector.explain.core import explain_series, explain_target, target_json
from collector.explain.golden import run_files
from collector.explain.render import Style, render_series, render_target
from collector.model.relabel_steps import parse_series, series_json

__all__ = ["main"]


def _parsers() -> tuple[argparse.ArgumentParser, argparse.ArgumentParser]:
    """The parsers of ``collector explain`` and ``collector test``."""
    explain = argparse.ArgumentParser(
        prog="collector explain",
        description="Show every relabel step for a target or a series, from a config file.",
    )
    targets = explain.add_subparsers(dest="what", metavar="{target,series}", required=True)
    target = targets.add_parser(
        "target", help="target relabeling (relabel_configs) of one discovered target"
    )
    target.add_argument(
        "--labels",
        required=True,
        metavar="JSON",
        help='the target\'s labels as discovery produced them: \'{"__address__":"10.0.0.1:80"}\'',
    )
    series = targets.add_parser(
        "series",
        help="metric relabeling, external labels and write relabeling of one series",
    )
    series.add_argument(
        "series",
        metavar="SERIES",
        help="an exposition line or selector: 'http_requests_total{code=\"200\"} 1'",
    )
    series.add_argument(
        "--target",
        metavar="JSON",
        help="the labels of the target that exposes the series; its labels are attached as a "
        "scrape attaches them (honor_labels). Without it the series is taken as complete",
    )
    for sub in (target, series):
        sub.add_argument("--config.file", dest="config_file", help="configuration file")
        sub.add_argument("--job", required=True, help="the job (scrape pool) whose rules apply")
        sub.add_argument(
            "--no-defaults",
            action="store_true",
            help="give the labels to the rules exactly as written (no job defaults added)",
        )
        _output_options(sub)
    test = argparse.ArgumentParser(prog="collector test", description="Run golden tests.")
    tests = test.add_subparsers(dest="what", metavar="{relabel}", required=True)
    relabel = tests.add_parser("relabel", help="golden tests for relabel rules")
    relabel.add_argument("files", nargs="+", metavar="CASES.yml")
    relabel.add_argument(
        "--color", choices=("auto", "always", "never"), default="auto", help="colour the diffs"
    )
    return explain, test


def _output_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-o",
        "--output",
        choices=("table", "json"),
        default="table",
        help="tables for people, or the API's JSON (default: %(default)s)",
    )
    parser.add_argument(
        "--color",
        choices=("auto", "always", "never"),
        default="auto",
        help="colour changed labels: auto = on a terminal unless NO_COLOR is set",
    )
    parser.add_argument(
        "--changes-only",
        action="store_true",
        help="leave unchanged labels out of the per-rule tables",
    )


def _style(args: argparse.Namespace, out: TextIO) -> Style:
    if args.color == "auto":
        color = out.isatty() and not os.environ.get("NO_COLOR")
    else:
        color = args.color == "always"
    return Style(color=color, changes_only=getattr(args, "changes_only", False))


def main(command: str, argv: Sequence[str], *, config_file: str, out: TextIO, err: TextIO) -> int:
    """Run ``collector <command> <argv...>``; ``config_file`` is the global ``--config.file``."""
    explain_parser, test_parser = _parsers()
    if command == "test":
        args = test_parser.parse_args(argv)
        return run_files(args.files, out=out, err=err, style=_style(args, out))
    args = explain_parser.parse_args(argv)
    path = args.config_file or config_file
    try:
        config = load_config(path, env=AgentOptions().config_env(os.environ))
    except ConfigError as exc:
        print(f"collector explain: error loading config: {exc.render()}", file=err)
        return 1
    try:
        text = _explain(args, config, _style(args, out))
    except CollectorError as exc:
        jobs = ", ".join(json.dumps(sc.job_name) for sc in config.scrape_configs) or "none"
        print(f"collector explain: {exc} (jobs in {path}: {jobs})", file=err)
        return 1
    out.write(text)
    return 0


def _explain(args: argparse.Namespace, config: Config, style: Style) -> str:
    """The text to print; raises `CollectorError` for bad input."""
    add_defaults = not args.no_defaults
    if args.what == "target":
        explained = explain_target(
            config, args.job, _json_labels(args.labels, "--labels"), add_defaults=add_defaults
        )
        if args.output == "json":
            return _dumps(target_json(explained))
        return render_target(explained, style)
    try:
        series = parse_series(args.series)
    except ParseError as exc:
        raise CollectorError(f"error parsing series: {exc}") from exc
    target = None if args.target is None else _json_labels(args.target, "--target")
    traced = explain_series(config, args.job, series, target=target, add_defaults=add_defaults)
    if args.output == "json":
        return _dumps(series_json(traced))
    return render_series(traced, style, job=args.job)


def _dumps(data: object) -> str:
    return orjson.dumps(data, option=orjson.OPT_INDENT_2).decode() + "\n"


def _json_labels(text: str, flag: str) -> Mapping[str, str]:
    """A JSON object of label names to string values."""
    try:
        data = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise CollectorError(f"error parsing {flag}: {exc}") from exc
    if not isinstance(data, dict) or not all(isinstance(v, str) for v in data.values()):
        raise CollectorError(f"error parsing {flag}: expected a JSON object of strings")
    return data
