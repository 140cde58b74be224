"""Valid configs load into the expected dataclasses: defaults, global fallbacks, env, paths."""

from __future__ import annotations

import logging
import os
import pathlib
import textwrap
from collections.abc import Callable

import pytest

from collector.config import (
    DEFAULT_SCRAPE_PROTOCOLS,
    AgentOptions,
    Authorization,
    BasicAuth,
    Config,
    GlobalConfig,
    HTTPClientConfig,
    KubernetesSelector,
    QueueConfig,
    StaticConfig,
    load_config,
    load_config_text,
    redacted_yaml,
)
from collector.model.relabel import RelabelConfig

BASE = "/etc/collector"
REPO = pathlib.Path(__file__).resolve().parents[2]


def _load(text: str, env: dict[str, str] | None = None) -> Config:
    """Load dedented YAML with a fixed base directory and environment."""
    return load_config_text(textwrap.dedent(text), base_dir=BASE, env=env or {})


VALID: list[tuple[str, str, Callable[[Config], object], object]] = [
    # (id, yaml, getter, expected)
    ("empty-file", "", lambda c: c.global_config, GlobalConfig()),
    ("comment-only", "# nothing\n", lambda c: (c.scrape_configs, c.remote_write), ((), ())),
    ("empty-global", "global:\n", lambda c: c.global_config, GlobalConfig()),
    (
        "global-timeout-min",
        "global: {scrape_interval: 5s}",
        lambda c: c.global_config.scrape_timeout,
        5.0,
    ),
    (
        "global-interval-zero-is-default",
        "global: {scrape_interval: 0}",
        lambda c: c.global_config.scrape_interval,
        60.0,
    ),
    (
        "job-defaults",
        "scrape_configs: [{job_name: a}]",
        lambda c: (
            c.scrape_configs[0].scrape_interval,
            c.scrape_configs[0].scrape_timeout,
            c.scrape_configs[0].metrics_path,
            c.scrape_configs[0].scheme,
            c.scrape_configs[0].honor_timestamps,
            c.scrape_configs[0].enable_compression,
        ),
        (60.0, 10.0, "/metrics", "http", True, True),
    ),
    (
        "job-interval-from-global",
        "global: {scrape_interval: 30s}\nscrape_configs: [{job_name: a}]",
        lambda c: c.scrape_configs[0].scrape_interval,
        30.0,
    ),
    (
        "job-timeout-min-rule",
        "global: {scrape_timeout: 20s, scrape_interval: 1m}\n"
        "scrape_configs: [{job_name: a, scrape_interval: 5s}]",
        lambda c: c.scrape_configs[0].scrape_timeout,
        5.0,
    ),
    (
        "job-timeout-global",
        "global: {scrape_timeout: 20s}\nscrape_configs: [{job_name: a}]",
        lambda c: c.scrape_configs[0].scrape_timeout,
        20.0,
    ),
    (
        "job-timeout-explicit",
        "scrape_configs: [{job_name: a, scrape_interval: 1m, scrape_timeout: 1m}]",
        lambda c: c.scrape_configs[0].scrape_timeout,
        60.0,
    ),
    (
        "limits-from-global",
        "global: {sample_limit: 500, label_limit: 30, body_size_limit: 1MB, target_limit: 9,"
        " label_name_length_limit: 7, label_value_length_limit: 8, keep_dropped_targets: 3}\n"
        "scrape_configs: [{job_name: a, label_limit: 10}]",
        lambda c: (
            c.scrape_configs[0].sample_limit,
            c.scrape_configs[0].label_limit,
            c.scrape_configs[0].body_size_limit,
            c.scrape_configs[0].target_limit,
            c.scrape_configs[0].label_name_length_limit,
            c.scrape_configs[0].label_value_length_limit,
            c.scrape_configs[0].keep_dropped_targets,
        ),
        (500, 10, 1024 * 1024, 9, 7, 8, 3),
    ),
    (
        "body-size-int",
        "scrape_configs: [{job_name: a, body_size_limit: 100}]",
        lambda c: c.scrape_configs[0].body_size_limit,
        100,
    ),
    (
        "protocols-default",
        "scrape_configs: [{job_name: a}]",
        lambda c: c.scrape_configs[0].scrape_protocols,
        DEFAULT_SCRAPE_PROTOCOLS,
    ),
    (
        "protocols-native-histograms-off",
        "scrape_configs: [{job_name: a, scrape_native_histograms: false}]",
        lambda c: c.scrape_configs[0].scrape_protocols,
        DEFAULT_SCRAPE_PROTOCOLS,
    ),
    (
        "protocols-from-global",
        "global: {scrape_protocols: [PrometheusText0.0.4]}\nscrape_configs: [{job_name: a}]",
        lambda c: (c.global_config.scrape_protocols, c.scrape_configs[0].scrape_protocols),
        (("PrometheusText0.0.4",), ("PrometheusText0.0.4",)),
    ),
    (
        "protocols-job-wins",
        "global: {scrape_protocols: [PrometheusText0.0.4]}\n"
        "scrape_configs: [{job_name: a, scrape_protocols: [OpenMetricsText1.0.0]}]",
        lambda c: c.scrape_configs[0].scrape_protocols,
        ("OpenMetricsText1.0.0",),
    ),
    (
        "fallback-protocol",
        "scrape_configs: [{job_name: a, fallback_scrape_protocol: PrometheusText0.0.4}]",
        lambda c: c.scrape_configs[0].fallback_scrape_protocol,
        "PrometheusText0.0.4",
    ),
    (
        "extra-metrics-from-global",
        "global: {extra_scrape_metrics: true}\nscrape_configs: [{job_name: a}, {job_name: b, "
        "extra_scrape_metrics: false}]",
        lambda c: (
            c.scrape_configs[0].extra_scrape_metrics,
            c.scrape_configs[1].extra_scrape_metrics,
        ),
        (True, False),
    ),
    (
        "validation-legacy-global",
        "global: {metric_name_validation_scheme: legacy}\nscrape_configs: [{job_name: a}]",
        lambda c: (
            c.global_config.metric_name_escaping_scheme,
            c.scrape_configs[0].metric_name_validation_scheme,
            c.scrape_configs[0].metric_name_escaping_scheme,
        ),
        ("underscores", "legacy", "underscores"),
    ),
    (
        "validation-legacy-job",
        "scrape_configs: [{job_name: a, metric_name_validation_scheme: legacy}]",
        lambda c: (
            c.scrape_configs[0].metric_name_validation_scheme,
            c.scrape_configs[0].metric_name_escaping_scheme,
        ),
        ("legacy", "underscores"),
    ),
    (
        "external-labels-sorted",
        "global: {external_labels: {z: 1, a: b}}",
        lambda c: c.global_config.external_labels,
        (("a", "b"), ("z", "1")),
    ),
    (
        "scalar-text-kept",
        "scrape_configs: [{job_name: 2024, static_configs: [{targets: [a],"
        " labels: {version: 1.10, on: yes, port: 0x10}}]}]",
        lambda c: (c.scrape_configs[0].job_name, c.scrape_configs[0].static_configs[0].labels),
        ("2024", (("on", "yes"), ("port", "0x10"), ("version", "1.10"))),
    ),
    (
        "static-targets",
        "scrape_configs: [{job_name: a, static_configs: [{targets: [a:1, b:2],"
        " labels: {env: x}}, {targets: []}]}]",
        lambda c: c.scrape_configs[0].static_configs,
        (StaticConfig(targets=("a:1", "b:2"), labels=(("env", "x"),)), StaticConfig()),
    ),
    (
        "static-slash-with-relabel",
        "scrape_configs: [{job_name: a, static_configs: [{targets: [h/p]}],"
        " relabel_configs: [{target_label: x, replacement: y}]}]",
        lambda c: c.scrape_configs[0].static_configs[0].targets,
        ("h/p",),
    ),
    (
        "params",
        "scrape_configs: [{job_name: a, params: {module: [http_2xx], x: [a, b]}}]",
        lambda c: c.scrape_configs[0].params,
        (("module", ("http_2xx",)), ("x", ("a", "b"))),
    ),
    (
        "bearer-token-legacy",
        "scrape_configs: [{job_name: a, bearer_token: tok}]",
        lambda c: c.scrape_configs[0].http_client.authorization,
        Authorization(credentials="tok"),
    ),
    (
        "bearer-token-file-legacy",
        "scrape_configs: [{job_name: a, bearer_token_file: tok.txt}]",
        lambda c: c.scrape_configs[0].http_client.authorization,
        Authorization(credentials_file=f"{BASE}/tok.txt"),
    ),
    (
        "authorization-type",
        "scrape_configs: [{job_name: a, authorization: {type: ' Token ', credentials: c}}]",
        lambda c: c.scrape_configs[0].http_client.authorization,
        Authorization(type="Token", credentials="c"),
    ),
    (
        "basic-auth-paths",
        "scrape_configs: [{job_name: a, basic_auth: {username: u, password_file: /abs/pw}}]",
        lambda c: c.scrape_configs[0].http_client.basic_auth,
        BasicAuth(username="u", password_file="/abs/pw"),
    ),
    (
        "basic-auth-empty-mapping",
        "scrape_configs: [{job_name: a, basic_auth: {}}]",
        lambda c: c.scrape_configs[0].http_client.basic_auth,
        BasicAuth(),
    ),
    (
        "basic-auth-null",
        "scrape_configs: [{job_name: a, basic_auth: }]",
        lambda c: c.scrape_configs[0].http_client.basic_auth,
        None,
    ),
    (
        "tls-relative-paths",
        "scrape_configs: [{job_name: a, tls_config: {ca_file: ca.pem,"
        " cert_file: certs/c.pem, key_file: /k.pem, min_version: TLS12}}]",
        lambda c: (
            c.scrape_configs[0].http_client.tls_config.ca_file,
            c.scrape_configs[0].http_client.tls_config.cert_file,
            c.scrape_configs[0].http_client.tls_config.key_file,
            c.scrape_configs[0].http_client.tls_config.min_version,
        ),
        (f"{BASE}/ca.pem", f"{BASE}/certs/c.pem", "/k.pem", "TLS12"),
    ),
    (
        "http-headers",
        "scrape_configs: [{job_name: a, http_headers: {X-Tenant: {values: [t1]}}}]",
        lambda c: c.scrape_configs[0].http_client.http_headers,
        (("X-Tenant", ("t1",)),),
    ),
    (
        "proxy",
        "scrape_configs: [{job_name: a, proxy_url: 'http://p.invalid:3128',"
        " no_proxy: localhost, proxy_connect_header: {X-A: [b]}}]",
        lambda c: (
            c.scrape_configs[0].http_client.proxy_url,
            c.scrape_configs[0].http_client.proxy_connect_header,
        ),
        ("http://p.invalid:3128", (("X-A", ("b",)),)),
    ),
    (
        "file-sd",
        "scrape_configs: [{job_name: a, file_sd_configs: [{files: [t/*.json, /x/y.yml]}]}]",
        lambda c: (
            c.scrape_configs[0].file_sd_configs[0].files,
            c.scrape_configs[0].file_sd_configs[0].refresh_interval,
        ),
        ((f"{BASE}/t/*.json", "/x/y.yml"), 300.0),
    ),
    (
        "http-sd",
        "scrape_configs: [{job_name: a, http_sd_configs: [{url: 'https://sd.invalid/t',"
        " refresh_interval: 30s}]}]",
        lambda c: (
            c.scrape_configs[0].http_sd_configs[0].url,
            c.scrape_configs[0].http_sd_configs[0].refresh_interval,
        ),
        ("https://sd.invalid/t", 30.0),
    ),
    (
        "k8s-full",
        "scrape_configs: [{job_name: a, kubernetes_sd_configs: [{role: endpoints,"
        " kubeconfig_file: kube/config, namespaces: {names: [a, b]},"
        " selectors: [{role: pod, label: 'app in (web, api),!canary', field: 'spec.nodeName=n1'},"
        " {role: service, label: 'tier=front'}], attach_metadata: {node: true}}]}]",
        lambda c: (
            c.scrape_configs[0].kubernetes_sd_configs[0].kubeconfig_file,
            c.scrape_configs[0].kubernetes_sd_configs[0].namespaces,
            c.scrape_configs[0].kubernetes_sd_configs[0].selectors,
            c.scrape_configs[0].kubernetes_sd_configs[0].attach_metadata.node,
        ),
        (
            f"{BASE}/kube/config",
            ("a", "b"),
            (
                KubernetesSelector(
                    role="pod", label="app in (web, api),!canary", field="spec.nodeName=n1"
                ),
                KubernetesSelector(role="service", label="tier=front"),
            ),
            True,
        ),
    ),
    (
        "k8s-api-server-http",
        "scrape_configs: [{job_name: a, kubernetes_sd_configs: [{role: node,"
        " api_server: 'https://k8s.invalid:6443', bearer_token: t,"
        " tls_config: {insecure_skip_verify: true}}]}]",
        lambda c: c.scrape_configs[0].kubernetes_sd_configs[0].http_client.authorization,
        Authorization(credentials="t"),
    ),
    (
        "k8s-explicit-default-http",
        "scrape_configs: [{job_name: a, kubernetes_sd_configs: [{role: pod,"
        " follow_redirects: true}]}]",
        lambda c: c.scrape_configs[0].kubernetes_sd_configs[0].http_client,
        HTTPClientConfig(),
    ),
    (
        "k8s-own-namespace",
        "scrape_configs: [{job_name: a, kubernetes_sd_configs: [{role: pod,"
        " namespaces: {own_namespace: true}}]}]",
        lambda c: c.scrape_configs[0].kubernetes_sd_configs[0].own_namespace,
        True,
    ),
    (
        "apiserver-proxy (collector)",
        "scrape_configs: [{job_name: a, scrape_via_apiserver_proxy: true}]",
        lambda c: c.scrape_configs[0].scrape_via_apiserver_proxy,
        True,
    ),
    (
        "relabel-rules",
        "scrape_configs: [{job_name: a, relabel_configs: [{source_labels: [x], target_label: y}],"
        " metric_relabel_configs: [{action: Drop, regex: go_.*, source_labels: [__name__]}]}]",
        lambda c: (c.scrape_configs[0].relabel_configs, c.scrape_configs[0].metric_relabel_configs),
        (
            (RelabelConfig(source_labels=("x",), target_label="y"),),
            (RelabelConfig(action="drop", regex="go_.*", source_labels=("__name__",)),),
        ),
    ),
    (
        "remote-write-defaults",
        "remote_write: [{url: 'http://rw.invalid/w'}]",
        lambda c: (
            c.remote_write[0].remote_timeout,
            c.remote_write[0].queue_config,
            c.remote_write[0].http_client.enable_http2,
            c.remote_write[0].http_client.follow_redirects,
            c.remote_write[0].metadata_config.send,
            c.remote_write[0].protobuf_message,
        ),
        (30.0, QueueConfig(), False, True, True, "prometheus.WriteRequest"),
    ),
    (
        "remote-write-queue",
        "remote_write: [{url: 'http://rw.invalid/w', queue_config:"
        " {max_shards: 4, min_backoff: 100ms, retry_on_http_429: true, sample_age_limit: 1h}}]",
        lambda c: c.remote_write[0].queue_config,
        QueueConfig(max_shards=4, min_backoff=0.1, retry_on_http_429=True, sample_age_limit=3600.0),
    ),
    (
        "remote-write-named",
        "remote_write: [{url: 'http://rw.invalid/w', name: vm,"
        " headers: {X-Scope-OrgID: t1}, protobuf_message: prometheus.WriteRequest}]",
        lambda c: (
            c.remote_write[0].name,
            c.remote_write[0].headers,
            c.remote_write[0].protobuf_message,
        ),
        ("vm", (("X-Scope-OrgID", "t1"),), "prometheus.WriteRequest"),
    ),
    (
        "remote-write-same-url-different-blocks",
        "remote_write: [{url: 'http://rw.invalid/w'},"
        " {url: 'http://rw.invalid/w', send_exemplars: false}]",
        lambda c: len({rw.name for rw in c.remote_write}),
        2,
    ),
    (
        "agent-empty-sections-ok",
        "rule_files: []\nalerting: {alertmanagers: []}\nremote_read:\n",
        lambda c: c.scrape_configs,
        (),
    ),
    (
        "yaml-anchor-merge",
        "scrape_configs:\n  - &base {job_name: a, scrape_interval: 7s}\n"
        "  - {<<: *base, job_name: b}\n",
        lambda c: [(s.job_name, s.scrape_interval) for s in c.scrape_configs],
        [("a", 7.0), ("b", 7.0)],
    ),
]


