"""``collector explain target|series`` and ``collector test relabel`` as users run them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from collector import cli
from collector.config import load_config
from collector.explain.core import explain_target
from collector.model.relabel import compile_rules
from collector.scrape.target import populate_labels

FIXTURES = Path(__file__).parent / "fixtures" / "relabel"
CONFIG = str(FIXTURES / "collector.yml")
JOB = "kubernetes-pods"
POD = {
    "__address__": "10.0.0.1:8080",
    "__meta_kubernetes_pod_annotation_prometheus_io_scrape": "true",
    "__meta_kubernetes_pod_annotation_prometheus_io_port": "9102",
    "__meta_kubernetes_pod_label_app": "api",
    "__meta_kubernetes_namespace": "team-a",
}


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """``collector argv...``: exit code, stdout, stderr."""
    code = cli.main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def explain(capsys: pytest.CaptureFixture[str], what: str, *argv: str) -> tuple[int, str, str]:
    """``collector explain <what> --config.file=<fixture> --job=kubernetes-pods argv...``."""
    return run(capsys, "explain", what, f"--config.file={CONFIG}", f"--job={JOB}", *argv)


# --------------------------------------------------------------------------- test relabel


def test_golden_files_pass(capsys: pytest.CaptureFixture[str]) -> None:
    """Inline rules and a job's rules from a config file; every case passes: exit 0."""
    code, out, err = run(
        capsys, "test", "relabel", str(FIXTURES / "pods.yml"), str(FIXTURES / "inline.yml")
    )
    assert (code, err) == (0, "")
    assert out.count("SUCCESS: 2 case(s) passed") == 2
    assert "job 'kubernetes-pods', target stage" in out


def test_a_wrong_expectation_exits_1_with_a_diff(capsys: pytest.CaptureFixture[str]) -> None:
    """Each failing case names itself and its line, then a label diff or the dropping rule."""
    code, out, _ = run(capsys, "test", "relabel", str(FIXTURES / "wrong.yml"))
    assert code == 1
    wrong = str(FIXTURES / "wrong.yml")
    assert f"FAILED: expects the old port ({wrong}:5)" in out
    assert "labels differ (- expected, + got):" in out
    assert '- __address__="10.0.0.1:8080"' in out
    assert '+ __address__="10.0.0.1:9102"' in out
    assert "(2 other label(s) as expected)" in out
    assert f"FAILED: expects an unannotated pod to be kept ({wrong}:14)" in out
    assert (
        "rule 1 (keep) dropped them: __meta_kubernetes_pod_annotation_prometheus_io_scrape"
        ' = "" does not match regex "true"'
    ) in out
    assert "still passes" not in out
    assert "2 of 3 case(s) failed" in out


