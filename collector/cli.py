"""Command line: flags, subcommands, logging, and the event loop the agent runs on.

``collector [flags]`` runs the agent; ``collector check config FILE...`` validates files like
``promtool check config``; ``collector demo`` runs the self-contained demo;
``collector explain target|series`` and ``collector test relabel`` show and test relabeling
(their arguments are parsed by `collector.explain.command`). Flags are Prometheus's
(``--config.file``, ``--web.listen-address``, ...), see ``INTERFACES.md``.

This is the only module that chooses the event loop (uvloop, via ``asyncio.Runner``); the agent
itself is plain asyncio. ``collector.agent`` and ``collector.demo`` are imported lazily so that
``check config`` works without them.

Prometheus counterparts: ``cmd/prometheus/main.go`` (flags) and ``cmd/promtool`` (check).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import importlib
import logging
import os
import pathlib
import platform
import subprocess
import sys
from collections.abc import Sequence
from typing import TextIO

import orjson

from collector import __version__, native
from collector.cluster.settings import add_cluster_flags, resolve_settings, with_cluster_flags
from collector.config import AgentOptions, Config, load_config
from collector.errors import ConfigError, ConfigFileError
from collector.model.duration import parse_duration, parse_size
from collector.workers.plan import (
    add_worker_flags,
    describe_auto,
    with_worker_flags,
    worker_range,
)

__all__ = [
    "build_parser",
    "check_config",
    "check_web_config",
    "configure_logging",
    "main",
    "referenced_files",
    "version_text",
]

_LOG_LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warn": logging.WARNING,
    "error": logging.ERROR,
}


def build_parser() -> argparse.ArgumentParser:
    """The argument parser: agent flags plus the ``check`` and ``demo`` subcommands."""
    parser = argparse.ArgumentParser(
        prog="collector",
        description="Prometheus-compatible scraping agent: discovery, scrape, remote write.",
    )
    defaults = AgentOptions()
    parser.add_argument(
        "--version",
        action="store_true",
        help="print the version, the Python version and the build, then exit",
    )
    parser.add_argument(
        "--config.file",
        dest="config_file",
        default=defaults.config_file,
        help="configuration file path (default: %(default)s)",
    )
    parser.add_argument(
        "--web.listen-address",
        dest="listen_address",
        default=defaults.listen_address,
        help="address for the UI, API and /metrics (default: %(default)s)",
    )
    parser.add_argument(
        "--storage.path",
        dest="storage_path",
        default=defaults.storage_path,
        help="directory of the disk queue (default: %(default)s)",
    )
    parser.add_argument(
        "--log.level",
        dest="log_level",
        default=defaults.log_level,
        choices=tuple(_LOG_LEVELS),
        help="only log messages with this severity or above (default: %(default)s)",
    )
    parser.add_argument(
        "--log.format",
        dest="log_format",
        default=defaults.log_format,
        choices=("logfmt", "json"),
        help="output format of log messages (default: %(default)s)",
    )
    parser.add_argument(
        "--kubeconfig",
        dest="kubeconfig",
        default=defaults.kubeconfig,
        help="kubeconfig file (default: in-cluster, then $KUBECONFIG, then ~/.kube/config)",
    )
    parser.add_argument(
        "--web.enable-remote-write-receiver",
        dest="enable_remote_write_receiver",
        action="store_true",
        help="accept remote-write requests on /api/v1/write",
    )
    parser.add_argument(
        "--web.enable-lifecycle",
        dest="enable_lifecycle",
        action="store_true",
        help="enable reload and shutdown via HTTP requests (POST /-/reload, POST /-/quit); "
        "without it both answer 403 (as in Prometheus)",
    )
    parser.add_argument(
        "--storage.remote.flush-deadline",
        dest="flush_deadline",
        default=defaults.flush_deadline,
        type=_duration_flag,
        metavar="DURATION",
        help="at shutdown, how long to keep sending before exiting; what is still unsent is "
        "already in the write-ahead queue under --storage.path (default: 10s)",
    )
    parser.add_argument(
        "--storage.remote.wal-sync-interval",
        dest="wal_sync_interval",
        default=defaults.wal_sync_interval,
        type=_duration_flag,
        metavar="DURATION",
        help="group commit period of the write-ahead queues: at most this long between a scrape "
        "and its samples being on disk (default: 1s)",
    )
    parser.add_argument(
        "--storage.remote.wal-fsync",
        dest="wal_fsync",
        default=defaults.wal_fsync,
        action=argparse.BooleanOptionalAction,
        help="fsync every group commit, so the queues survive machine crashes and not only "
        "process crashes (default: on)",
    )
    parser.add_argument(
        "--storage.remote.max-disk-bytes",
        dest="max_disk_bytes",
        default=defaults.max_disk_bytes,
        type=_size_flag,
        metavar="SIZE",
        help="cap of each remote-write destination's write-ahead queue; past it the oldest "
        "batches are dropped and counted (default: 1GiB)",
    )
    _add_web_flags(parser, defaults)
    add_cluster_flags(parser, defaults)
    add_worker_flags(parser, defaults)
    commands = parser.add_subparsers(dest="command", metavar="{check,demo,explain,test,version}")
    check = commands.add_parser("check", help="check resources for validity")
    check_commands = check.add_subparsers(
        dest="check_command", metavar="{config,web-config}", required=True
    )
    check_config_parser = check_commands.add_parser(
        "config", help="check if the config files are valid"
    )
    check_config_parser.add_argument("files", nargs="+", metavar="FILE")
    check_web_parser = check_commands.add_parser(
        "web-config", help="check if the web config files (--web.config.file) are valid"
    )
    check_web_parser.add_argument("files", nargs="+", metavar="FILE")
    commands.add_parser("demo", help="run the whole pipeline on this machine", add_help=False)
    # explain and test parse their own arguments (collector.explain.command, loaded lazily).
    commands.add_parser(
        "explain", help="show every relabel step for a target or a series", add_help=False
    )
    commands.add_parser("test", help="golden tests: test relabel CASES.yml", add_help=False)
    commands.add_parser("version", help="print the version, the Python version and the build")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``collector`` command; returns the process exit code."""
    parser = build_parser()
    # The demo takes options of its own after ``demo``; argparse's REMAINDER cannot capture
    # options in a subparser, so unknown arguments are handed over and checked there.
    args, extra = parser.parse_known_args(argv)
    if extra and args.command not in ("demo", "explain", "test"):
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    args.demo_args = extra
    if args.worker_fd is not None:  # a scrape worker started by the agent (collector.workers)
        configure_logging(level=args.log_level, fmt=args.log_format)
        return _run_loop("collector.workers.worker", "run_worker_process", args.worker_fd)
    if args.version or args.command == "version":
        print(version_text())
        return 0
    if args.command == "check" and args.check_command == "web-config":
        return check_web_config(args.files, out=sys.stdout, err=sys.stderr)
    if args.command == "check":
        return check_config(args.files, out=sys.stdout, err=sys.stderr)
    if args.command == "demo":
        return _run_demo(args)
    if args.command in ("explain", "test"):
        explain = importlib.import_module("collector.explain.command")
        code: int = explain.main(
            args.command, extra, config_file=args.config_file, out=sys.stdout, err=sys.stderr
        )
        return code
    options = AgentOptions(
        config_file=args.config_file,
        listen_address=args.listen_address,
        storage_path=args.storage_path,
        kubeconfig=args.kubeconfig,
        enable_remote_write_receiver=args.enable_remote_write_receiver,
        enable_lifecycle=args.enable_lifecycle,
        flush_deadline=args.flush_deadline,
        wal_sync_interval=args.wal_sync_interval,
        wal_fsync=args.wal_fsync,
        max_disk_bytes=args.max_disk_bytes,
        web_config_file=args.web_config_file,
        receiver_max_body_bytes=args.receiver_max_body_bytes,
        receiver_max_decompressed_bytes=args.receiver_max_decompressed_bytes,
        receiver_max_series_per_request=args.receiver_max_series_per_request,
        receiver_max_samples_per_request=args.receiver_max_samples_per_request,
        receiver_max_labels_per_series=args.receiver_max_labels_per_series,
        receiver_max_label_name_length=args.receiver_max_label_name_length,
        receiver_max_label_value_length=args.receiver_max_label_value_length,
        log_level=args.log_level,
        log_format=args.log_format,
    )
    try:
        options = with_worker_flags(with_cluster_flags(options, args), args)
        worker_range(options, clustered=resolve_settings(options, os.environ) is not None)
    except ConfigError as exc:
        parser.error(str(exc))
    configure_logging(level=options.log_level, fmt=options.log_format)
    return _run_agent(options)


