"""Invalid configs: every rule refuses the file with the YAML path and Prometheus's message.

One row per rule. Messages were checked against Prometheus 3.x (``config/config.go``,
``prometheus/common/config``, ``discovery/{file,http,kubernetes}``) where Prometheus has the
rule; collector-only rules are marked in the row id.
"""

from __future__ import annotations

import pathlib
import textwrap

import pytest

from collector.config import load_config_text
from collector.errors import ConfigError

BASE = "/etc/collector"


def _job(body: str, *, name: str = "j") -> str:
    """A config with one job ``name`` whose extra keys are ``body`` (YAML, 4-space indented)."""
    return f"scrape_configs:\n  - job_name: {name}\n" + textwrap.indent(
        textwrap.dedent(body), "    "
    )


def _rw(body: str) -> str:
    """A config with one remote_write entry to a valid URL plus ``body``."""
    return "remote_write:\n  - url: http://rw.invalid/api/v1/write\n" + textwrap.indent(
        textwrap.dedent(body), "    "
    )


def _k8s(body: str) -> str:
    """A config with one job holding one kubernetes_sd_config made of ``body``."""
    return _job("kubernetes_sd_configs:\n" + textwrap.indent(textwrap.dedent(body), "  "))


CASES: list[tuple[str, str, str, str]] = [
    # (id, yaml, path, message)
    # --- YAML and strictness
    (
        "yaml-syntax",
        "global: [",
        "",
        "yaml: line 1: did not find expected node content",
    ),
    (
        "duplicate-key",
        "global:\n  scrape_interval: 1s\n  scrape_interval: 2s\n",
        "",
        'line 3: mapping key "scrape_interval" already defined at line 2',
    ),
    ("top-not-mapping", "- a\n", "", "cannot unmarshal !!seq into config"),
    ("unknown-top", "foo: 1\n", "foo", "field foo not found in type config"),
    ("unknown-global", "global:\n  foo: 1\n", "global.foo", "field foo not found in type global"),
    (
        "unknown-job-key",
        _job("foo: bar\n"),
        "scrape_configs[0].foo",
        "field foo not found in type scrape_config",
    ),
    (
        "unsupported-sd",
        _job("consul_sd_configs: [{server: x}]\n"),
        "scrape_configs[0].consul_sd_configs",
        "field consul_sd_configs is not supported by collector",
    ),
    (
        "unsupported-oauth2",
        _job("oauth2: {client_id: x}\n"),
        "scrape_configs[0].oauth2",
        "field oauth2 is not supported by collector",
    ),
    (
        "unsupported-tracing",
        "tracing: {endpoint: x}\n",
        "tracing",
        "field tracing is not supported by collector",
    ),
    (
        "wrong-type-int",
        _job("sample_limit: many\n"),
        "scrape_configs[0].sample_limit",
        "cannot unmarshal !!str `many` into uint",
    ),
    (
        "wrong-type-negative",
        _job("sample_limit: -1\n"),
        "scrape_configs[0].sample_limit",
        "cannot unmarshal !!int `-1` into uint",
    ),
    (
        "wrong-type-bool",
        _job("honor_labels: 'true'\n"),
        "scrape_configs[0].honor_labels",
        "cannot unmarshal !!str `true` into bool",
    ),
    (
        "wrong-type-string",
        _job("metrics_path: [a]\n"),
        "scrape_configs[0].metrics_path",
        "cannot unmarshal !!seq into string",
    ),
    (
        "wrong-type-list",
        "scrape_configs: {a: 1}\n",
        "scrape_configs",
        "cannot unmarshal !!map into a list",
    ),
    # --- agent mode
    (
        "agent-rule-files",
        "rule_files: [a.yml]\n",
        "rule_files",
        "field rule_files is not allowed in agent mode",
    ),
    (
        "agent-alerting",
        "alerting:\n  alertmanagers: [{static_configs: [{targets: [a]}]}]\n",
        "alerting",
        "field alerting is not allowed in agent mode",
    ),
    (
        "agent-remote-read",
        "remote_read: [{url: http://x}]\n",
        "remote_read",
        "field remote_read is not allowed in agent mode",
    ),
    # --- global
    (
        "global-bad-duration",
        "global:\n  scrape_interval: 5x\n",
        "global.scrape_interval",
        'not a valid duration string: "5x"',
    ),
    (
        "global-int-duration",
        "global:\n  scrape_interval: 30\n",
        "global.scrape_interval",
        'not a valid duration string: "30"',
    ),
    (
        "global-timeout",
        "global:\n  scrape_interval: 5s\n  scrape_timeout: 6s\n",
        "global.scrape_timeout",
        "global scrape timeout greater than scrape interval",
    ),
    (
        "global-label-name-legacy",
        "global:\n  metric_name_validation_scheme: legacy\n  external_labels: {a.b: x}\n",
        "global.external_labels.a.b",
        '"a.b" is not a valid label name',
    ),
    (
        "global-label-name-empty",
        "global:\n  external_labels: {'': x}\n",
        "global.external_labels.",
        '"" is not a valid label name',
    ),
    (
        "global-protocols-empty",
        "global:\n  scrape_protocols: []\n",
        "global.scrape_protocols",
        "scrape_protocols cannot be empty for global config",
    ),
    (
        "global-protocols-unknown",
        "global:\n  scrape_protocols: [Foo]\n",
        "global.scrape_protocols[0]",
        "scrape_protocols: unknown scrape protocol Foo, supported: [OpenMetricsText0.0.1 "
        "OpenMetricsText1.0.0 PrometheusProto PrometheusText0.0.4 PrometheusText1.0.0] for global "
        "config",
    ),
    (
        "global-protocols-dup",
        "global:\n  scrape_protocols: [PrometheusText0.0.4, prometheustext0.0.4]\n",
        "global.scrape_protocols[1]",
        "duplicated protocol in scrape_protocols, got [PrometheusText0.0.4 prometheustext0.0.4] "
        "for global config",
    ),
    (
        "global-validation-scheme",
        "global:\n  metric_name_validation_scheme: ascii\n",
        "global.metric_name_validation_scheme",
        "unknown global name validation method specified, must be either '', 'legacy' or 'utf8', "
        "got ascii",
    ),
    (
        "global-escaping",
        "global:\n  metric_name_escaping_scheme: nope\n",
        "global.metric_name_escaping_scheme",
        "unknown global name escaping method specified, must be one of 'allow-utf-8', "
        "'underscores', 'dots', or 'values', got \"nope\"",
    ),
    (
        "global-size",
        "global:\n  body_size_limit: 10kB\n",
        "global.body_size_limit",
        "invalid size \"10kB\": unknown unit 'kB'",
    ),
    # --- scrape_configs
    (
        "null-job",
        "scrape_configs: [null]\n",
        "scrape_configs[0]",
        "empty or null scrape config section",
    ),
    (
        "job-name-missing",
        "scrape_configs: [{scrape_interval: 1s}]\n",
        "scrape_configs[0]",
        "job_name is empty",
    ),
    (
        "job-name-duplicate",
        "scrape_configs:\n  - job_name: a\n  - job_name: b\n  - job_name: a\n",
        "scrape_configs[2].job_name",
        'found multiple scrape configs with job name "a"',
    ),
    (
        "job-bad-duration",
        _job("scrape_interval: 5x\n"),
        "scrape_configs[0].scrape_interval",
        'not a valid duration string: "5x"',
    ),
    (
        "job-timeout",
        _job("scrape_interval: 5s\nscrape_timeout: 10s\n"),
        "scrape_configs[0].scrape_timeout",
        'scrape timeout greater than scrape interval for scrape config with job name "j"',
    ),
    (
        "job-timeout-vs-global-interval",
        "global:\n  scrape_interval: 5s\n" + _job("scrape_timeout: 6s\n"),
        "scrape_configs[0].scrape_timeout",
        'scrape timeout greater than scrape interval for scrape config with job name "j"',
    ),
    (
        "job-protocols-empty",
        _job("scrape_protocols: []\n"),
        "scrape_configs[0].scrape_protocols",
        'scrape_protocols cannot be empty for scrape config with job name "j"',
    ),
    (
        "job-protocols-unknown",
        _job("scrape_protocols: [PrometheusText0.0.4, Text]\n"),
        "scrape_configs[0].scrape_protocols[1]",
        "scrape_protocols: unknown scrape protocol Text, supported: [OpenMetricsText0.0.1 "
        "OpenMetricsText1.0.0 PrometheusProto PrometheusText0.0.4 PrometheusText1.0.0] for scrape "
        'config with job name "j"',
    ),
    (
        "job-protocols-dup",
        _job("scrape_protocols: [PrometheusText0.0.4, PrometheusText0.0.4]\n"),
        "scrape_configs[0].scrape_protocols[1]",
        "duplicated protocol in scrape_protocols, got [PrometheusText0.0.4 PrometheusText0.0.4] "
        'for scrape config with job name "j"',
    ),
    (
        "job-fallback-protocol",
        _job("fallback_scrape_protocol: text\n"),
        "scrape_configs[0].fallback_scrape_protocol",
        'invalid fallback_scrape_protocol for scrape config with job name "j": unknown scrape '
        "protocol text, supported: [OpenMetricsText0.0.1 OpenMetricsText1.0.0 PrometheusProto "
        "PrometheusText0.0.4 PrometheusText1.0.0]",
    ),
    (
        "job-validation-scheme",
        _job("metric_name_validation_scheme: x\n"),
        "scrape_configs[0].metric_name_validation_scheme",
        "unknown scrape config name validation method specified, must be either '', 'legacy' or "
        "'utf8', got x",
    ),
    (
        "job-escaping-unknown",
        _job("metric_name_escaping_scheme: x\n"),
        "scrape_configs[0].metric_name_escaping_scheme",
        "unknown scrape config name escaping method specified, must be one of 'allow-utf-8', "
        "'underscores', 'dots', or 'values', got \"x\"",
    ),
    (
        "job-escaping-utf8-legacy",
        _job("metric_name_validation_scheme: legacy\nmetric_name_escaping_scheme: allow-utf-8\n"),
        "scrape_configs[0].metric_name_escaping_scheme",
        "utf8 metric names requested but validation scheme is not set to UTF8",
    ),
    (
        "job-size",
        _job("body_size_limit: 10\n").replace("10", "'10'"),
        "scrape_configs[0].body_size_limit",
        'invalid size "10": missing unit',
    ),
    (
        "job-params-scalar",
        _job("params: {module: x}\n"),
        "scrape_configs[0].params.module",
        "cannot unmarshal !!str `x` into []string",
    ),
    # --- static_configs
    (
        "static-url-target",
        _job("static_configs: [{targets: ['a:1', 'host/path:80']}]\n"),
        "scrape_configs[0].static_configs[0].targets[1]",
        '"host/path:80" is not a valid hostname',
    ),
    (
        "static-null",
        _job("static_configs: [null]\n"),
        "scrape_configs[0].static_configs[0]",
        "empty or null section in static_configs",
    ),
    (
        "static-empty",
        _job("static_configs: [{}]\n"),
        "scrape_configs[0].static_configs[0]",
        "empty or null section in static_configs",
    ),
    (
        "static-unknown",
        _job("static_configs: [{target: [a]}]\n"),
        "scrape_configs[0].static_configs[0].target",
        "field target not found in type static_config",
    ),
    (
        "static-label-name",
        _job("static_configs: [{targets: [a], labels: {'': x}}]\n"),
        "scrape_configs[0].static_configs[0].labels.",
        '"" is not a valid label name',
    ),
    # --- file_sd / http_sd
    (
        "file-sd-null",
        _job("file_sd_configs: [~]\n"),
        "scrape_configs[0].file_sd_configs[0]",
        "empty or null section in file_sd_configs",
    ),
    (
        "file-sd-no-files",
        _job("file_sd_configs: [{refresh_interval: 1m}]\n"),
        "scrape_configs[0].file_sd_configs[0]",
        "file service discovery config must contain at least one path name",
    ),
    (
        "file-sd-extension",
        _job("file_sd_configs: [{files: [targets.txt]}]\n"),
        "scrape_configs[0].file_sd_configs[0].files[0]",
        'path name "targets.txt" is not valid for file discovery',
    ),
    (
        "file-sd-glob-dir",
        _job("file_sd_configs: [{files: ['*/x.json']}]\n"),
        "scrape_configs[0].file_sd_configs[0].files[0]",
        'path name "*/x.json" is not valid for file discovery',
    ),
    (
        "http-sd-url-missing",
        _job("http_sd_configs: [{refresh_interval: 1m}]\n"),
        "scrape_configs[0].http_sd_configs[0]",
        "URL is missing",
    ),
    (
        "http-sd-url-scheme",
        _job("http_sd_configs: [{url: 'ftp://x/sd'}]\n"),
        "scrape_configs[0].http_sd_configs[0].url",
        "URL scheme must be 'http' or 'https'",
    ),
    (
        "http-sd-url-host",
        _job("http_sd_configs: [{url: 'http:///sd'}]\n"),
        "scrape_configs[0].http_sd_configs[0].url",
        "host is missing in URL",
    ),
    # --- kubernetes_sd_configs (spec §2.1)
    (
        "k8s-null",
        _job("kubernetes_sd_configs: [null]\n"),
        "scrape_configs[0].kubernetes_sd_configs[0]",
        "empty or null section in kubernetes_sd_configs",
    ),
    (
        "k8s-role-missing",
        _k8s("- namespaces: {names: [a]}\n"),
        "scrape_configs[0].kubernetes_sd_configs[0]",
        "role missing (one of: pod, service, endpoints, endpointslice, node, ingress)",
    ),
    (
        "k8s-role-unknown",
        _k8s("- role: deployment\n"),
        "scrape_configs[0].kubernetes_sd_configs[0].role",
        'unknown Kubernetes SD role "deployment"',
    ),
    (
        "k8s-unknown-key",
        _k8s("- role: pod\n  namespace: a\n"),
        "scrape_configs[0].kubernetes_sd_configs[0].namespace",
        "field namespace not found in type kubernetes_sd_config",
    ),
    (
        "k8s-kubeconfig-and-api-server",
        _k8s("- role: pod\n  api_server: https://k8s.invalid\n  kubeconfig_file: kc\n"),
        "scrape_configs[0].kubernetes_sd_configs[0]",
        "cannot use 'kubeconfig_file' and 'api_server' simultaneously",
    ),
    (
        "k8s-kubeconfig-and-http",
        _k8s("- role: pod\n  kubeconfig_file: kc\n  bearer_token: t\n"),
        "scrape_configs[0].kubernetes_sd_configs[0]",
        "cannot use a custom HTTP client configuration together with 'kubeconfig_file'",
    ),
    (
        "k8s-http-without-api-server",
        _k8s("- role: pod\n  tls_config: {insecure_skip_verify: true}\n"),
        "scrape_configs[0].kubernetes_sd_configs[0]",
        "to use custom HTTP client configuration please provide the 'api_server' URL explicitly",
    ),
    (
        "k8s-api-server-own-namespace",
        _k8s(
            "- role: pod\n  api_server: https://k8s.invalid\n  namespaces: {own_namespace: true}\n"
        ),
        "scrape_configs[0].kubernetes_sd_configs[0]",
        "cannot use 'api_server' and 'namespaces.own_namespace' simultaneously",
    ),
    (
        "k8s-kubeconfig-own-namespace",
        _k8s("- role: pod\n  kubeconfig_file: kc\n  namespaces: {own_namespace: true}\n"),
        "scrape_configs[0].kubernetes_sd_configs[0]",
        "cannot use 'kubeconfig_file' and 'namespaces.own_namespace' simultaneously",
    ),
    (
        "k8s-selector-duplicate",
        _k8s("- role: pod\n  selectors: [{role: pod, label: a=b}, {role: pod, field: x=y}]\n"),
        "scrape_configs[0].kubernetes_sd_configs[0].selectors[1].role",
        "duplicated selector role: pod",
    ),
    (
        "k8s-selector-role-pod",
        _k8s("- role: pod\n  selectors: [{role: service, label: a=b}]\n"),
        "scrape_configs[0].kubernetes_sd_configs[0].selectors[0].role",
        "pod role supports only pod, node selectors",
    ),
    (
        "k8s-selector-role-endpoints",
        _k8s("- role: endpoints\n  selectors: [{role: node}]\n"),
        "scrape_configs[0].kubernetes_sd_configs[0].selectors[0].role",
        "endpoints role supports only pod, service, endpoints selectors",
    ),
    (
        "k8s-selector-role-endpointslice",
        _k8s("- role: endpointslice\n  selectors: [{role: endpoints}]\n"),
        "scrape_configs[0].kubernetes_sd_configs[0].selectors[0].role",
        "endpointslice role supports only pod, service, endpointslice selectors",
    ),
    (
        "k8s-selector-role-ingress",
        _k8s("- role: ingress\n  selectors: [{role: pod}]\n"),
        "scrape_configs[0].kubernetes_sd_configs[0].selectors[0].role",
        "ingress role supports only ingress selectors",
    ),
    (
        "k8s-selector-role-missing",
        _k8s("- role: node\n  selectors: [{label: a=b}]\n"),
        "scrape_configs[0].kubernetes_sd_configs[0].selectors[0]",
        "node role supports only node selectors",
    ),
    (
        "k8s-selector-role-unknown",
        _k8s("- role: node\n  selectors: [{role: nodes}]\n"),
        "scrape_configs[0].kubernetes_sd_configs[0].selectors[0].role",
        'unknown Kubernetes SD role "nodes"',
    ),
    (
        "k8s-label-selector",
        _k8s("- role: pod\n  selectors: [{role: pod, label: 'a==='}]\n"),
        "scrape_configs[0].kubernetes_sd_configs[0].selectors[0].label",
        "invalid label selector \"a===\": unable to parse requirement 'a==='",
    ),
    (
        "k8s-label-selector-empty-term",
        _k8s("- role: pod\n  selectors: [{role: pod, label: 'a=b,'}]\n"),
        "scrape_configs[0].kubernetes_sd_configs[0].selectors[0].label",
        'invalid label selector "a=b,": empty requirement',
    ),
    (
        "k8s-field-selector",
        _k8s("- role: pod\n  selectors: [{role: pod, field: spec.nodeName}]\n"),
        "scrape_configs[0].kubernetes_sd_configs[0].selectors[0].field",
        "invalid field selector \"spec.nodeName\": can't understand 'spec.nodeName'",
    ),
    (
        "k8s-attach-metadata-unknown",
        _k8s("- role: pod\n  attach_metadata: {replicaset: true}\n"),
        "scrape_configs[0].kubernetes_sd_configs[0].attach_metadata.replicaset",
        "field replicaset not found in type attach_metadata",
    ),
    (
        "k8s-api-server-url (collector)",
        _k8s("- role: pod\n  api_server: k8s.invalid\n"),
        "scrape_configs[0].kubernetes_sd_configs[0].api_server",
        'invalid URL "k8s.invalid": must be an absolute http or https URL',
    ),
    # --- HTTP client / auth
    (
        "bearer-both",
        _job("bearer_token: a\nbearer_token_file: b\n"),
        "scrape_configs[0]",
        "at most one of bearer_token & bearer_token_file must be configured",
    ),
    (
        "basic-and-bearer",
        _job("bearer_token: a\nbasic_auth: {username: u}\n"),
        "scrape_configs[0]",
        "at most one of basic_auth, oauth2, bearer_token & bearer_token_file must be configured",
    ),
    (
        "basic-and-authorization",
        _job("basic_auth: {username: u}\nauthorization: {credentials: c}\n"),
        "scrape_configs[0]",
        "at most one of basic_auth, oauth2 & authorization must be configured",
    ),
    (
        "authorization-and-bearer",
        _job("bearer_token_file: f\nauthorization: {credentials: c}\n"),
        "scrape_configs[0]",
        "authorization is not compatible with bearer_token & bearer_token_file",
    ),
    (
        "password-and-file",
        _job("basic_auth: {username: u, password: p, password_file: f}\n"),
        "scrape_configs[0].basic_auth",
        "at most one of basic_auth password & password_file must be configured",
    ),
    (
        "username-and-file",
        _job("basic_auth: {username: u, username_file: f}\n"),
        "scrape_configs[0].basic_auth",
        "at most one of basic_auth username & username_file must be configured",
    ),
    (
        "credentials-and-file",
        _job("authorization: {credentials: c, credentials_file: f}\n"),
        "scrape_configs[0].authorization",
        "at most one of authorization credentials & credentials_file must be configured",
    ),
    (
        "authorization-basic",
        _job("authorization: {type: Basic, credentials: c}\n"),
        "scrape_configs[0].authorization.type",
        'authorization type cannot be set to "basic", use "basic_auth" instead',
    ),
    (
        "tls-ca-both",
        _job("tls_config: {ca: x, ca_file: y}\n"),
        "scrape_configs[0].tls_config",
        "at most one of ca and ca_file must be configured",
    ),
    (
        "tls-cert-without-key",
        _job("tls_config: {cert_file: c}\n"),
        "scrape_configs[0].tls_config",
        "exactly one of key or key_file must be configured when a client certificate is configured",
    ),
    (
        "tls-key-without-cert",
        _job("tls_config: {key_file: k}\n"),
        "scrape_configs[0].tls_config",
        "exactly one of cert or cert_file must be configured when a client key is configured",
    ),
    (
        "tls-version",
        _job("tls_config: {min_version: TLS14}\n"),
        "scrape_configs[0].tls_config.min_version",
        "unknown TLS version: TLS14",
    ),
    (
        "proxy-connect-header",
        _job("proxy_connect_header: {X-A: [b]}\n"),
        "scrape_configs[0]",
        "if proxy_connect_header is configured, proxy_url or proxy_from_environment must also be "
        "configured",
    ),
    (
        "proxy-env-and-url",
        _job("proxy_from_environment: true\nproxy_url: http://p.invalid\n"),
        "scrape_configs[0]",
        "if proxy_from_environment is configured, proxy_url must not be configured",
    ),
    (
        "no-proxy-without-url",
        _job("no_proxy: localhost\n"),
        "scrape_configs[0]",
        "if no_proxy is configured, proxy_url must also be configured",
    ),
    (
        "http-headers-reserved",
        _job("http_headers: {user-agent: {values: [x]}}\n"),
        "scrape_configs[0].http_headers.user-agent",
        'setting header "User-Agent" is not allowed',
    ),
    (
        "http-headers-secrets",
        _job("http_headers: {X-A: {secrets: [x]}}\n"),
        "scrape_configs[0].http_headers.X-A.secrets",
        "field secrets is not supported by collector",
    ),
    # --- relabel rules (validated by collector.model.relabel, path prefixed here)
    (
        "relabel-null",
        _job("relabel_configs: [null]\n"),
        "scrape_configs[0].relabel_configs[0]",
        "empty or null target relabeling rule in scrape config",
    ),
    (
        "metric-relabel-null",
        _job("metric_relabel_configs: [~]\n"),
        "scrape_configs[0].metric_relabel_configs[0]",
        "empty or null metric relabeling rule in scrape config",
    ),
    (
        "relabel-action",
        _job("relabel_configs: [{action: repalce}]\n"),
        "scrape_configs[0].relabel_configs[0].action",
        'unknown relabel action "repalce"',
    ),
    (
        "relabel-hashmod",
        _job("relabel_configs:\n  - {action: hashmod, target_label: x}\n"),
        "scrape_configs[0].relabel_configs[0].modulus",
        "relabel configuration for hashmod requires non-zero modulus",
    ),
    # --- remote_write
    (
        "rw-null",
        "remote_write: [null]\n",
        "remote_write[0]",
        "empty or null remote write config section",
    ),
    (
        "rw-url-missing",
        "remote_write: [{name: a}]\n",
        "remote_write[0]",
        "url for remote_write is empty",
    ),
    (
        "rw-url-scheme (collector)",
        "remote_write: [{url: 'localhost:8428/api/v1/write'}]\n",
        "remote_write[0].url",
        'invalid URL "localhost:8428/api/v1/write": must be an absolute http or https URL',
    ),
    (
        "rw-header-authorization",
        _rw("headers: {Authorization: x}\n"),
        "remote_write[0].headers.Authorization",
        "authorization header must be changed via the basic_auth, authorization, oauth2, sigv4, "
        "azuread or google_iam parameter",
    ),
    (
        "rw-header-reserved",
        _rw("headers: {content-type: x}\n"),
        "remote_write[0].headers.content-type",
        "content-type is a reserved header. It must not be changed",
    ),
    (
        "rw-header-reserved-amz",
        _rw("headers: {X-Amz-Date: x}\n"),
        "remote_write[0].headers.X-Amz-Date",
        "X-Amz-Date is a reserved header. It must not be changed",
    ),
    (
        "rw-two-auth",
        _rw("basic_auth: {username: u}\nauthorization: {credentials: c}\n"),
        "remote_write[0]",
        "at most one of basic_auth, oauth2 & authorization must be configured",
    ),
    (
        "rw-sigv4",
        _rw("sigv4: {region: x}\n"),
        "remote_write[0].sigv4",
        "field sigv4 is not supported by collector",
    ),
    (
        "rw-protobuf-message",
        _rw("protobuf_message: v3\n"),
        "remote_write[0].protobuf_message",
        "invalid protobuf_message value: unknown remote write protobuf message v3, supported: "
        "prometheus.WriteRequest, io.prometheus.write.v2.Request",
    ),
    (
        "rw-relabel-null",
        _rw("write_relabel_configs: [null]\n"),
        "remote_write[0].write_relabel_configs[0]",
        "empty or null relabeling rule in remote write config",
    ),
    (
        "rw-relabel-regex",
        _rw("write_relabel_configs: [{regex: '(', action: drop}]\n"),
        "remote_write[0].write_relabel_configs[0].regex",
        "",
    ),
    (
        "rw-timeout",
        _rw("remote_timeout: 30\n"),
        "remote_write[0].remote_timeout",
        'not a valid duration string: "30"',
    ),
    (
        "rw-name-duplicate",
        "remote_write:\n  - {url: 'http://a.invalid/w', name: x}\n  - {url: 'http://b.invalid/w', "
        "name: x}\n",
        "remote_write[1].name",
        'found multiple remote write configs with job name "x"',
    ),
    (
        "rw-duplicate-block",
        "remote_write:\n  - {url: 'http://u:pw@a.invalid/w'}\n  - {url: 'http://u:pw@a.invalid/w'}\n",
        "remote_write[1]",
        "duplicate remote write configs are not allowed, found duplicate for URL: "
        "http://u:xxxxx@a.invalid/w",
    ),
    (
        "queue-max-shards",
        _rw("queue_config: {max_shards: 0}\n"),
        "remote_write[0].queue_config.max_shards",
        "remote write queue max_shards must be positive",
    ),
    (
        "queue-min-shards",
        _rw("queue_config: {min_shards: -1}\n"),
        "remote_write[0].queue_config.min_shards",
        "remote write queue min_shards must be positive",
    ),
    (
        "queue-min-gt-max",
        _rw("queue_config: {min_shards: 5, max_shards: 4}\n"),
        "remote_write[0].queue_config.min_shards",
        "remote write queue min_shards must not be greater than max_shards",
    ),
    (
        "queue-samples",
        _rw("queue_config: {max_samples_per_send: 0}\n"),
        "remote_write[0].queue_config.max_samples_per_send",
        "remote write queue max_samples_per_send must be positive",
    ),
    (
        "queue-capacity",
        _rw("queue_config: {capacity: 0}\n"),
        "remote_write[0].queue_config.capacity",
        "remote write queue capacity must be positive",
    ),
    (
        "queue-backoff",
        _rw("queue_config: {min_backoff: 1s, max_backoff: 500ms}\n"),
        "remote_write[0].queue_config.max_backoff",
        "remote write queue max_backoff must not be less than min_backoff",
    ),
    (
        "queue-unknown",
        _rw("queue_config: {shards: 1}\n"),
        "remote_write[0].queue_config.shards",
        "field shards not found in type queue_config",
    ),
    # --- scrape_config_files
    (
        "scrape-config-files-pattern",
        "scrape_config_files: ['*/jobs.yml']\n",
        "scrape_config_files[0]",
        'invalid scrape config file path "*/jobs.yml"',
    ),
    # --- environment expansion
    (
        "env-not-a-number",
        "global:\n  sample_limit: ${LIMIT}\n",
        "global.sample_limit",
        "cannot unmarshal !!str `ten` into uint",
    ),
]