def test_a_case_expecting_a_drop_shows_what_came_out(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A set the rules keep although the case says dropped: every returned label is shown."""
    cases = tmp_path / "cases.yml"
    cases.write_text(
        "relabel_configs: [{source_labels: [a], regex: x, action: drop}]\n"
        "tests: [{name: drop it, input: {a: y, b: '1'}, dropped: true}]\n"
    )
    code, out, _ = run(capsys, "test", "relabel", "--color=always", str(cases))
    assert code == 1
    assert "expected the rules to drop the labels; they returned:" in out
    assert '\x1b[32m+ a="y"\x1b[0m' in out
    assert '\x1b[32m+ b="1"\x1b[0m' in out


def test_metric_and_write_stages(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """stage: metric and write:<name> test those chains; the input goes in exactly as written."""
    metric = tmp_path / "metric.yml"
    metric.write_text(
        f"config_file: {CONFIG}\njob: {JOB}\nstage: metric\ntests:\n"
        "  - {name: gc dropped, input: {__name__: go_gc_duration_seconds}, dropped: true}\n"
        "  - name: 5xx classified\n"
        "    input: {__name__: http_requests_total, code: 503}\n"
        "    output: {__name__: http_requests_total, code: '503', class: server_error}\n"
    )
    write = tmp_path / "write.yml"
    write.write_text(
        f"config_file: {CONFIG}\njob: {JOB}\nstage: write:errors-only\ntests:\n"
        "  - {name: only errors, input: {__name__: up}, dropped: true}\n"
        "  - name: replica removed, no external labels added by the test\n"
        "    input: {__name__: x, class: server_error, replica: a}\n"
        "    output: {__name__: x, class: server_error}\n"
    )
    code, out, err = run(capsys, "test", "relabel", str(metric), str(write))
    assert (code, err) == (0, "")
    assert "metric stage" in out
    assert "write:errors-only stage" in out


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("tests: [{input: {a: b}, output: {}}]\n", "needs relabel_configs, or config_file"),
        ("relabel_configs: []\n", "tests: must be a non-empty list of cases"),
        ("relabel_configs: []\ntests: []\nextra: 1\n", ":3:1: extra: unknown key"),
        (
            "relabel_configs: [{action: repalce}]\ntests: [{input: {}, output: {}}]\n",
            'relabel_configs[0].action: unknown relabel action "repalce"',
        ),
        (
            "relabel_configs: []\ntests:\n  - {input: {a: b}, output: {a: b}, dropped: true}\n",
            ":3:5: tests[0]: give output or dropped: true, not both",
        ),
        ("relabel_configs: []\ntests: [{output: {}}]\n", "tests[0]: needs input"),
        ("relabel_configs: []\ntests: [{input: [a], output: {}}]\n", "must be a mapping"),
        (
            "relabel_configs: []\ntests: [{input: {a: [1]}, output: {}}]\n",
            "tests[0].input.a: label values must be strings",
        ),
        ("relabel_configs: []\ntests: [{input: {}, dropped: maybe}]\n", "must be true or false"),
        ("relabel_configs: [\n", "yaml:"),
        ("config_file: missing.yml\njob: j\ntests: [{input: {}, output: {}}]\n", "missing.yml"),
        (
            f"config_file: {CONFIG}\njob: nope\ntests: [{{input: {{}}, output: {{}}}}]\n",
            'job: scrape pool "nope" not found',
        ),
        (
            f"config_file: {CONFIG}\njob: {JOB}\nstage: write:x\n"
            "tests: [{input: {}, output: {}}]\n",
            'remote_write "x" not found (known: "everything", "errors-only")',
        ),
        (
            f"config_file: {CONFIG}\njob: {JOB}\nstage: later\n"
            "tests: [{input: {}, output: {}}]\n",
            'stage: must be "target", "metric" or "write:<remote_write name>"',
        ),
    ],
)
def test_an_invalid_file_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, message: str
) -> None:
    """Structure, rules, YAML and config problems are refused with where and what: exit 2."""
    cases = tmp_path / "cases.yml"
    cases.write_text(text)
    code, _, err = run(capsys, "test", "relabel", str(cases))
    assert code == 2
    assert err.startswith(f"  INVALID: {cases}")
    assert message in err


def test_the_fixture_invalid_file_and_a_missing_file_exit_2(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The worst result of several files wins; an unreadable file is invalid."""
    code, out, err = run(
        capsys,
        "test",
        "relabel",
        str(FIXTURES / "inline.yml"),
        str(FIXTURES / "invalid.yml"),
        str(FIXTURES / "absent.yml"),
    )
    assert code == 2
    assert "SUCCESS" in out
    assert "needs output (the exact labels the rules return) or dropped: true" in err
    assert "absent.yml: cannot read" in err


# --------------------------------------------------------------------------- explain target


def test_explain_target_prints_a_table_per_rule(capsys: pytest.CaptureFixture[str]) -> None:
    """Job defaults are added, every rule gets its fields and its changes, then the result."""
    code, out, err = explain(capsys, "target", f"--labels={json.dumps(POD)}")
    assert (code, err) == (0, "")
    assert out.startswith('Discovered labels (job "kubernetes-pods")\n')
    assert '  job                                                    "kubernetes-pods"' in out
    assert "Rule 1 of 5: keep\n" in out
    assert "  => kept, no change\n" in out
    assert "Rule 2 of 5: replace\n  source_labels  [__address__, " in out
    assert '~ __address__                                            "10.0.0.1:9102"' in out
    assert '(was "10.0.0.1:8080")' in out
    assert "+ app " in out
    assert "no change: the replacement is empty, and an empty value means no label" in out
    assert "Result: ACTIVE\n  scrape URL  http://10.0.0.1:9102/metrics\n" in out
    assert '    instance                                "10.0.0.1:9102"' in out
    assert "\x1b[" not in out  # not a terminal: no colour


def test_explain_colours_changes_when_asked(capsys: pytest.CaptureFixture[str]) -> None:
    """Added green, changed yellow; --changes-only leaves unchanged labels out."""
    code, out, _ = explain(
        capsys, "target", f"--labels={json.dumps(POD)}", "--color=always", "--changes-only"
    )
    assert code == 0
    assert '\x1b[33m~ __address__  "10.0.0.1:9102"\x1b[0m  (was "10.0.0.1:8080")' in out
    assert '\x1b[32m+ app  "api"\x1b[0m\n  ... 13 unchanged label(s)' in out
    assert "\x1b[1mResult: \x1b[0m\x1b[32mACTIVE\x1b[0m" in out


def test_explain_a_dropped_target(capsys: pytest.CaptureFixture[str]) -> None:
    """The dropping rule says what it looked at; later rules are not evaluated."""
    code, out, _ = explain(capsys, "target", '--labels={"__address__": "10.0.0.2:8080"}')
    assert code == 0
    assert (
        '  => DROPPED: __meta_kubernetes_pod_annotation_prometheus_io_scrape = "" does not match'
        ' regex "true"\nRules 2-5 not evaluated\n'
    ) in out
    assert out.endswith("Result: DROPPED by rule 1 (keep)\n")


def test_explain_a_failing_target(capsys: pytest.CaptureFixture[str]) -> None:
    """Kept by the rules but without an address: the pool would fail it with 'no address'."""
    labels = {"__meta_kubernetes_pod_annotation_prometheus_io_scrape": "true"}
    code, out, _ = explain(capsys, "target", f"--labels={json.dumps(labels)}")
    assert code == 0
    assert out.endswith("Result: FAILED: no address\n")


def test_explain_target_json_without_defaults(capsys: pytest.CaptureFixture[str]) -> None:
    """-o json prints the API's data; --no-defaults gives the rules the labels as written."""
    code, out, _ = explain(
        capsys, "target", f"--labels={json.dumps(POD)}", "--no-defaults", "-o", "json"
    )
    assert code == 0
    data = json.loads(out)
    assert [step["keep"] for step in data["steps"]] == [True] * 5
    assert "job" not in data["steps"][0]["output"]
    assert data["steps"][1]["rule"]["replacement"] == "$1:$2"
    # Without the defaults there is no __scrape_interval__: the pool would fail the target.
    assert data["result"] == {
        "state": "failed",
        "labels": {},
        "scrapeUrl": "",
        "error": "error parsing scrape interval: empty duration string",
    }


def test_the_global_config_flag_works_too(capsys: pytest.CaptureFixture[str]) -> None:
    """``collector --config.file=F explain ...`` uses F like the agent would."""
    code, out, _ = run(
        capsys,
        f"--config.file={CONFIG}",
        "explain",
        "target",
        f"--job={JOB}",
        '--labels={"__address__": "h:1"}',
    )
    assert code == 0
    assert "Result: DROPPED by rule 1 (keep)" in out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["target", "--job=nope", "--labels={}"], 'scrape pool "nope" not found (jobs in '),
        (["target", f"--job={JOB}", "--labels=[1]"], "error parsing --labels: expected a JSON"),
        (["target", f"--job={JOB}", "--labels={"], "error parsing --labels:"),
        (["series", f"--job={JOB}", "up{a=~'x'}"], "error parsing series: column 5: only ="),
        (
            ["series", f"--job={JOB}", '--target={"__address__": "h:1"}', "up"],
            "the target is dropped by rule 1 of relabel_configs: no series",
        ),
    ],
)
def test_explain_errors_exit_1(
    capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    """Unknown job, bad JSON, bad series, an inactive target: one line on stderr, exit 1."""
    code, out, err = run(capsys, "explain", argv[0], f"--config.file={CONFIG}", *argv[1:])
    assert (code, out) == (1, "")
    assert message in err


def test_explain_with_a_bad_config_exits_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A config the agent would refuse is refused here too, with its location."""
    bad = tmp_path / "bad.yml"
    bad.write_text("scrape_configs: [{job_name: j, relabel_configs: [{action: nope}]}]\n")
    code, _, err = run(
        capsys, "explain", "target", f"--config.file={bad}", "--job=j", "--labels={}"
    )
    assert code == 1
    assert 'unknown relabel action "nope"' in err


def test_explain_usage_errors_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    """A missing --job is a usage error (argparse's exit code 2)."""
    with pytest.raises(SystemExit) as exited:
        cli.main(["explain", "target", "--labels={}"])
    assert exited.value.code == 2
    assert "--job" in capsys.readouterr().err


@pytest.mark.parametrize(
    "labels",
    [
        POD,
        {**POD, "__meta_kubernetes_pod_annotation_prometheus_io_port": ""},
        {"__address__": "h:1"},
        {"__meta_kubernetes_pod_annotation_prometheus_io_scrape": "true"},
        {**POD, "__address__": "h/path:1"},
        {**POD, "__scrape_timeout__": "1m"},
    ],
)
def test_the_explanation_ends_where_the_pool_does(labels: dict[str, str]) -> None:
    """State, final labels and error agree with the scrape pool's own label population."""
    config = load_config(CONFIG)
    (cfg,) = config.scrape_configs
    explained = explain_target(config, JOB, labels, add_defaults=True)
    populated = populate_labels(labels, {}, cfg=cfg, relabeler=compile_rules(cfg.relabel_configs))
    assert explained.error == populated.error
    assert (explained.labels or None) == populated.labels
    if populated.error:
        assert explained.state == "failed"
    elif populated.labels is None:
        assert explained.state == "dropped"
    else:
        assert explained.state == "active"
    assert dict(explained.trace.input) == dict(populated.discovered)


# --------------------------------------------------------------------------- explain series


def test_explain_series_follows_it_to_every_destination(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Target labels attached, metric relabeling, then external labels and write rules."""
    code, out, err = explain(
        capsys,
        "series",
        f"--target={json.dumps(POD)}",
        'http_requests_total{code="503",job="inner"} 7',
    )
    assert (code, err) == (0, "")
    assert out.startswith('Series http_requests_total{code="503", job="inner"}\n')
    attached = 'Target labels attached: app="api", instance="10.0.0.1:9102", job="kubernetes-pods"'
    assert attached in out
    assert '  exported_job  "inner"' in out
    assert '+ class         "server_error"' in out
    assert 'remote_write "everything" (http://receiver-a.invalid/api/v1/write)' in out
    assert '  external labels added: cluster="eu-1", replica="a"' in out
    assert "  no write_relabel_configs" in out
    assert "  Rule 2 of 2: labeldrop\n    regex  replica\n" in out
    assert '  - replica       "a"' in out
    errors = out[out.index('remote_write "errors-only"') :]
    assert (
        '=> receives http_requests_total{app="api", class="server_error", cluster="eu-1"' in errors
    )
    assert "replica=" not in errors.splitlines()[-1]


def test_explain_series_dropped_and_not_received(capsys: pytest.CaptureFixture[str]) -> None:
    """Dropped by metric relabeling: nobody receives it; a write rule drop is per queue."""
    code, out, _ = explain(capsys, "series", "go_gc_duration_seconds 1")
    assert code == 0
    assert "Result: DROPPED by rule 1: no destination receives it" in out
    code, out, _ = explain(capsys, "series", 'http_requests_total{code="200"}')
    assert code == 0
    assert "=> does not receive it: dropped by rule 1" in out
    assert out.count("=> receives ") == 1


def test_explain_series_json(capsys: pytest.CaptureFixture[str]) -> None:
    """-o json prints the data of /api/v1/series_relabel_steps."""
    code, out, _ = explain(capsys, "series", "-o", "json", 'up{code="500"}')
    assert code == 0
    data = json.loads(out)
    assert data["state"] == "kept"
    assert [d["name"] for d in data["destinations"]] == ["everything", "errors-only"]
    assert data["destinations"][1]["receives"] == {
        "__name__": "up",
        "class": "server_error",
        "cluster": "eu-1",
        "code": "500",
    }


def test_a_password_in_a_remote_write_url_is_not_shown(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Destinations are named by their redacted URL, as everywhere else in the agent."""
    config = tmp_path / "collector.yml"
    config.write_text(
        "scrape_configs: [{job_name: j, static_configs: [{targets: ['h:1']}]}]\n"
        "remote_write: [{url: 'https://user:s3cret@receiver.invalid/api/v1/write'}]\n"
    )
    code, out, _ = run(
        capsys, "explain", "series", f"--config.file={config}", "--job=j", "-o", "json", "up"
    )
    assert code == 0
    assert "s3cret" not in out
    (destination,) = json.loads(out)["destinations"]
    assert destination["url"] == "https://user:xxxxx@receiver.invalid/api/v1/write"