@pytest.mark.parametrize(
    ("text", "getter", "expected"), [c[1:] for c in VALID], ids=[c[0] for c in VALID]
)
def test_valid_config(text: str, getter: Callable[[Config], object], expected: object) -> None:
    """Each valid config loads and the selected values equal the expected ones."""
    assert getter(_load(text)) == expected


ENV_CASES: list[tuple[str, str, dict[str, str], Callable[[Config], object], object]] = [
    (
        "braces",
        "global: {external_labels: {replica: '${POD}'}}",
        {"POD": "p-0"},
        lambda c: c.global_config.external_labels,
        (("replica", "p-0"),),
    ),
    (
        "bare",
        "global: {external_labels: {replica: 'r-$POD-x'}}",
        {"POD": "p"},
        lambda c: c.global_config.external_labels,
        (("replica", "r-p-x"),),
    ),
    (
        "dollar-dollar",
        "global: {external_labels: {price: '$$5'}}",
        {},
        lambda c: c.global_config.external_labels,
        (("price", "$5"),),
    ),
    (
        "undefined-drops-label",
        "global: {external_labels: {a: '${NOPE}', b: x}}",
        {},
        lambda c: c.global_config.external_labels,
        (("b", "x"),),
    ),
    (
        "everywhere",
        "scrape_configs: [{job_name: '${JOB}', static_configs: [{targets: ['${HOST}:9100']}],"
        " kubernetes_sd_configs: [{role: pod,"
        " selectors: [{role: pod, field: 'spec.nodeName=${NODE}'}]}]}]",
        {"JOB": "node", "HOST": "10.0.0.1", "NODE": "n1"},
        lambda c: (
            c.scrape_configs[0].job_name,
            c.scrape_configs[0].static_configs[0].targets,
            c.scrape_configs[0].kubernetes_sd_configs[0].selectors[0].field,
        ),
        ("node", ("10.0.0.1:9100",), "spec.nodeName=n1"),
    ),
    (
        "numbers-and-bools",
        "global: {sample_limit: '${LIMIT}'}\nscrape_configs: [{job_name: a,"
        " honor_labels: '${HONOR}', body_size_limit: '${SIZE}'}]",
        {"LIMIT": "500", "HONOR": "true", "SIZE": "10MB"},
        lambda c: (
            c.global_config.sample_limit,
            c.scrape_configs[0].honor_labels,
            c.scrape_configs[0].body_size_limit,
        ),
        (500, True, 10 * 1024 * 1024),
    ),
    (
        "relabel-templates-untouched",
        "scrape_configs: [{job_name: a, relabel_configs: [{source_labels: [x], regex: '${RE}',"
        " target_label: 'tl_$1', replacement: '${1}x'}]}]",
        {"RE": "(n.*)", "1": "BAD"},
        lambda c: c.scrape_configs[0].relabel_configs[0],
        RelabelConfig(
            source_labels=("x",), regex="(n.*)", target_label="tl_$1", replacement="${1}x"
        ),
    ),
    (
        "keys-untouched",
        "global: {external_labels: {'$K': v}}",
        {"K": "k"},
        lambda c: c.global_config.external_labels,
        (("$K", "v"),),
    ),
    (
        "remote-write-url",
        "remote_write: [{url: '${RW}'}]",
        {"RW": "http://vm.invalid:8428/api/v1/write"},
        lambda c: c.remote_write[0].url,
        "http://vm.invalid:8428/api/v1/write",
    ),
]