@pytest.mark.parametrize(
    ("text", "path", "message"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_invalid_config(text: str, path: str, message: str) -> None:
    """Each invalid config is refused with the YAML path, its position and the message.

    Each row holds one mistake, and one mistake is one problem: nothing else is reported.
    """
    with pytest.raises(ConfigError) as info:
        load_config_text(text, base_dir=BASE, env={"LIMIT": "ten"}, file="c.yml")
    err = info.value
    assert err.path == path
    if message:
        assert err.message == message
    assert err.file == "c.yml"
    assert err.line >= 1
    assert err.column >= 1
    where = f"c.yml:{err.line}:{err.column}"
    assert str(err).startswith(f"{where}: {path}: " if path else f"{where}: ")
    assert err.problems == (err,)


def test_error_renders_file_position_path_and_message() -> None:
    """str() of the error is one line: file, line and column, YAML path, message."""
    with pytest.raises(ConfigError) as info:
        load_config_text(_job("scrape_interval: 5x\n"), base_dir=BASE, file="c.yml")
    assert (
        str(info.value)
        == 'c.yml:3:5: scrape_configs[0].scrape_interval: not a valid duration string: "5x"'
    )


def test_first_problem_in_document_order_is_the_error() -> None:
    """With several problems, the error's own attributes are those of the first in the file."""
    text = "scrape_configs:\n  - job_name: a\n    foo: 1\n  - job_name: b\n    bar: 2\n"
    with pytest.raises(ConfigError) as info:
        load_config_text(text, base_dir=BASE)
    assert info.value.path == "scrape_configs[0].foo"
    assert [p.path for p in info.value.problems] == [
        "scrape_configs[0].foo",
        "scrape_configs[1].bar",
    ]


EVERY_PROBLEM = """\
global:
  scrape_interval: 5x
scrape_configs:
  - job_name: a
    relabel_configs:
      - action: repalce
    sample_limit: many
  - job_name: b
    scrape_timeout: 1q
  - job_name: a
remote_write:
  - url: http://rw.invalid/api/v1/write
    bogus: 1
    queue_config: {min_shards: 0}
foo: 1
"""


def test_every_problem_is_reported_with_its_place() -> None:
    """A bad field hides neither the job's other fields, nor other jobs, nor other sections.

    Problems come in file order (the unknown top-level key last although it is checked first),
    each with its line, column and YAML path.
    """
    with pytest.raises(ConfigError) as info:
        load_config_text(EVERY_PROBLEM, base_dir=BASE, file="c.yml")
    err = info.value
    assert [(p.file, p.line, p.column, p.path, p.message) for p in err.problems] == [
        ("c.yml", 2, 3, "global.scrape_interval", 'not a valid duration string: "5x"'),
        (
            "c.yml",
            6,
            9,
            "scrape_configs[0].relabel_configs[0].action",
            'unknown relabel action "repalce"',
        ),
        (
            "c.yml",
            7,
            5,
            "scrape_configs[0].sample_limit",
            "cannot unmarshal !!str `many` into uint",
        ),
        ("c.yml", 9, 5, "scrape_configs[1].scrape_timeout", 'not a valid duration string: "1q"'),
        (
            "c.yml",
            10,
            5,
            "scrape_configs[2].job_name",
            'found multiple scrape configs with job name "a"',
        ),
        ("c.yml", 13, 5, "remote_write[0].bogus", "field bogus not found in type remote_write"),
        (
            "c.yml",
            14,
            20,
            "remote_write[0].queue_config.min_shards",
            "remote write queue min_shards must be positive",
        ),
        ("c.yml", 15, 1, "foo", "field foo not found in type config"),
    ]
    assert (err.path, err.message, err.line, err.column) == (
        "global.scrape_interval",
        'not a valid duration string: "5x"',
        2,
        3,
    )
    assert str(err).splitlines() == [p.render() for p in err.problems]
    assert str(err).splitlines()[0] == (
        'c.yml:2:3: global.scrape_interval: not a valid duration string: "5x"'
    )


ONE_MISTAKE: list[tuple[str, str, str]] = [
    # (id, yaml, the one path reported): a value already refused is not refused again by a check
    # that depends on it, and a required key of the wrong type is not also "missing".
    ("job-name-type", _job("scrape_interval: 1s\n", name="[a]"), "scrape_configs[0].job_name"),
    (
        "interval-and-timeout",
        "global: {scrape_interval: 10s}\n" + _job("scrape_interval: 5x\nscrape_timeout: 30s\n"),
        "scrape_configs[0].scrape_interval",
    ),
    (
        "relabel-and-url-target",
        _job("relabel_configs: [{action: repalce}]\nstatic_configs: [{targets: ['h/x']}]\n"),
        "scrape_configs[0].relabel_configs[0].action",
    ),
    ("k8s-role-type", _k8s("- role: [pod]\n"), "scrape_configs[0].kubernetes_sd_configs[0].role"),
    (
        "k8s-entry-not-a-map",
        _k8s("- pod\n"),
        "scrape_configs[0].kubernetes_sd_configs[0]",
    ),
    (
        "selector-role-type",
        _k8s("- role: pod\n  selectors: [{role: [pod]}]\n"),
        "scrape_configs[0].kubernetes_sd_configs[0].selectors[0].role",
    ),
    ("rw-url-type", "remote_write: [{url: [a]}]\n", "remote_write[0].url"),
    (
        "queue-backoff-type",
        _rw("queue_config: {min_backoff: 5x, max_backoff: 10ms}\n"),
        "remote_write[0].queue_config.min_backoff",
    ),
    (
        "protocol-item-type",
        _job("scrape_protocols: [[a]]\n"),
        "scrape_configs[0].scrape_protocols[0]",
    ),
    (
        "file-sd-files-type",
        _job("file_sd_configs: [{files: a.json}]\n"),
        "scrape_configs[0].file_sd_configs[0].files",
    ),
    ("explicit-int-tag", "global: {sample_limit: !!int abc}\n", ""),
    (
        # Its message holds the whole list: one per repeat grew with the list's square (fuzzing).
        "protocol-repeated-many-times",
        _job("scrape_protocols: [" + ", ".join(["PrometheusProto"] * 900) + "]\n"),
        "scrape_configs[0].scrape_protocols[1]",
    ),
]


@pytest.mark.parametrize(
    ("text", "path"), [c[1:] for c in ONE_MISTAKE], ids=[c[0] for c in ONE_MISTAKE]
)
def test_one_mistake_is_one_problem(text: str, path: str) -> None:
    """A single mistake gives a single, located problem, not a trail of consequences."""
    with pytest.raises(ConfigError) as info:
        load_config_text(text, base_dir=BASE, file="c.yml")
    assert [p.path for p in info.value.problems] == [path]
    assert info.value.line >= 1


def test_duplicate_key_does_not_stop_the_check() -> None:
    """A key written twice is reported, and the rest of the file is still checked."""
    text = (
        "global:\n  scrape_interval: 1s\n  scrape_interval: 2s\n"
        "scrape_configs: [{job_name: a, x: 1}]\n"
    )
    with pytest.raises(ConfigError) as info:
        load_config_text(text, base_dir=BASE, file="c.yml")
    assert [str(p) for p in info.value.problems] == [
        'c.yml:3:3: line 3: mapping key "scrape_interval" already defined at line 2',
        "c.yml:4:32: scrape_configs[0].x: field x not found in type scrape_config",
    ]


def test_yaml_syntax_error_is_located() -> None:
    """Text that is not YAML is one problem at the place the parser gave up."""
    with pytest.raises(ConfigError) as info:
        load_config_text("scrape_configs:\n  - job_name: a\n    labels: {a: b\n", base_dir=BASE)
    assert len(info.value.problems) == 1
    assert (info.value.line, info.value.column) == (4, 1)
    assert info.value.message == "yaml: line 3: did not find expected ',' or '}'"  # as promtool


def test_relabel_error_path_is_prefixed() -> None:
    """A relabel rule's own error path is joined to the rule's position in the file."""
    text = _job("relabel_configs:\n  - {action: keep}\n  - {source_labels: [a], regex: '('}\n")
    with pytest.raises(ConfigError) as info:
        load_config_text(text, base_dir=BASE)
    assert info.value.path == "scrape_configs[0].relabel_configs[1].regex"


def test_scrape_config_file_errors_name_that_file(tmp_path: pathlib.Path) -> None:
    """An error inside a scrape_config_files match names that file and its own YAML path."""
    base = str(tmp_path)
    (tmp_path / "jobs").mkdir()
    (tmp_path / "jobs" / "a.yml").write_text(
        "scrape_configs:\n  - job_name: x\n    scrape_interval: 1q\n"
    )
    with pytest.raises(ConfigError) as info:
        load_config_text("scrape_config_files: [jobs/*.yml]\n", base_dir=base, file="main.yml")
    assert info.value.file == f"{base}/jobs/a.yml"
    assert info.value.path == "scrape_configs[0].scrape_interval"


def test_scrape_config_file_duplicate_job(tmp_path: pathlib.Path) -> None:
    """A job name used in the main file and again in an included file is refused."""
    base = str(tmp_path)
    (tmp_path / "more.yml").write_text("scrape_configs:\n  - job_name: a\n")
    text = "scrape_config_files: [more.yml]\nscrape_configs:\n  - job_name: a\n"
    with pytest.raises(ConfigError) as info:
        load_config_text(text, base_dir=base)
    assert info.value.message == (
        'found multiple scrape configs with job name "a", first found in main config file'
    )
    assert info.value.path == "scrape_configs[0].job_name"


def test_scrape_config_file_problems_follow_the_main_file(tmp_path: pathlib.Path) -> None:
    """Problems of the main file come first, then each included file's, each with its place."""
    (tmp_path / "jobs").mkdir()
    (tmp_path / "jobs" / "a.yml").write_text(
        "scrape_configs:\n  - job_name: x\n    scrape_interval: 1q\n    honor_labels: 2\n"
    )
    (tmp_path / "jobs" / "b.yml").write_text("scrape_configs: [{job_name: x}]\n")
    text = "scrape_config_files: [jobs/*.yml]\nremote_write: [{url: nowhere}]\n"
    with pytest.raises(ConfigError) as info:
        load_config_text(text, base_dir=str(tmp_path), file="main.yml")
    a, b = tmp_path / "jobs" / "a.yml", tmp_path / "jobs" / "b.yml"
    assert [str(p) for p in info.value.problems] == [
        'main.yml:2:17: remote_write[0].url: invalid URL "nowhere": must be an absolute http or '
        "https URL",
        f'{a}:3:5: scrape_configs[0].scrape_interval: not a valid duration string: "1q"',
        f"{a}:4:5: scrape_configs[0].honor_labels: cannot unmarshal !!int `2` into bool",
        f'{b}:1:19: scrape_configs[0].job_name: found multiple scrape configs with job name "x", '
        f'first found in "{a}"',
    ]


def test_collect_keeps_a_single_error() -> None:
    """ConfigError.collect of one problem is that problem; of several, one error for all."""
    one = ConfigError("m1", path="a", file="f", line=1, column=2)
    two = ConfigError("m2", path="b", file="f")
    assert ConfigError.collect([one]) is one
    assert one.problems == (one,)
    both = ConfigError.collect([one, two])
    assert both.problems == (one, two)
    assert (both.message, both.path, both.file, both.line, both.column) == ("m1", "a", "f", 1, 2)
    assert str(both) == "f:1:2: a: m1\nf: b: m2"
    assert ConfigError("bare").render() == "bare"
    with pytest.raises(ValueError, match="at least one"):
        ConfigError.collect([])


def test_scrape_config_file_unknown_top_key(tmp_path: pathlib.Path) -> None:
    """An included file may only hold scrape_configs."""
    (tmp_path / "more.yml").write_text("global: {}\n")
    with pytest.raises(ConfigError) as info:
        load_config_text("scrape_config_files: [more.yml]\n", base_dir=str(tmp_path))
    assert info.value.message == "field global not found in type scrape_configs file"
