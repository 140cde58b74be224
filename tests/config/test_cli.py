"""The command line: ``collector check config`` like promtool, flags, logging, lazy commands."""

from __future__ import annotations

import io
import logging
import pathlib
import sys
from collections.abc import Iterator

import orjson
import pytest

from collector import cli


@pytest.fixture(autouse=True)
def _restore_root_logger() -> Iterator[None]:
    """configure_logging replaces the root handlers; put pytest's back after each test."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


VALID = "scrape_configs:\n  - job_name: a\n    static_configs: [{targets: ['127.0.0.1:9100']}]\n"


def _write(tmp_path: pathlib.Path, name: str, text: str) -> str:
    """Write ``text`` to ``tmp_path/name`` and return the path."""
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def test_check_config_success(tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A valid file prints Checking + SUCCESS and exits 0."""
    path = _write(tmp_path, "ok.yml", VALID)
    assert cli.main(["check", "config", path]) == 0
    out, err = capsys.readouterr()
    assert out.splitlines()[:2] == [
        f"Checking {path}",
        f"  SUCCESS: {path} is valid prometheus config file syntax",
    ]
    assert err == ""


def test_check_config_failure(tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]) -> None:
    """An invalid file prints one FAILED line with position and YAML path, exits 1, no traceback."""
    path = _write(
        tmp_path,
        "bad.yml",
        "scrape_configs:\n  - job_name: a\n    relabel_configs: [{action: repalce}]\n",
    )
    assert cli.main(["check", "config", path]) == 1
    out, err = capsys.readouterr()
    assert out.splitlines()[0] == f"Checking {path}"
    assert err.splitlines() == [
        f"  FAILED: {path}:3:24: scrape_configs[0].relabel_configs[0].action: unknown relabel "
        'action "repalce"'
    ]
    assert "Traceback" not in out + err