@pytest.mark.parametrize(
    ("text", "env", "getter", "expected"), [c[1:] for c in ENV_CASES], ids=[c[0] for c in ENV_CASES]
)
def test_env_expansion(
    text: str, env: dict[str, str], getter: Callable[[Config], object], expected: object
) -> None:
    """${VAR}/$VAR/$$ are expanded in values everywhere, except relabel templates and keys."""
    assert getter(_load(text, env)) == expected


def test_undefined_env_logs_warning(caplog: pytest.LogCaptureFixture) -> None:
    """An undefined variable expands to "" and logs a warning naming it and the YAML path."""
    with caplog.at_level(logging.WARNING, logger="collector.config"):
        _load("global: {external_labels: {a: '${MISSING_VAR}'}}")
    assert "MISSING_VAR" in caplog.text
    assert "global.external_labels.a" in caplog.text


def test_remote_name_is_hash_prefix() -> None:
    """An unnamed remote_write gets the first 6 hex chars of its block's hash as its name."""
    config = _load("remote_write: [{url: 'http://rw.invalid/w'}]")
    rw = config.remote_write[0]
    assert len(rw.config_hash) == 32
    assert rw.name == rw.config_hash[:6]
    again = _load("remote_write:\n  - url: http://rw.invalid/w\n")
    assert again.remote_write[0].config_hash == rw.config_hash