def version_text() -> str:
    """``collector, version 0.1.0 (build: v0.1.0-12-gabc1234)`` plus the Python line, like
    ``prometheus --version``."""
    build = _git_describe() or "unknown (not a git checkout)"
    return (
        f"collector, version {__version__} (build: {build})\n"
        f"  python: {platform.python_implementation()} {platform.python_version()}"
        f" ({sys.executable})\n"
        f"  scrape workers: {describe_auto()}\n"
        f"  native extension: {native.describe()}"
    )


def _git_describe() -> str:
    """``git describe`` of the checkout this package runs from, when it is one (editable
    installs, the demo); an installed wheel has no checkout and says so."""
    root = pathlib.Path(__file__).resolve().parent.parent
    if not (root / ".git").exists():
        return ""
    try:
        done = subprocess.run(
            ["git", "-C", str(root), "describe", "--always", "--dirty", "--tags"],
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return ""
    return done.stdout.strip() if done.returncode == 0 else ""


def _add_web_flags(parser: argparse.ArgumentParser, defaults: AgentOptions) -> None:
    """``--web.config.file`` and the remote-write receiver's caps."""
    parser.add_argument(
        "--web.config.file",
        dest="web_config_file",
        default=defaults.web_config_file,
        metavar="FILE",
        help="exporter-toolkit web config (TLS, client certificates, bcrypt basic auth, "
        "headers) for every endpoint; re-read when it changes; "
        "check it with 'collector check web-config FILE' (default: none, plain HTTP)",
    )
    receiver = "--web.remote-write-receiver."
    for flag, dest, kind, what in (
        ("max-body-bytes", "receiver_max_body_bytes", _size_flag, "compressed body, 413 above"),
        (
            "max-decompressed-bytes",
            "receiver_max_decompressed_bytes",
            _size_flag,
            "decompressed body (read from the snappy header first), 413 above",
        ),
        ("max-series-per-request", "receiver_max_series_per_request", _count_flag, "series"),
        (
            "max-samples-per-request",
            "receiver_max_samples_per_request",
            _count_flag,
            "samples (floats and native histograms)",
        ),
        ("max-labels-per-series", "receiver_max_labels_per_series", _count_flag, "labels"),
        (
            "max-label-name-length",
            "receiver_max_label_name_length",
            _count_flag,
            "label name bytes",
        ),
        (
            "max-label-value-length",
            "receiver_max_label_value_length",
            _count_flag,
            "label value bytes",
        ),
    ):
        default = getattr(defaults, dest)
        parser.add_argument(
            receiver + flag,
            dest=dest,
            default=default,
            type=kind,
            metavar="SIZE" if kind is _size_flag else "N",
            help=f"remote-write receiver cap: {what}"
            + ("" if kind is _size_flag else "; 400 above, 0 = no cap")
            + f" (default: {f'{default >> 20}MiB' if kind is _size_flag else default})",
        )


def _count_flag(text: str) -> int:
    """A non-negative integer flag value (0 = no cap)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must not be negative: {text!r}")
    return value


def _size_flag(text: str) -> int:
    """A byte size flag value (``512MiB``, ``1GB``) as bytes."""
    try:
        size = parse_size(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    if size <= 0:
        raise argparse.ArgumentTypeError(f"must be positive: {text!r}")
    return size


def _duration_flag(text: str) -> float:
    """A Prometheus duration flag value (``10s``, ``1m30s``) as seconds."""
    try:
        return parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


# ------------------------------------------------------------------------------ check config


def check_config(files: Sequence[str], *, out: TextIO, err: TextIO) -> int:
    """``promtool check config``; never raises. Returns the exit code, the worst over ``files``.

    0 when every file is valid, 1 when one is refused, 2 when one cannot be read (missing,
    unreadable, not UTF-8). For each file prints ``Checking FILE``, then ``  SUCCESS: ...`` on
    ``out`` or one ``  FAILED: ...`` line per problem on ``err``: every problem the loader found,
    as ``file:line:column: path: message``, or every referenced credential/TLS/kubeconfig file
    that does not exist.
    """

    worst = 0
    for filename in files:
        print(f"Checking {filename}", file=out)
        problems: list[str] = []
        code = 1
        try:
            config = load_config(filename, env=AgentOptions().config_env(os.environ))
        except ConfigError as exc:
            problems.extend(_located(problem, filename) for problem in exc.problems)
            if isinstance(exc, ConfigFileError):
                code = 2
        else:
            problems.extend(
                f'{where}: error checking {kind} file "{path}": no such file'
                for where, kind, path in referenced_files(config)
                if not os.path.exists(path)
            )
        if problems:
            worst = max(worst, code)
            for problem in problems:
                print(f"  FAILED: {problem}", file=err)
        else:
            print(f"  SUCCESS: {filename} is valid prometheus config file syntax", file=out)
        print("", file=out)
    return worst


def check_web_config(files: Sequence[str], *, out: TextIO, err: TextIO) -> int:
    """``collector check web-config FILE...`` (``promtool check web-config``); never raises.

    Exit code 0 when every file is valid, 1 when one is refused (every problem printed as
    ``file:line:column: path: message``), 2 when one cannot be read.
    """
    # Lazy: the web layer (aiohttp, bcrypt) is only needed for this subcommand.
    load_web_config = importlib.import_module("collector.web.webconfig").load_web_config
    worst = 0
    for filename in files:
        print(f"Checking {filename}", file=out)
        try:
            load_web_config(filename)
        except ConfigError as exc:
            worst = max(worst, 2 if isinstance(exc, ConfigFileError) else 1)
            for problem in exc.problems:
                print(f"  FAILED: {_located(problem, filename)}", file=err)
        else:
            print(f"  SUCCESS: {filename} is a valid web config file", file=out)
        print("", file=out)
    return worst


def _located(problem: ConfigError, filename: str) -> str:
    """One problem as ``file:line:column: path: message``; ``filename`` when it names no file."""
    if problem.file:
        return problem.render()
    return ConfigError(
        problem.message,
        path=problem.path,
        file=filename,
        line=problem.line,
        column=problem.column,
    ).render()


def referenced_files(config: Config) -> list[tuple[str, str, str]]:
    """Files a loaded config names that must exist: ``(job or remote_write, kind, path)``.

    ``file_sd_configs`` globs are not included: matching nothing is valid.
    """
    found: list[tuple[str, str, str]] = []
    clients = [(f"job {sc.job_name!r}", sc.http_client) for sc in config.scrape_configs]
    for sc in config.scrape_configs:
        for k8s in sc.kubernetes_sd_configs:
            clients.append((f"job {sc.job_name!r}", k8s.http_client))
            if k8s.kubeconfig_file:
                found.append((f"job {sc.job_name!r}", "kubeconfig", k8s.kubeconfig_file))
        clients.extend((f"job {sc.job_name!r}", h.http_client) for h in sc.http_sd_configs)
    clients.extend((f"remote_write {rw.name!r}", rw.http_client) for rw in config.remote_write)
    for where, client in clients:
        tls = client.tls_config
        for kind, path in (
            ("CA", tls.ca_file),
            ("client cert", tls.cert_file),
            ("client key", tls.key_file),
            (
                "username",
                client.basic_auth.username_file if client.basic_auth else "",
            ),
            (
                "password",
                client.basic_auth.password_file if client.basic_auth else "",
            ),
            (
                "credentials",
                client.authorization.credentials_file if client.authorization else "",
            ),
        ):
            if path:
                found.append((where, kind, path))
    return found


# ------------------------------------------------------------------------------ logging


class _LogfmtFormatter(logging.Formatter):
    """``ts=... level=info logger=collector.x msg="..."`` like Prometheus's default output."""

    def format(self, record: logging.LogRecord) -> str:
        """One logfmt line; exceptions are folded into an ``err`` field."""
        fields = [
            ("ts", _timestamp(record)),
            ("level", _level_name(record)),
            ("logger", record.name),
            ("msg", record.getMessage()),
        ]
        if record.exc_info:
            fields.append(("err", self.formatException(record.exc_info)))
        return " ".join(f"{key}={_logfmt_value(value)}" for key, value in fields)


class _JSONFormatter(logging.Formatter):
    """One JSON object per line (``--log.format=json``)."""

    def format(self, record: logging.LogRecord) -> str:
        """The record as ``{"ts", "level", "logger", "msg"[, "err"]}``."""
        doc = {
            "ts": _timestamp(record),
            "level": _level_name(record),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        if record.exc_info:
            doc["err"] = self.formatException(record.exc_info)
        return orjson.dumps(doc).decode()


def _timestamp(record: logging.LogRecord) -> str:
    """RFC 3339 UTC with milliseconds, as Prometheus logs."""
    when = datetime.datetime.fromtimestamp(record.created, tz=datetime.UTC)
    return when.strftime("%Y-%m-%dT%H:%M:%S.") + f"{int(record.msecs):03d}Z"


def _level_name(record: logging.LogRecord) -> str:
    """``debug``/``info``/``warn``/``error``."""
    return "warn" if record.levelno == logging.WARNING else record.levelname.lower()


def _logfmt_value(value: str) -> str:
    """Quote a logfmt value when it has spaces, quotes, ``=`` or is empty."""
    if value and not any(c in value for c in ' "=\n\t\\'):
        return value
    escaped = (
        value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\t", "\\t")
    )
    return f'"{escaped}"'


def configure_logging(*, level: str, fmt: str, stream: TextIO | None = None) -> None:
    """Send the root logger to ``stream`` (stderr) as logfmt or JSON at ``level``."""
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.setFormatter(_JSONFormatter() if fmt == "json" else _LogfmtFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(_LOG_LEVELS.get(level, logging.INFO))


# ------------------------------------------------------------------------------ running


def _run_agent(options: AgentOptions) -> int:
    """Validate the config, then run the agent on uvloop until it stops."""
    try:
        load_config(options.config_file, env=options.config_env(os.environ))
    except ConfigError as exc:
        print(f"error loading config: {exc.render()}", file=sys.stderr)
        return 1
    if options.web_config_file:
        load_web_config = importlib.import_module("collector.web.webconfig").load_web_config
        try:
            load_web_config(options.web_config_file)
        except ConfigError as exc:
            print(f"error loading web config: {exc.render()}", file=sys.stderr)
            return 1
    try:
        # Lazy: ``check config`` must work without the agent and its dependencies loaded.
        # collector.workers.supervisor runs collector.lifecycle's run_agent, or its supervisor.
        run_agent = importlib.import_module("collector.workers.supervisor").run
    except (ImportError, AttributeError) as exc:
        print(f"collector: the agent is not available in this build: {exc}", file=sys.stderr)
        return 2
    import uvloop  # only the CLI chooses the event loop

    try:
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            result = runner.run(run_agent(options))
    except KeyboardInterrupt:
        return 130
    return result if isinstance(result, int) else 0


def _run_loop(module: str, function: str, *args: object) -> int:
    """Run ``module.function(*args)`` on uvloop (a scrape worker's main)."""
    import uvloop  # only the CLI chooses the event loop

    main = getattr(importlib.import_module(module), function)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        result = runner.run(main(*args))
    return result if isinstance(result, int) else 0


def _run_demo(args: argparse.Namespace) -> int:
    """Run ``collector.demo.main`` on uvloop until it finishes or Ctrl-C."""
    try:
        demo_main = importlib.import_module("collector.demo").main
    except (ImportError, AttributeError) as exc:
        print(f"collector: the demo is not available in this build: {exc}", file=sys.stderr)
        return 2
    import uvloop  # only the CLI chooses the event loop

    configure_logging(
        level="warn" if args.log_level == "info" else args.log_level, fmt=args.log_format
    )
    try:
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            result = runner.run(demo_main(args))
    except KeyboardInterrupt:
        return 0
    return result if isinstance(result, int) else 0