def test_check_config_several_files(
    tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Every file is checked; the exit code is 1 if any of them fails."""
    good = _write(tmp_path, "good.yml", VALID)
    bad = _write(tmp_path, "bad.yml", "global: {scrape_interval: 5x}\n")
    assert cli.main(["check", "config", good, bad]) == 1
    out, err = capsys.readouterr()
    assert f"Checking {good}" in out
    assert f"Checking {bad}" in out
    assert f"  SUCCESS: {good} is valid prometheus config file syntax" in out
    assert err.splitlines() == [
        f'  FAILED: {bad}:1:10: global.scrape_interval: not a valid duration string: "5x"'
    ]


def test_check_config_missing_file(
    tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A file that does not exist cannot be checked: exit 2 and a message naming the path."""
    path = str(tmp_path / "nope.yml")
    assert cli.main(["check", "config", path]) == 2
    _out, err = capsys.readouterr()
    assert err.splitlines() == [
        f"  FAILED: {path}: cannot read config file: No such file or directory"
    ]


THREE_MISTAKES = """\
scrape_configs:
  - job_name: a
    relabel_configs:
      - source_labels: [__address__]
        action: repalce
  - job_name: b
    scrape_interval: 1m
    scrape_timeout: 10q
remote_write:
  - url: http://rw.invalid/api/v1/write
    queue_confg: {capacity: 100}
"""


def test_check_config_reports_every_problem(
    tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Three mistakes in three places: three FAILED lines, each with line:column, and exit 1."""
    path = _write(tmp_path, "three.yml", THREE_MISTAKES)
    assert cli.main(["check", "config", path]) == 1
    out, err = capsys.readouterr()
    assert out.splitlines()[0] == f"Checking {path}"
    assert "SUCCESS" not in out
    assert err.splitlines() == [
        f"  FAILED: {path}:5:9: scrape_configs[0].relabel_configs[0].action: unknown relabel "
        'action "repalce"',
        f"  FAILED: {path}:8:5: scrape_configs[1].scrape_timeout: not a valid duration string: "
        '"10q"',
        f"  FAILED: {path}:11:5: remote_write[0].queue_confg: field queue_confg not found in type "
        "remote_write",
    ]


def test_check_config_yaml_syntax_is_invalid(
    tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A file that is not YAML was read, so it is invalid (1), with the parser's position."""
    path = _write(tmp_path, "broken.yml", "scrape_configs:\n  - job_name: [a\n")
    assert cli.main(["check", "config", path]) == 1
    _out, err = capsys.readouterr()
    assert err.splitlines() == [
        f"  FAILED: {path}:3:1: yaml: line 2: did not find expected ',' or ']'"
    ]


def test_check_config_not_utf8_is_unreadable(
    tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A file that is not text cannot be checked: exit 2, the path named."""
    path = tmp_path / "binary.yml"
    path.write_bytes(b"global: {a: \xff}\n")
    assert cli.main(["check", "config", str(path)]) == 2
    _out, err = capsys.readouterr()
    assert err.startswith(f"  FAILED: {path}: config file is not valid UTF-8: ")


def test_check_config_exit_code_is_the_worst(
    tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Over several files the exit code is the worst one: unreadable beats invalid beats valid."""
    good = _write(tmp_path, "good.yml", VALID)
    bad = _write(tmp_path, "bad.yml", "foo: 1\n")
    missing = str(tmp_path / "missing.yml")
    assert cli.main(["check", "config", good, bad]) == 1
    assert cli.main(["check", "config", missing, good, bad]) == 2
    assert cli.main(["check", "config", bad, missing]) == 2
    out, _err = capsys.readouterr()
    assert out.count(f"Checking {missing}") == 2


def test_check_config_included_file_problems_name_that_file(
    tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A problem in a scrape_config_files match is shown with that file's path and position."""
    (tmp_path / "jobs.yml").write_text("scrape_configs:\n  - job_name: x\n    metrics_path: [a]\n")
    path = _write(tmp_path, "main.yml", "scrape_config_files: [jobs.yml]\n")
    assert cli.main(["check", "config", path]) == 1
    _out, err = capsys.readouterr()
    assert err.splitlines() == [
        f"  FAILED: {tmp_path / 'jobs.yml'}:3:5: scrape_configs[0].metrics_path: cannot unmarshal "
        "!!seq into string"
    ]


def test_check_config_missing_referenced_files(
    tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Credential and TLS files that do not exist are reported one line each, like promtool."""
    (tmp_path / "ca.pem").write_text("x")
    path = _write(
        tmp_path,
        "c.yml",
        "scrape_configs:\n  - job_name: a\n    bearer_token_file: tok\n"
        "    tls_config: {ca_file: ca.pem, cert_file: c.pem, key_file: k.pem}\n",
    )
    assert cli.main(["check", "config", path]) == 1
    _out, err = capsys.readouterr()
    assert err.splitlines() == [
        f"  FAILED: job 'a': error checking client cert file \"{tmp_path}/c.pem\": no such file",
        f"  FAILED: job 'a': error checking client key file \"{tmp_path}/k.pem\": no such file",
        f"  FAILED: job 'a': error checking credentials file \"{tmp_path}/tok\": no such file",
    ]


def test_check_config_example(capsys: pytest.CaptureFixture[str]) -> None:
    """The shipped config/collector.yml passes check config."""
    repo = pathlib.Path(__file__).resolve().parents[2]
    assert cli.main(["check", "config", str(repo / "config" / "collector.yml")]) == 0
    capsys.readouterr()


def test_check_requires_subcommand(capsys: pytest.CaptureFixture[str]) -> None:
    """``collector check`` without ``config`` is a usage error (argparse exit 2)."""
    with pytest.raises(SystemExit) as info:
        cli.main(["check"])
    assert info.value.code == 2
    capsys.readouterr()


def test_flags_parse() -> None:
    """Prometheus-style flags are accepted with their documented defaults."""
    args = cli.build_parser().parse_args([])
    assert (args.config_file, args.listen_address, args.storage_path, args.log_level) == (
        "config/collector.yml",
        "0.0.0.0:9099",
        "data/",
        "info",
    )
    args = cli.build_parser().parse_args(
        [
            "--config.file=x.yml",
            "--web.listen-address=:9999",
            "--storage.path=/d",
            "--log.level=debug",
            "--log.format=json",
            "--kubeconfig=/k",
            "--web.enable-remote-write-receiver",
            "--web.enable-lifecycle",
        ]
    )
    assert args.config_file == "x.yml"
    assert args.enable_remote_write_receiver
    assert args.enable_lifecycle
    assert (args.kubeconfig, args.log_format) == ("/k", "json")


def test_agent_refuses_invalid_config(
    tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Starting the agent with an invalid config prints the located error and exits 1."""
    path = _write(tmp_path, "bad.yml", "scrape_configs: [{job_name: a, scrape_timeout: 1q}]\n")
    assert cli.main([f"--config.file={path}"]) == 1
    _out, err = capsys.readouterr()
    assert err.strip() == (
        f"error loading config: {path}:1:32: scrape_configs[0].scrape_timeout: not a valid "
        'duration string: "1q"'
    )


def test_demo_missing_module(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """``collector demo`` without collector.demo prints a clear message and returns 2."""
    monkeypatch.setitem(sys.modules, "collector.demo", None)
    assert cli.main(["demo"]) == 2
    assert "demo is not available" in capsys.readouterr().err


def test_logfmt_output() -> None:
    """The logfmt formatter writes ts, level, logger and a quoted msg."""
    stream = io.StringIO()
    cli.configure_logging(level="info", fmt="logfmt", stream=stream)
    logging.getLogger("collector.test").warning('scrape "x" failed')
    logging.getLogger("collector.test").debug("hidden")
    line = stream.getvalue().strip()
    assert line.startswith("ts=")
    assert ' level=warn logger=collector.test msg="scrape \\"x\\" failed"' in line
    assert "hidden" not in stream.getvalue()


def test_json_log_output() -> None:
    """The json formatter writes one object per line."""
    stream = io.StringIO()
    cli.configure_logging(level="debug", fmt="json", stream=stream)
    logging.getLogger("collector.test").debug("hello")
    doc = orjson.loads(stream.getvalue())
    assert (doc["level"], doc["logger"], doc["msg"]) == ("debug", "collector.test", "hello")