def test_remote_name_changes_with_block() -> None:
    """Changing anything in the block changes its identity; the name given wins over the hash."""
    a = _load("remote_write: [{url: 'http://rw.invalid/w'}]").remote_write[0]
    b = _load("remote_write: [{url: 'http://rw.invalid/w', remote_timeout: 1m}]").remote_write[0]
    c = _load("remote_write: [{url: 'http://rw.invalid/w', name: vm}]").remote_write[0]
    assert a.config_hash != b.config_hash
    assert c.name == "vm"


def test_source_and_path_kept(tmp_path: pathlib.Path) -> None:
    """The original text and file path are kept on the Config; paths resolve to the file's dir."""
    text = "scrape_configs: [{job_name: a, bearer_token_file: tok}]  # ${NOT_EXPANDED}\n"
    path = tmp_path / "c.yml"
    path.write_text(text)
    config = load_config(str(path), env={})
    assert config.source == text
    assert config.path == str(path)
    assert config.scrape_configs[0].http_client.authorization == Authorization(
        credentials_file=str(tmp_path / "tok")
    )


def test_scrape_config_files(tmp_path: pathlib.Path) -> None:
    """scrape_config_files globs add jobs after the main file's, with their own relative paths."""
    (tmp_path / "jobs").mkdir()
    (tmp_path / "jobs" / "b.yml").write_text(
        "scrape_configs:\n  - job_name: b\n    file_sd_configs: [{files: [t.json]}]\n"
    )
    (tmp_path / "jobs" / "c.yml").write_text("scrape_configs:\n  - job_name: c\n")
    (tmp_path / "main.yml").write_text(
        "global: {scrape_interval: 20s}\nscrape_config_files: [jobs/*.yml]\n"
        "scrape_configs: [{job_name: a}]\n"
    )
    config = load_config(str(tmp_path / "main.yml"), env={})
    assert [s.job_name for s in config.scrape_configs] == ["a", "b", "c"]
    assert config.scrape_configs[1].scrape_interval == 20.0
    assert config.scrape_configs[1].file_sd_configs[0].files == (str(tmp_path / "jobs" / "t.json"),)
    assert config.scrape_config_files == (str(tmp_path / "jobs" / "*.yml"),)


def test_missing_file_is_config_error(tmp_path: pathlib.Path) -> None:
    """An unreadable file is a ConfigError naming the file, not an OSError."""
    from collector.errors import ConfigError

    with pytest.raises(ConfigError) as info:
        load_config(str(tmp_path / "nope.yml"))
    assert info.value.file == str(tmp_path / "nope.yml")


def test_redacted_yaml_hides_secrets() -> None:
    """Passwords, credentials, bearer tokens, TLS keys and proxy headers become <secret>."""
    config = _load(
        """
        scrape_configs:
          - job_name: a
            basic_auth: {username: user, password: hunter2}
            tls_config: {cert: CERTDATA, key: KEYDATA}
            proxy_url: http://p.invalid
            proxy_connect_header: {Proxy-Token: [pt-secret]}
          - job_name: b
            bearer_token: tok-secret
        remote_write:
          - url: http://user:pw-secret@rw.invalid/w
            authorization: {credentials: cred-secret}
        """
    )
    rendered = redacted_yaml(config)
    for secret in ("hunter2", "KEYDATA", "pt-secret", "tok-secret", "cred-secret", "pw-secret"):
        assert secret not in rendered
    assert rendered.count("<secret>") == 5
    assert "username: user" in rendered
    assert "CERTDATA" in rendered


def test_redacted_yaml_round_trips() -> None:
    """A secret-free config rendered by redacted_yaml loads back to an equal config."""
    text = """
        global:
          scrape_interval: 15s
          external_labels: {region: eu}
          sample_limit: 100
        scrape_configs:
          - job_name: a
            scrape_interval: 1m30s
            params: {module: [x]}
            static_configs: [{targets: [a:1], labels: {env: e}}]
            relabel_configs: [{source_labels: [__address__], target_label: instance}]
            metric_relabel_configs: [{action: labeldrop, regex: tmp_.*}]
          - job_name: k
            kubernetes_sd_configs:
              - role: pod
                namespaces: {names: [x]}
                selectors: [{role: pod, field: spec.nodeName=n}]
            scrape_via_apiserver_proxy: true
            http_sd_configs: [{url: 'http://sd.invalid/'}]
            file_sd_configs: [{files: [/t/*.json]}]
        remote_write:
          - url: http://rw.invalid/w
            queue_config: {max_shards: 3}
            write_relabel_configs: [{action: drop, source_labels: [__name__], regex: x}]
    """
    first = _load(text)
    second = load_config_text(redacted_yaml(first), base_dir=BASE, env={})
    assert second.global_config == first.global_config
    assert second.scrape_configs == first.scrape_configs
    assert [rw.url for rw in second.remote_write] == [rw.url for rw in first.remote_write]
    assert second.remote_write[0].queue_config == first.remote_write[0].queue_config


@pytest.mark.parametrize(
    ("listen", "environ", "self_address"),
    [
        ("0.0.0.0:9099", {}, "127.0.0.1:9099"),
        (":9999", {}, "127.0.0.1:9999"),
        ("127.0.0.5:9100", {}, "127.0.0.5:9100"),
        ("0.0.0.0:9099", {"COLLECTOR_SELF_ADDRESS": "agent.local:1"}, "agent.local:1"),
    ],
)
def test_example_config_loads(listen: str, environ: dict[str, str], self_address: str) -> None:
    """config/collector.yml is valid: its self-scrape follows --web.listen-address (unless the
    environment says otherwise), then node_exporter and VictoriaMetrics remote write."""
    env = AgentOptions(listen_address=listen).config_env(environ)
    config = load_config(str(REPO / "config" / "collector.yml"), env=env)
    targets = {s.job_name: s.static_configs[0].targets for s in config.scrape_configs}
    assert targets == {"collector": (self_address,), "node": ("127.0.0.1:9100",)}
    assert [rw.url for rw in config.remote_write] == ["http://127.0.0.1:8428/api/v1/write"]


@pytest.mark.parametrize("name", sorted(os.listdir(REPO / "config" / "examples")))
def test_example_configs_load(name: str) -> None:
    """Every file in config/examples loads with its documented environment."""
    env = {"NODE_NAME": "n1", "CLUSTER_NAME": "c", "REMOTE_WRITE_URL": "http://vm.invalid/w"}
    load_config(str(REPO / "config" / "examples" / name), env=env)


def test_agent_options_defaults() -> None:
    """AgentOptions defaults match the documented flag defaults."""
    options = AgentOptions()
    assert (options.config_file, options.listen_address, options.storage_path) == (
        "config/collector.yml",
        "0.0.0.0:9099",
        "data/",
    )
