"""Prometheus-compatible configuration: YAML -> frozen dataclasses, defaults, validation.

Everything downstream (discovery, scrape, remote write, web) reads these dataclasses and never
the YAML. Durations are ``float`` seconds, sizes ``int`` bytes. Defaults are Prometheus 3.x's
(spec §8). Loading is strict: unknown keys, wrong types, bad durations, bad regexes and
impossible combinations raise `collector.errors.ConfigError` naming the YAML path, e.g.
``scrape_configs[2].scrape_interval: not a valid duration string: "5x"``.

How a file is read (`load_config` / `load_config_text`):

1. The YAML is composed into nodes and converted by us, not by ``yaml.safe_load``'s
   constructors, so that a scalar keeps its source text: ``version: 1.10`` is the string
   ``"1.10"`` and ``env: on`` is ``"on"`` where a string is expected, as with Go's yaml.v2.
   Duplicate mapping keys are refused, as Go's strict decoder does.
2. ``${VAR}`` / ``$VAR`` are expanded from the environment in every string *value* (keys are
   untouched); ``$$`` is a literal ``$``; an undefined or empty variable expands to ``""`` and
   logs a warning. Prometheus does this for ``external_labels`` only; we do it everywhere so one
   file serves a DaemonSet (``${NODE_NAME}``) and a StatefulSet (``${POD_NAME}``). **Exception:**
   the ``replacement`` and ``target_label`` of relabel rules are not expanded, because there
   ``$1`` / ``${1}`` / ``${name}`` are regex-group templates (spec §5.3) and Prometheus files
   must load unchanged. A value that expansion changed may stand for a number or a boolean
   (``sample_limit: ${LIMIT}``).
3. Every section is checked for unknown keys first, then typed, defaulted and validated with
   Prometheus's messages. Keys Prometheus knows but this agent does not implement (``oauth2``,
   ``consul_sd_configs``, ``sigv4``, ...) are refused with ``field X is not supported by
   collector`` when they carry a value; agent mode refuses ``alerting``, ``rule_files`` and
   ``remote_read``.
4. Relative file paths (TLS files, credential files, ``kubeconfig_file``, ``file_sd_configs``
   globs, ``scrape_config_files``) are joined to the directory of the file that names them.

Collector extensions: ``scrape_via_apiserver_proxy: <bool>`` on a scrape config (scrape pods
and nodes through the Kubernetes API server proxy); ``url``/``api_server`` must be absolute
http(s) URLs at load time (Prometheus only fails later, when connecting).

Prometheus counterpart: ``config/config.go`` (plus ``prometheus/common/config`` for the HTTP
client block and the discovery packages' ``SDConfig.UnmarshalYAML``).
"""

from __future__ import annotations

import glob
import hashlib
import logging
import os
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import MISSING, dataclass, field, fields, is_dataclass
from typing import Literal, TypeVar, cast
from urllib.parse import urlsplit

import yaml

from collector.errors import ConfigError
from collector.model import relabel
from collector.model.duration import format_duration, parse_duration, parse_size
from collector.model.labels import is_legacy_label_name, is_valid_label_name
from collector.model.relabel import RelabelConfig

__all__ = [
    "AgentOptions",
    "AttachMetadata",
    "Authorization",
    "BasicAuth",
    "Config",
    "FileSDConfig",
    "GlobalConfig",
    "HTTPClientConfig",
    "HTTPSDConfig",
    "KubernetesSDConfig",
    "KubernetesSelector",
    "MetadataConfig",
    "QueueConfig",
    "RemoteWriteConfig",
    "ScrapeConfig",
    "StaticConfig",
    "TLSConfig",
    "load_config",
    "load_config_text",
    "redacted_yaml",
]

_log = logging.getLogger(__name__)
_T = TypeVar("_T")

ScrapeProtocol = Literal[
    "PrometheusProto",
    "OpenMetricsText0.0.1",
    "OpenMetricsText1.0.0",
    "PrometheusText0.0.4",
    "PrometheusText1.0.0",
]


@dataclass(frozen=True, slots=True, kw_only=True)
class TLSConfig:
    """``tls_config``. File paths are resolved against the config file's directory."""

    ca: str = ""
    ca_file: str = ""
    cert: str = ""
    cert_file: str = ""
    key: str = ""
    key_file: str = ""
    server_name: str = ""
    insecure_skip_verify: bool = False
    min_version: str = ""
    max_version: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class BasicAuth:
    """``basic_auth``: ``password`` and ``password_file`` are exclusive (same for username)."""

    username: str = ""
    username_file: str = ""
    password: str = ""
    password_file: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class Authorization:
    """``authorization``; legacy ``bearer_token[_file]`` is loaded into this with type Bearer."""

    type: str = "Bearer"
    credentials: str = ""
    credentials_file: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class HTTPClientConfig:
    """The inline ``http_config`` shared by scrape configs, http_sd, kubernetes_sd, remote_write."""

    basic_auth: BasicAuth | None = None
    authorization: Authorization | None = None
    tls_config: TLSConfig = field(default_factory=TLSConfig)
    proxy_url: str = ""
    no_proxy: str = ""
    proxy_from_environment: bool = False
    proxy_connect_header: tuple[tuple[str, tuple[str, ...]], ...] = ()
    follow_redirects: bool = True
    enable_http2: bool = True
    http_headers: tuple[tuple[str, tuple[str, ...]], ...] = ()
    """Extra request headers: ``(name, values)``; only inline ``values`` are supported."""


@dataclass(frozen=True, slots=True, kw_only=True)
class StaticConfig:
    """One ``static_configs`` entry."""

    targets: tuple[str, ...] = ()
    labels: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class FileSDConfig:
    """One ``file_sd_configs`` entry; ``files`` are globs resolved against the config dir."""

    files: tuple[str, ...]
    refresh_interval: float = 300.0


@dataclass(frozen=True, slots=True, kw_only=True)
class HTTPSDConfig:
    """One ``http_sd_configs`` entry."""

    url: str
    refresh_interval: float = 60.0
    http_client: HTTPClientConfig = field(default_factory=HTTPClientConfig)


@dataclass(frozen=True, slots=True, kw_only=True)
class KubernetesSelector:
    """One ``selectors`` entry; ``label`` and ``field`` use Kubernetes selector syntax."""

    role: str
    label: str = ""
    field: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class AttachMetadata:
    """``attach_metadata``."""

    node: bool = False
    namespace: bool = False
    deployment: bool = False
    job: bool = False
    cronjob: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class KubernetesSDConfig:
    """One ``kubernetes_sd_configs`` entry (spec §2.1)."""

    role: Literal["node", "pod", "service", "endpoints", "endpointslice", "ingress"]
    api_server: str = ""
    kubeconfig_file: str = ""
    namespaces: tuple[str, ...] = ()
    own_namespace: bool = False
    selectors: tuple[KubernetesSelector, ...] = ()
    attach_metadata: AttachMetadata = field(default_factory=AttachMetadata)
    http_client: HTTPClientConfig = field(default_factory=HTTPClientConfig)


@dataclass(frozen=True, slots=True, kw_only=True)
class GlobalConfig:
    """``global`` (spec §8.2)."""

    scrape_interval: float = 60.0
    scrape_timeout: float = 10.0
    external_labels: tuple[tuple[str, str], ...] = ()
    """Sorted by name, after environment expansion; labels whose value expanded to "" are
    left out (an empty label value means "absent")."""
    scrape_protocols: tuple[ScrapeProtocol, ...] = ()
    """Empty = the dynamic default of spec §4.2."""
    body_size_limit: int = 0
    sample_limit: int = 0
    target_limit: int = 0
    label_limit: int = 0
    label_name_length_limit: int = 0
    label_value_length_limit: int = 0
    keep_dropped_targets: int = 0
    metric_name_validation_scheme: Literal["utf8", "legacy"] = "utf8"
    metric_name_escaping_scheme: str = "allow-utf-8"
    scrape_native_histograms: bool = False
    extra_scrape_metrics: bool = False
    evaluation_interval: float = 60.0
    convert_classic_histograms_to_nhcb: bool = False
    always_scrape_classic_histograms: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class ScrapeConfig:
    """One ``scrape_configs`` entry with every default resolved (spec §8.3).

    Values that fall back to ``global`` are already filled in: a job's ``sample_limit`` of 0
    with a global one of 500 loads as 500.
    """

    job_name: str
    scrape_interval: float = 60.0
    scrape_timeout: float = 10.0
    scrape_protocols: tuple[ScrapeProtocol, ...] = ()
    """As loaded, never empty: the job's list, else the global one, else Prometheus's default
    (protobuf first when ``scrape_native_histograms``). Empty only in hand-built configs, where
    it means that same dynamic default."""
    fallback_scrape_protocol: ScrapeProtocol | None = None
    metrics_path: str = "/metrics"
    scheme: str = "http"
    honor_labels: bool = False
    honor_timestamps: bool = True
    track_timestamps_staleness: bool = False
    params: tuple[tuple[str, tuple[str, ...]], ...] = ()
    enable_compression: bool = True
    body_size_limit: int = 0
    sample_limit: int = 0
    target_limit: int = 0
    label_limit: int = 0
    label_name_length_limit: int = 0
    label_value_length_limit: int = 0
    keep_dropped_targets: int = 0
    extra_scrape_metrics: bool = False
    metric_name_validation_scheme: Literal["utf8", "legacy"] = "utf8"
    scrape_native_histograms: bool = False
    http_client: HTTPClientConfig = field(default_factory=HTTPClientConfig)
    static_configs: tuple[StaticConfig, ...] = ()
    file_sd_configs: tuple[FileSDConfig, ...] = ()
    http_sd_configs: tuple[HTTPSDConfig, ...] = ()
    kubernetes_sd_configs: tuple[KubernetesSDConfig, ...] = ()
    relabel_configs: tuple[RelabelConfig, ...] = ()
    metric_relabel_configs: tuple[RelabelConfig, ...] = ()
    scrape_via_apiserver_proxy: bool = False
    """collector extension: scrape pods and nodes through the Kubernetes API server proxy."""
    metric_name_escaping_scheme: str = "allow-utf-8"
    """``escaping=`` value for the Accept header: ``allow-utf-8``, ``underscores``, ``dots``,
    ``values`` (``underscores`` by default under legacy validation)."""
    convert_classic_histograms_to_nhcb: bool = False
    always_scrape_classic_histograms: bool = False
    native_histogram_bucket_limit: int = 0
    native_histogram_min_bucket_factor: float = 0.0


@dataclass(frozen=True, slots=True, kw_only=True)
class QueueConfig:
    """``queue_config`` (spec §6.3)."""

    capacity: int = 10000
    max_shards: int = 50
    min_shards: int = 1
    max_samples_per_send: int = 2000
    batch_send_deadline: float = 5.0
    min_backoff: float = 0.03
    max_backoff: float = 5.0
    retry_on_http_429: bool = False
    sample_age_limit: float = 0.0


@dataclass(frozen=True, slots=True, kw_only=True)
class MetadataConfig:
    """``metadata_config`` (spec §6.6)."""

    send: bool = True
    send_interval: float = 60.0
    max_samples_per_send: int = 2000


@dataclass(frozen=True, slots=True, kw_only=True)
class RemoteWriteConfig:
    """One ``remote_write`` entry (spec §8.5)."""

    url: str
    name: str = ""
    """The ``remote_name`` label: ``name:`` or the first 6 hex chars of the block's hash."""
    remote_timeout: float = 30.0
    headers: tuple[tuple[str, str], ...] = ()
    write_relabel_configs: tuple[RelabelConfig, ...] = ()
    send_exemplars: bool = False
    send_native_histograms: bool = False
    round_robin_dns: bool = False
    protobuf_message: Literal["prometheus.WriteRequest", "io.prometheus.write.v2.Request"] = (
        "prometheus.WriteRequest"
    )
    queue_config: QueueConfig = field(default_factory=QueueConfig)
    metadata_config: MetadataConfig = field(default_factory=MetadataConfig)
    http_client: HTTPClientConfig = field(
        default_factory=lambda: HTTPClientConfig(enable_http2=False)
    )
    config_hash: str = ""
    """Hex MD5 of the block as written (see `load_config_text`): the queue's identity across
    reloads. ``name`` defaults to its first 6 characters."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Config:
    """A whole loaded configuration file."""

    global_config: GlobalConfig = field(default_factory=GlobalConfig)
    scrape_configs: tuple[ScrapeConfig, ...] = ()
    """The main file's jobs followed by those of every ``scrape_config_files`` match."""
    remote_write: tuple[RemoteWriteConfig, ...] = ()
    source: str = ""
    """The YAML text as loaded (after no expansion), for ``/api/v1/status/config`` redaction."""
    path: str = ""
    """The file it came from; relative paths inside were resolved against its directory."""
    scrape_config_files: tuple[str, ...] = ()
    """The ``scrape_config_files`` patterns, joined to the config directory."""


@dataclass(frozen=True, slots=True, kw_only=True)
class AgentOptions:
    """Command-line options of the agent (``collector --config.file=...``), set by the CLI."""

    config_file: str = "config/collector.yml"
    listen_address: str = "0.0.0.0:9099"
    storage_path: str = "data/"
    """Directory of the disk queue."""
    kubeconfig: str = ""
    """``--kubeconfig``; empty = in-cluster config, then ``$KUBECONFIG``, ``~/.kube/config``."""
    enable_remote_write_receiver: bool = False
    enable_lifecycle: bool = False
    """Allow ``POST /-/reload`` (and ``/-/quit``); without it they answer 403, as in Prometheus."""
    flush_deadline: float = 10.0
    """``--storage.remote.flush-deadline``: at shutdown, how long the remote-write queues keep
    trying to send; whatever is still unsent is already in their write-ahead queues."""
    log_level: str = "info"
    log_format: str = "logfmt"


# ------------------------------------------------------------------------------ constants

SCRAPE_PROTOCOL_MEDIA_TYPES: Mapping[str, str] = {
    "PrometheusProto": (
        "application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited"
    ),
    "PrometheusText0.0.4": "text/plain;version=0.0.4",
    "PrometheusText1.0.0": "text/plain;version=1.0.0",
    "OpenMetricsText0.0.1": "application/openmetrics-text;version=0.0.1",
    "OpenMetricsText1.0.0": "application/openmetrics-text;version=1.0.0",
}
"""Scrape protocol name -> media type for the Accept header (spec §4.2)."""

DEFAULT_SCRAPE_PROTOCOLS: tuple[ScrapeProtocol, ...] = (
    "OpenMetricsText1.0.0",
    "OpenMetricsText0.0.1",
    "PrometheusText1.0.0",
    "PrometheusText0.0.4",
)
"""A job's protocols when neither it nor ``global`` lists any."""

DEFAULT_PROTO_FIRST_SCRAPE_PROTOCOLS: tuple[ScrapeProtocol, ...] = (
    "PrometheusProto",
    *DEFAULT_SCRAPE_PROTOCOLS,
)
"""The same with protobuf first: the default when ``scrape_native_histograms`` is on."""

_ESCAPING_SCHEMES = ("allow-utf-8", "underscores", "dots", "values")
_K8S_ROLES = ("pod", "service", "endpoints", "endpointslice", "node", "ingress")
# Which resources a discovery role may filter with ``selectors`` (spec §2.1).
_K8S_SELECTOR_ROLES: Mapping[str, tuple[str, ...]] = {
    "pod": ("pod", "node"),
    "service": ("service",),
    "endpoints": ("pod", "service", "endpoints"),
    "endpointslice": ("pod", "service", "endpointslice"),
    "node": ("node",),
    "ingress": ("ingress",),
}
_TLS_VERSIONS = ("TLS10", "TLS11", "TLS12", "TLS13")
_PROTOBUF_MESSAGES = ("prometheus.WriteRequest", "io.prometheus.write.v2.Request")

# remote_write ``headers`` may not override these (spec §6.1); Authorization has its own message.
_RESERVED_WRITE_HEADERS = frozenset(
    h.lower()
    for h in (
        "Host",
        "Content-Encoding",
        "Content-Length",
        "Content-Type",
        "User-Agent",
        "Connection",
        "Keep-Alive",
        "Proxy-Authenticate",
        "Proxy-Authorization",
        "WWW-Authenticate",
        "Accept-Encoding",
        "X-Prometheus-Remote-Write-Version",
        "X-Prometheus-Remote-Read-Version",
        "X-Amz-Date",
        "X-Amz-Security-Token",
        "X-Amz-Content-Sha256",
    )
)
# ``http_headers`` may not set these (prometheus/common ``ReservedHeaders``): the remote-write
# set plus the two that scraping owns.
_RESERVED_HTTP_HEADERS = _RESERVED_WRITE_HEADERS | {
    "authorization",
    "x-prometheus-scrape-timeout-seconds",
}


def _names(text: str) -> frozenset[str]:
    """A set of YAML key names written as whitespace-separated words."""
    return frozenset(text.split())


# Glob shapes Prometheus accepts: at most one ``*``, and not in a directory part.
_PAT_SCRAPE_CONFIG_FILE = re.compile(r"[^*]*(\*[^/]*)?")
_PAT_FILE_SD_NAME = re.compile(r"[^*]*(\*[^/]*)?\.(json|yml|yaml|JSON|YML|YAML)")

_HTTP_KEYS = _names(
    """
    basic_auth authorization bearer_token bearer_token_file tls_config proxy_url
    no_proxy proxy_from_environment proxy_connect_header follow_redirects enable_http2
    http_headers
    """
)
_HTTP_UNSUPPORTED = frozenset({"oauth2"})

_SD_UNSUPPORTED = frozenset(
    f"{name}_sd_configs"
    for name in (
        "azure",
        "consul",
        "digitalocean",
        "docker",
        "dockerswarm",
        "dns",
        "ec2",
        "eureka",
        "gce",
        "hetzner",
        "ionos",
        "kuma",
        "lightsail",
        "linode",
        "marathon",
        "nerve",
        "nomad",
        "openstack",
        "ovhcloud",
        "puppetdb",
        "scaleway",
        "serverset",
        "stackit",
        "triton",
        "uyuni",
        "vultr",
    )
)

_SECRET = "<secret>"
_DEFAULT_GLOBAL = GlobalConfig()


# ------------------------------------------------------------------------------ public API


def load_config(path: str, *, env: Mapping[str, str] | None = None) -> Config:
    """Read, expand, validate and default the config file at ``path``.

    Relative paths inside are resolved against the file's directory (made absolute). ``env``
    defaults to ``os.environ``. Raises `ConfigError` (with ``file`` set) on any problem,
    including an unreadable file.
    """
    try:
        with open(path, encoding="utf-8") as fh:
            text = fh.read()
    except OSError as exc:
        raise ConfigError(f"cannot read config file: {exc.strerror or exc}", file=path) from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(f"config file is not valid UTF-8: {exc}", file=path) from exc
    base_dir = os.path.dirname(os.path.abspath(path))
    return load_config_text(text, base_dir=base_dir, env=env, file=path)


def load_config_text(
    text: str, *, base_dir: str, env: Mapping[str, str] | None = None, file: str = ""
) -> Config:
    """Load a config from YAML ``text``; relative paths are joined to ``base_dir``.

    ``file`` only labels errors and fills `Config.path`. An empty document gives all defaults.

    Remote-write identity: each ``remote_write`` block, as written but after environment
    expansion, is serialised with ``yaml.safe_dump(block, sort_keys=True,
    default_flow_style=False, allow_unicode=True)`` and hashed with MD5; the hex digest is
    `RemoteWriteConfig.config_hash` and its first 6 characters the default ``name``. Prometheus
    hashes its own YAML rendering of the *defaulted* block, which we cannot reproduce byte for
    byte, so ``remote_name`` values differ from Prometheus's; within collector they are stable
    across restarts and reloads, and change exactly when the block's text changes (spelling out a
    default counts as a change).
    """
    env_map: Mapping[str, str] = os.environ if env is None else env
    loader = _Loader(base_dir=base_dir, env=env_map, file=file)
    return loader.load_main(text)


def redacted_yaml(config: Config) -> str:
    """The loaded config as YAML, Prometheus-shaped, with every secret shown as ``<secret>``.

    Secrets are basic-auth passwords, authorization credentials (including legacy bearer
    tokens), inline TLS keys and ``proxy_connect_header`` values. Everything else is shown as
    loaded (defaults filled in, env expanded, paths resolved), which is what
    ``/api/v1/status/config`` serves. Secret-free output loads back to an equal config.
    """
    doc: dict[str, object] = {"global": _render_global(config.global_config)}
    if config.scrape_configs:
        doc["scrape_configs"] = [_render_scrape(sc) for sc in config.scrape_configs]
    if config.remote_write:
        doc["remote_write"] = [_render_remote_write(rw) for rw in config.remote_write]
    return yaml.safe_dump(doc, sort_keys=False, default_flow_style=False, allow_unicode=True)


# ------------------------------------------------------------------------------ YAML nodes


@dataclass(frozen=True, slots=True)
class _Scalar:
    """A non-string YAML scalar (int, float, bool) together with its source text.

    Where a string is expected, Go's yaml.v2 uses the text (``1.10`` stays ``"1.10"``); where
    a number or bool is expected, the value is used.
    """

    text: str
    value: bool | int | float


class _Expanded(str):
    """A string value that environment expansion changed; it may stand for a number or bool."""

    __slots__ = ()


_Tree = dict[str, "_Tree"] | list["_Tree"] | str | _Scalar | None


def _compose(text: str, *, file: str) -> _Tree:
    """Parse YAML text into plain dicts, lists, strings, `_Scalar` and None."""
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        return _convert_node(loader, node, active=set())
    except ConfigError as exc:
        raise ConfigError(exc.message, file=file) from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"line {mark.line + 1}: " if mark is not None else ""
        raise ConfigError(f"yaml: {where}{exc.problem or exc.context}", file=file) from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"yaml: {exc}", file=file) from exc
    finally:
        loader.dispose()


def _convert_node(loader: yaml.SafeLoader, node: yaml.Node, *, active: set[int]) -> _Tree:
    """Turn one composed node into a `_Tree`; refuse duplicate keys and recursive aliases."""
    if isinstance(node, yaml.ScalarNode):
        tag = node.tag
        if tag == "tag:yaml.org,2002:null":
            return None
        if tag in ("tag:yaml.org,2002:bool", "tag:yaml.org,2002:int", "tag:yaml.org,2002:float"):
            value = loader.construct_object(node, deep=True)
            return _Scalar(str(node.value), cast("bool | int | float", value))
        if tag in ("tag:yaml.org,2002:str", "tag:yaml.org,2002:timestamp"):
            return str(node.value)
        raise ConfigError(f"line {node.start_mark.line + 1}: unsupported YAML tag {tag}")
    if id(node) in active:
        raise ConfigError(f"line {node.start_mark.line + 1}: recursive YAML alias")
    active.add(id(node))
    try:
        if isinstance(node, yaml.SequenceNode):
            return [_convert_node(loader, item, active=active) for item in node.value]
        if isinstance(node, yaml.MappingNode):
            # Duplicates are checked among the keys written here; keys merged in with ``<<``
            # may be overridden, as in Go's yaml.v2.
            first_line: dict[str, int] = {}
            for key_node, _value in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue
                key = _mapping_key(key_node)
                line = key_node.start_mark.line + 1
                if key in first_line:
                    raise ConfigError(
                        f'line {line}: mapping key "{key}" already defined at line '
                        f"{first_line[key]}"
                    )
                first_line[key] = line
            loader.flatten_mapping(node)
            out: dict[str, _Tree] = {}
            for key_node, value_node in node.value:
                out[_mapping_key(key_node)] = _convert_node(loader, value_node, active=active)
            return out
    finally:
        active.discard(id(node))
    raise ConfigError(f"line {node.start_mark.line + 1}: unsupported YAML node")


def _mapping_key(node: yaml.Node) -> str:
    """A mapping key as text (Go decodes scalar keys of string maps from their text)."""
    if not isinstance(node, yaml.ScalarNode):
        raise ConfigError(f"line {node.start_mark.line + 1}: mapping keys must be scalars")
    return "" if node.tag == "tag:yaml.org,2002:null" else str(node.value)


# Go os.Expand, as Prometheus uses it: ``$$`` -> ``$``, ``${NAME}``, ``$NAME``.
_ENV_REF = re.compile(r"\$(?:(\$)|\{([^}]*)\}|([A-Za-z0-9_]+))")
_RELABEL_LIST_KEYS = frozenset(
    {"relabel_configs", "metric_relabel_configs", "write_relabel_configs"}
)
_RELABEL_TEMPLATE_KEYS = frozenset({"replacement", "target_label"})


def _expand_env(tree: _Tree, env: Mapping[str, str], path: str = "") -> _Tree:
    """Expand environment references in every string value of ``tree`` (see module docs)."""
    if isinstance(tree, str):
        return _expand_string(tree, env, path)
    if isinstance(tree, list):
        return [_expand_env(item, env, _idx(path, i)) for i, item in enumerate(tree)]
    if isinstance(tree, dict):
        out: dict[str, _Tree] = {}
        for key, value in tree.items():
            sub = _join(path, key)
            if key in _RELABEL_LIST_KEYS and isinstance(value, list):
                out[key] = [
                    _expand_relabel_rule(rule, env, _idx(sub, i)) for i, rule in enumerate(value)
                ]
            else:
                out[key] = _expand_env(value, env, sub)
        return out
    return tree


def _expand_relabel_rule(rule: _Tree, env: Mapping[str, str], path: str) -> _Tree:
    """Expand a relabel rule except its ``$1``-style template fields."""
    if not isinstance(rule, dict):
        return _expand_env(rule, env, path)
    return {
        key: value if key in _RELABEL_TEMPLATE_KEYS else _expand_env(value, env, _join(path, key))
        for key, value in rule.items()
    }


def _expand_string(s: str, env: Mapping[str, str], path: str) -> str:
    """Expand one string; returns an `_Expanded` when anything changed."""
    if "$" not in s:
        return s

    def substitute(match: re.Match[str]) -> str:
        if match.group(1) is not None:
            return "$"
        name = match.group(2) if match.group(2) is not None else match.group(3)
        value = env.get(name, "")
        if not value:
            _log.warning('empty environment variable %r expanded to "" at %s', name, path)
        return value

    expanded = _ENV_REF.sub(substitute, s)
    return _Expanded(expanded) if expanded != s else s


def _to_plain(tree: _Tree, *, text: bool = False) -> object:
    """Plain Python values for hashing and for `relabel.parse_rule`.

    With ``text``, every scalar becomes its source text instead of its YAML value.
    """
    if isinstance(tree, _Scalar):
        return tree.text if text else tree.value
    if isinstance(tree, list):
        return [_to_plain(item, text=text) for item in tree]
    if isinstance(tree, dict):
        return {key: _to_plain(value, text=text) for key, value in tree.items()}
    if isinstance(tree, str):
        return str(tree)
    return tree


def _relabel_plain(tree: _Tree) -> object:
    """A relabel rule for `parse_rule`: scalars as their text, except an integer ``modulus``.

    Go decodes ``replacement: 1`` into the string ``"1"``; passing the text keeps that.
    """
    if not isinstance(tree, dict):
        return _to_plain(tree)
    out: dict[str, object] = {}
    for key, value in tree.items():
        if key == "modulus" and isinstance(value, _Scalar):
            out[key] = value.value
        elif key == "modulus" and isinstance(value, _Expanded) and value.isdigit():
            out[key] = int(value)
        else:
            out[key] = _to_plain(value, text=True)
    return out


# ------------------------------------------------------------------------------ typed access


def _join(path: str, key: str) -> str:
    """``a.b`` path join."""
    return f"{path}.{key}" if path else key


def _idx(path: str, i: int) -> str:
    """``a[3]`` path index."""
    return f"{path}[{i}]"


def _describe(value: _Tree) -> str:
    """Go yaml.v2's way of naming a node in type errors: ``!!str `abc```."""
    if value is None:
        return "!!null"
    if isinstance(value, list):
        return "!!seq"
    if isinstance(value, dict):
        return "!!map"
    if isinstance(value, _Scalar):
        kind = (
            "bool"
            if isinstance(value.value, bool)
            else "int"
            if isinstance(value.value, int)
            else "float"
        )
        return f"!!{kind} `{value.text}`"
    return f"!!str `{value}`"


def _is_empty(value: _Tree) -> bool:
    """True for null, "" and empty collections: a key given so is as good as absent."""
    return value is None or value == "" or value == [] or value == {}


class _Section:
    """One YAML mapping being read: typed getters that know their path, strict keys."""

    def __init__(
        self,
        raw: _Tree,
        path: str,
        *,
        kind: str,
        known: frozenset[str],
        unsupported: frozenset[str] = frozenset(),
        file: str,
    ) -> None:
        if raw is None:
            raw = {}
        if not isinstance(raw, dict):
            raise ConfigError(
                f"cannot unmarshal {_describe(raw)} into {kind}", path=path, file=file
            )
        self.raw = raw
        self.path = path
        self.file = file
        for key, value in raw.items():
            if key in known:
                continue
            if key in unsupported:
                if _is_empty(value):
                    continue
                raise self.error(f"field {key} is not supported by collector", key)
            raise self.error(f"field {key} not found in type {kind}", key)

    def at(self, key: str) -> str:
        """Path of ``key`` in this section."""
        return _join(self.path, key)

    def error(self, message: str, key: str | None = None) -> ConfigError:
        """A `ConfigError` at this section, or at ``key`` within it."""
        return ConfigError(message, path=self.at(key) if key else self.path, file=self.file)

    def get(self, key: str) -> _Tree:
        """The raw value, None when absent."""
        return self.raw.get(key)

    def has(self, key: str) -> bool:
        """Whether ``key`` is present with a non-null value."""
        return self.raw.get(key) is not None

    def str_(self, key: str, default: str = "") -> str:
        """A string; numbers and bools give their source text (as in Go)."""
        return _as_str(self.get(key), self.at(key), self.file, default=default)

    def bool_(self, key: str, default: bool) -> bool:
        """A boolean."""
        value = self.get(key)
        return default if value is None else _as_bool(value, self.at(key), self.file)

    def opt_bool(self, key: str) -> bool | None:
        """A boolean, None when absent."""
        value = self.get(key)
        return None if value is None else _as_bool(value, self.at(key), self.file)

    def int_(self, key: str, default: int = 0, *, unsigned: bool = True) -> int:
        """An integer (non-negative unless ``unsigned=False``)."""
        value = self.get(key)
        if value is None:
            return default
        return _as_int(value, self.at(key), self.file, unsigned=unsigned)

    def float_(self, key: str, default: float = 0.0) -> float:
        """A float (ints accepted)."""
        value = self.get(key)
        if value is None:
            return default
        if isinstance(value, _Scalar) and not isinstance(value.value, bool):
            return float(value.value)
        if isinstance(value, _Expanded):
            try:
                return float(value)
            except ValueError:
                pass
        raise self.error(f"cannot unmarshal {_describe(value)} into float64", key)

    def duration(self, key: str) -> float | None:
        """A Prometheus duration in seconds, None when absent."""
        value = self.get(key)
        if value is None:
            return None
        text = _as_str(value, self.at(key), self.file)
        try:
            return parse_duration(text)
        except ValueError as exc:
            raise self.error(str(exc), key) from None

    def size(self, key: str) -> int:
        """A byte size (``10MB``, ``1GiB``, or a plain integer of bytes); 0 when absent."""
        value = self.get(key)
        if value is None:
            return 0
        if isinstance(value, _Scalar) and isinstance(value.value, int):
            if isinstance(value.value, bool) or value.value < 0:
                raise self.error(f"cannot unmarshal {_describe(value)} into size", key)
            return value.value
        text = _as_str(value, self.at(key), self.file)
        if isinstance(value, _Expanded) and text.isdigit():
            return int(text)
        try:
            return parse_size(text)
        except ValueError as exc:
            raise self.error(str(exc), key) from None

    def list_(self, key: str) -> list[_Tree]:
        """A sequence; [] when absent."""
        value = self.get(key)
        if value is None:
            return []
        if not isinstance(value, list):
            raise self.error(f"cannot unmarshal {_describe(value)} into a list", key)
        return value

    def str_list(self, key: str) -> list[str]:
        """A sequence of strings."""
        path = self.at(key)
        return [_as_str(v, _idx(path, i), self.file) for i, v in enumerate(self.list_(key))]

    def mapping(self, key: str) -> dict[str, _Tree]:
        """A mapping with arbitrary keys; {} when absent."""
        value = self.get(key)
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise self.error(f"cannot unmarshal {_describe(value)} into a map", key)
        return value

    def str_map(self, key: str) -> list[tuple[str, str]]:
        """A mapping of string to string, in file order."""
        path = self.at(key)
        return [
            (name, _as_str(value, _join(path, name), self.file))
            for name, value in self.mapping(key).items()
        ]

    def section(
        self,
        key: str,
        *,
        kind: str,
        known: frozenset[str],
        unsupported: frozenset[str] = frozenset(),
    ) -> _Section:
        """A nested mapping as a `_Section` (empty when absent)."""
        return _Section(
            self.get(key),
            self.at(key),
            kind=kind,
            known=known,
            unsupported=unsupported,
            file=self.file,
        )


def _as_str(value: _Tree, path: str, file: str, *, default: str = "") -> str:
    """A string value; a number or bool gives its source text, as Go's yaml.v2 does."""
    if value is None:
        return default
    if isinstance(value, str):
        return str(value)
    if isinstance(value, _Scalar):
        return value.text
    raise ConfigError(f"cannot unmarshal {_describe(value)} into string", path=path, file=file)


_TRUE_WORDS = frozenset({"true", "True", "TRUE", "yes", "Yes", "YES", "on", "On", "ON", "y", "Y"})
_FALSE_WORDS = frozenset(
    {"false", "False", "FALSE", "no", "No", "NO", "off", "Off", "OFF", "n", "N"}
)


def _as_bool(value: _Tree, path: str, file: str) -> bool:
    """A boolean; a string produced by env expansion may spell one."""
    if isinstance(value, _Scalar) and isinstance(value.value, bool):
        return value.value
    if isinstance(value, _Expanded):
        if value in _TRUE_WORDS:
            return True
        if value in _FALSE_WORDS:
            return False
    raise ConfigError(f"cannot unmarshal {_describe(value)} into bool", path=path, file=file)


def _as_int(value: _Tree, path: str, file: str, *, unsigned: bool) -> int:
    """An integer; a string produced by env expansion may spell one."""
    number: int | None = None
    if (
        isinstance(value, _Scalar)
        and isinstance(value.value, int)
        and not isinstance(value.value, bool)
    ):
        number = value.value
    elif isinstance(value, _Expanded) and re.fullmatch(r"[-+]?[0-9]+", value):
        number = int(value)
    target = "uint" if unsigned else "int"
    if number is None or (unsigned and number < 0):
        raise ConfigError(
            f"cannot unmarshal {_describe(value)} into {target}", path=path, file=file
        )
    return number


def _join_dir(base_dir: str, path: str) -> str:
    """Prometheus ``config.JoinDir``: relative paths are joined to the config directory."""
    if not path or os.path.isabs(path):
        return path
    return os.path.join(base_dir, path)


# ------------------------------------------------------------------------------ the loader


_GLOBAL_KEYS = _names(
    """
    scrape_interval scrape_timeout scrape_protocols evaluation_interval
    rule_query_offset query_log_file external_labels body_size_limit sample_limit
    target_limit label_limit label_name_length_limit label_value_length_limit
    keep_dropped_targets metric_name_validation_scheme metric_name_escaping_scheme
    scrape_native_histograms convert_classic_histograms_to_nhcb
    always_scrape_classic_histograms extra_scrape_metrics
    """
)
_SCRAPE_KEYS = (
    _names(
        """
        job_name honor_labels honor_timestamps track_timestamps_staleness params
        scrape_interval scrape_timeout scrape_protocols fallback_scrape_protocol
        scrape_native_histograms always_scrape_classic_histograms
        convert_classic_histograms_to_nhcb metrics_path scheme enable_compression
        body_size_limit sample_limit target_limit label_limit
        label_name_length_limit label_value_length_limit
        native_histogram_bucket_limit native_histogram_min_bucket_factor
        keep_dropped_targets metric_name_validation_scheme
        metric_name_escaping_scheme extra_scrape_metrics static_configs
        file_sd_configs http_sd_configs kubernetes_sd_configs relabel_configs
        metric_relabel_configs scrape_via_apiserver_proxy
        """
    )
    | _HTTP_KEYS
)
_SCRAPE_UNSUPPORTED = _SD_UNSUPPORTED | _HTTP_UNSUPPORTED | {"scrape_failure_log_file"}
_REMOTE_WRITE_KEYS = (
    _names(
        """
        url remote_timeout headers write_relabel_configs name send_exemplars
        send_native_histograms round_robin_dns protobuf_message queue_config
        metadata_config
        """
    )
    | _HTTP_KEYS
)
_QUEUE_KEYS = _names(
    """
    capacity max_shards min_shards max_samples_per_send batch_send_deadline min_backoff
    max_backoff retry_on_http_429 sample_age_limit
    """
)
_K8S_KEYS = (
    frozenset(
        {"role", "api_server", "kubeconfig_file", "namespaces", "selectors", "attach_metadata"}
    )
    | _HTTP_KEYS
)


class _Loader:
    """One load: the environment, the base directory, the file name for errors."""

    def __init__(self, *, base_dir: str, env: Mapping[str, str], file: str) -> None:
        self.base_dir = base_dir
        self.env = env
        self.file = file

    def error(self, message: str, path: str = "") -> ConfigError:
        """A `ConfigError` in the file being loaded."""
        return ConfigError(message, path=path, file=self.file)

    # -- top level ---------------------------------------------------------------------

    def load_main(self, text: str) -> Config:
        """Load the main file and the ``scrape_config_files`` it names."""
        tree = _expand_env(_compose(text, file=self.file), self.env)
        top = _Section(
            tree,
            "",
            kind="config",
            known=_names(
                "global scrape_config_files scrape_configs remote_write alerting rule_files "
                "remote_read"
            ),
            unsupported=frozenset({"runtime", "storage", "tracing", "otlp"}),
            file=self.file,
        )
        for key in ("alerting", "rule_files", "remote_read"):
            if key in top.raw and not _agent_mode_empty(top.raw[key]):
                raise self.error(f"field {key} is not allowed in agent mode", key)
        global_config = self.parse_global(top)

        patterns = top.str_list("scrape_config_files")
        for i, pattern in enumerate(patterns):
            if _PAT_SCRAPE_CONFIG_FILE.fullmatch(pattern) is None:
                raise self.error(
                    f'invalid scrape config file path "{pattern}"', _idx("scrape_config_files", i)
                )
        patterns = [_join_dir(self.base_dir, p) for p in patterns]

        scrape_configs: list[ScrapeConfig] = []
        first_seen: dict[str, str] = {}
        for i, raw in enumerate(top.list_("scrape_configs")):
            path = _idx("scrape_configs", i)
            sc = self.parse_scrape_config(raw, path, global_config)
            if sc.job_name in first_seen:
                raise self.error(
                    f'found multiple scrape configs with job name "{sc.job_name}"',
                    _join(path, "job_name"),
                )
            first_seen[sc.job_name] = "main config file"
            scrape_configs.append(sc)
        for pattern in patterns:
            for filename in sorted(glob.glob(pattern)):
                scrape_configs.extend(
                    self.load_scrape_config_file(filename, global_config, first_seen)
                )

        remote_write = self.parse_remote_writes(top)
        return Config(
            global_config=global_config,
            scrape_configs=tuple(scrape_configs),
            remote_write=remote_write,
            source=text,
            path=self.file,
            scrape_config_files=tuple(patterns),
        )

    def load_scrape_config_file(
        self, filename: str, global_config: GlobalConfig, first_seen: dict[str, str]
    ) -> list[ScrapeConfig]:
        """Jobs of one ``scrape_config_files`` match; its relative paths use its own dir."""
        abs_name = os.path.abspath(filename)
        sub = _Loader(base_dir=os.path.dirname(abs_name), env=self.env, file=abs_name)
        try:
            with open(filename, encoding="utf-8") as fh:
                text = fh.read()
        except (OSError, UnicodeDecodeError) as exc:
            raise sub.error(f"cannot read scrape config file: {exc}") from exc
        tree = _expand_env(_compose(text, file=abs_name), self.env)
        top = _Section(
            tree, "", kind="scrape_configs file", known=frozenset({"scrape_configs"}), file=abs_name
        )
        out: list[ScrapeConfig] = []
        for i, raw in enumerate(top.list_("scrape_configs")):
            path = _idx("scrape_configs", i)
            sc = sub.parse_scrape_config(raw, path, global_config)
            if sc.job_name in first_seen:
                raise sub.error(
                    f'found multiple scrape configs with job name "{sc.job_name}", first found in '
                    f"{first_seen[sc.job_name]}",
                    _join(path, "job_name"),
                )
            first_seen[sc.job_name] = f'"{abs_name}"'
            out.append(sc)
        return out

    # -- global ------------------------------------------------------------------------

    def parse_global(self, top: _Section) -> GlobalConfig:
        """``global`` with Prometheus's defaults and checks (spec §8.2)."""
        g = top.section(
            "global",
            kind="global",
            known=_GLOBAL_KEYS,
            unsupported=frozenset({"scrape_failure_log_file"}),
        )
        scheme = _validation_scheme(g, "global")
        external_labels: list[tuple[str, str]] = []
        for name, value in g.str_map("external_labels"):
            valid = is_legacy_label_name(name) if scheme == "legacy" else is_valid_label_name(name)
            path = _join(g.at("external_labels"), name)
            if not valid:
                raise self.error(f'"{name}" is not a valid label name', path)
            if not _valid_utf8(value):
                raise self.error(f'"{value}" is not a valid label value', path)
            if value:
                external_labels.append((name, value))

        interval = g.duration("scrape_interval") or _DEFAULT_GLOBAL.scrape_interval
        timeout = g.duration("scrape_timeout") or 0.0
        if timeout > interval:
            raise self.error(
                "global scrape timeout greater than scrape interval", g.at("scrape_timeout")
            )
        if timeout == 0:
            timeout = min(_DEFAULT_GLOBAL.scrape_timeout, interval)
        g.duration("rule_query_offset")  # accepted for compatibility, unused by an agent
        g.str_("query_log_file")  # same

        protocols: tuple[ScrapeProtocol, ...] = ()
        if "scrape_protocols" in g.raw:
            protocols = _scrape_protocols(g, "scrape_protocols", "for global config")

        escaping = g.str_("metric_name_escaping_scheme")
        if escaping == "":
            escaping = "underscores" if scheme == "legacy" else "allow-utf-8"
        elif escaping not in _ESCAPING_SCHEMES:
            raise self.error(
                "unknown global name escaping method specified, must be one of "
                f'{_one_of(_ESCAPING_SCHEMES)}, got "{escaping}"',
                g.at("metric_name_escaping_scheme"),
            )
        return GlobalConfig(
            scrape_interval=interval,
            scrape_timeout=timeout,
            external_labels=tuple(sorted(external_labels)),
            scrape_protocols=protocols,
            body_size_limit=g.size("body_size_limit"),
            sample_limit=g.int_("sample_limit"),
            target_limit=g.int_("target_limit"),
            label_limit=g.int_("label_limit"),
            label_name_length_limit=g.int_("label_name_length_limit"),
            label_value_length_limit=g.int_("label_value_length_limit"),
            keep_dropped_targets=g.int_("keep_dropped_targets"),
            metric_name_validation_scheme=scheme or "utf8",
            metric_name_escaping_scheme=escaping,
            scrape_native_histograms=g.bool_("scrape_native_histograms", False),
            extra_scrape_metrics=g.bool_("extra_scrape_metrics", False),
            evaluation_interval=g.duration("evaluation_interval")
            or _DEFAULT_GLOBAL.evaluation_interval,
            convert_classic_histograms_to_nhcb=g.bool_("convert_classic_histograms_to_nhcb", False),
            always_scrape_classic_histograms=g.bool_("always_scrape_classic_histograms", False),
        )

    # -- scrape configs ----------------------------------------------------------------

    def parse_scrape_config(self, raw: _Tree, path: str, glob_cfg: GlobalConfig) -> ScrapeConfig:
        """One ``scrape_configs`` entry with global fallbacks applied (spec §8.3)."""
        if raw is None:
            raise self.error("empty or null scrape config section", path)
        s = _Section(
            raw,
            path,
            kind="scrape_config",
            known=_SCRAPE_KEYS,
            unsupported=_SCRAPE_UNSUPPORTED,
            file=self.file,
        )
        job = s.str_("job_name")
        if not job:
            raise s.error("job_name is empty", "job_name" if "job_name" in s.raw else None)
        http_client = self.parse_http_client(s, HTTPClientConfig())

        relabel_configs = self.parse_relabel_list(
            s, "relabel_configs", "target", "empty or null target relabeling rule in scrape config"
        )
        metric_relabel_configs = self.parse_relabel_list(
            s,
            "metric_relabel_configs",
            "metric",
            "empty or null metric relabeling rule in scrape config",
        )
        static_configs = self.parse_sd_list(s, "static_configs", self.parse_static_config)
        if not relabel_configs:
            for i, sc in enumerate(static_configs):
                for j, target in enumerate(sc.targets):
                    if "/" in target:
                        where = _idx(_join(_idx(s.at("static_configs"), i), "targets"), j)
                        raise self.error(f'"{target}" is not a valid hostname', where)
        file_sd = self.parse_sd_list(s, "file_sd_configs", self.parse_file_sd)
        http_sd = self.parse_sd_list(s, "http_sd_configs", self.parse_http_sd)
        k8s_sd = self.parse_sd_list(s, "kubernetes_sd_configs", self.parse_kubernetes_sd)

        interval = s.duration("scrape_interval") or glob_cfg.scrape_interval
        timeout = s.duration("scrape_timeout") or 0.0
        if timeout > interval:
            raise s.error(
                "scrape timeout greater than scrape interval for scrape config with job name "
                f'"{job}"',
                "scrape_timeout",
            )
        if timeout == 0:
            timeout = min(glob_cfg.scrape_timeout, interval)

        native = s.opt_bool("scrape_native_histograms")
        native_histograms = glob_cfg.scrape_native_histograms if native is None else native
        job_for = f'for scrape config with job name "{job}"'
        if "scrape_protocols" in s.raw:
            protocols = _scrape_protocols(s, "scrape_protocols", job_for)
        elif glob_cfg.scrape_protocols:
            protocols = glob_cfg.scrape_protocols
        elif native_histograms:
            protocols = DEFAULT_PROTO_FIRST_SCRAPE_PROTOCOLS
        else:
            protocols = DEFAULT_SCRAPE_PROTOCOLS
        fallback: ScrapeProtocol | None = None
        fallback_text = s.str_("fallback_scrape_protocol")
        if fallback_text:
            if fallback_text not in SCRAPE_PROTOCOL_MEDIA_TYPES:
                raise s.error(
                    f'invalid fallback_scrape_protocol for scrape config with job name "{job}": '
                    f"{_unknown_protocol(fallback_text)}",
                    "fallback_scrape_protocol",
                )
            fallback = cast("ScrapeProtocol", fallback_text)

        local_scheme = _validation_scheme(s, "scrape config")
        scheme = local_scheme or glob_cfg.metric_name_validation_scheme
        escaping = s.str_("metric_name_escaping_scheme")
        if escaping == "":
            if not local_scheme:
                escaping = glob_cfg.metric_name_escaping_scheme
            else:
                escaping = "underscores" if scheme == "legacy" else "allow-utf-8"
        if escaping not in _ESCAPING_SCHEMES:
            raise s.error(
                "unknown scrape config name escaping method specified, must be one of "
                f'{_one_of(_ESCAPING_SCHEMES)}, got "{escaping}"',
                "metric_name_escaping_scheme",
            )
        if escaping == "allow-utf-8" and scheme != "utf8":
            raise s.error(
                "utf8 metric names requested but validation scheme is not set to UTF8",
                "metric_name_escaping_scheme" if "metric_name_escaping_scheme" in s.raw else None,
            )

        params: list[tuple[str, tuple[str, ...]]] = []
        for name, values in s.mapping("params").items():
            vpath = _join(s.at("params"), name)
            if not isinstance(values, list):
                raise self.error(f"cannot unmarshal {_describe(values)} into []string", vpath)
            params.append(
                (name, tuple(_as_str(v, _idx(vpath, i), self.file) for i, v in enumerate(values)))
            )

        def fallback_int(key: str, global_value: int) -> int:
            return s.int_(key) or global_value

        extra = s.opt_bool("extra_scrape_metrics")
        convert = s.opt_bool("convert_classic_histograms_to_nhcb")
        always = s.opt_bool("always_scrape_classic_histograms")
        return ScrapeConfig(
            job_name=job,
            scrape_interval=interval,
            scrape_timeout=timeout,
            scrape_protocols=protocols,
            fallback_scrape_protocol=fallback,
            metrics_path=s.str_("metrics_path") or "/metrics",
            scheme=s.str_("scheme") or "http",
            honor_labels=s.bool_("honor_labels", False),
            honor_timestamps=s.bool_("honor_timestamps", True),
            track_timestamps_staleness=s.bool_("track_timestamps_staleness", False),
            params=tuple(params),
            enable_compression=s.bool_("enable_compression", True),
            body_size_limit=s.size("body_size_limit") or glob_cfg.body_size_limit,
            sample_limit=fallback_int("sample_limit", glob_cfg.sample_limit),
            target_limit=fallback_int("target_limit", glob_cfg.target_limit),
            label_limit=fallback_int("label_limit", glob_cfg.label_limit),
            label_name_length_limit=fallback_int(
                "label_name_length_limit", glob_cfg.label_name_length_limit
            ),
            label_value_length_limit=fallback_int(
                "label_value_length_limit", glob_cfg.label_value_length_limit
            ),
            keep_dropped_targets=fallback_int(
                "keep_dropped_targets", glob_cfg.keep_dropped_targets
            ),
            extra_scrape_metrics=glob_cfg.extra_scrape_metrics if extra is None else extra,
            metric_name_validation_scheme=scheme,
            scrape_native_histograms=native_histograms,
            http_client=http_client,
            static_configs=static_configs,
            file_sd_configs=file_sd,
            http_sd_configs=http_sd,
            kubernetes_sd_configs=k8s_sd,
            relabel_configs=relabel_configs,
            metric_relabel_configs=metric_relabel_configs,
            scrape_via_apiserver_proxy=s.bool_("scrape_via_apiserver_proxy", False),
            metric_name_escaping_scheme=escaping,
            convert_classic_histograms_to_nhcb=(
                glob_cfg.convert_classic_histograms_to_nhcb if convert is None else convert
            ),
            always_scrape_classic_histograms=(
                glob_cfg.always_scrape_classic_histograms if always is None else always
            ),
            native_histogram_bucket_limit=s.int_("native_histogram_bucket_limit"),
            native_histogram_min_bucket_factor=s.float_("native_histogram_min_bucket_factor"),
        )

    def parse_relabel_list(
        self, s: _Section, key: str, context: str, null_message: str
    ) -> tuple[RelabelConfig, ...]:
        """A list of relabel rules, validated by `collector.model.relabel.parse_rule`."""
        rules: list[RelabelConfig] = []
        for i, raw in enumerate(s.list_(key)):
            path = _idx(s.at(key), i)
            if raw is None:
                raise self.error(null_message, path)
            try:
                rules.append(relabel.parse_rule(_relabel_plain(raw), context=context))
            except ConfigError as exc:
                raise ConfigError(exc.message, path=_join(path, exc.path), file=self.file) from exc
        return tuple(rules)

    def parse_sd_list(
        self, s: _Section, key: str, parse: Callable[[_Tree, str], _T]
    ) -> tuple[_T, ...]:
        """An ``*_configs`` list; a null or empty entry is refused like Prometheus does."""
        out: list[_T] = []
        for i, raw in enumerate(s.list_(key)):
            path = _idx(s.at(key), i)
            if raw is None or raw == {}:
                raise self.error(f"empty or null section in {key}", path)
            out.append(parse(raw, path))
        return tuple(out)

    def parse_static_config(self, raw: _Tree, path: str) -> StaticConfig:
        """One ``static_configs`` entry."""
        s = _Section(
            raw, path, kind="static_config", known=frozenset({"targets", "labels"}), file=self.file
        )
        labels: list[tuple[str, str]] = []
        for name, value in s.str_map("labels"):
            if not is_valid_label_name(name):
                raise self.error(f'"{name}" is not a valid label name', _join(s.at("labels"), name))
            if not _valid_utf8(value):
                raise self.error(
                    f'"{value}" is not a valid label value', _join(s.at("labels"), name)
                )
            labels.append((name, value))
        return StaticConfig(targets=tuple(s.str_list("targets")), labels=tuple(sorted(labels)))

    def parse_file_sd(self, raw: _Tree, path: str) -> FileSDConfig:
        """One ``file_sd_configs`` entry."""
        s = _Section(
            raw,
            path,
            kind="file_sd_config",
            known=frozenset({"files", "refresh_interval"}),
            file=self.file,
        )
        files = s.str_list("files")
        if not files:
            raise s.error("file service discovery config must contain at least one path name")
        for i, name in enumerate(files):
            if _PAT_FILE_SD_NAME.fullmatch(name) is None:
                raise self.error(
                    f'path name "{name}" is not valid for file discovery', _idx(s.at("files"), i)
                )
        refresh = s.duration("refresh_interval")
        return FileSDConfig(
            files=tuple(_join_dir(self.base_dir, f) for f in files),
            refresh_interval=300.0 if refresh is None else refresh,
        )

    def parse_http_sd(self, raw: _Tree, path: str) -> HTTPSDConfig:
        """One ``http_sd_configs`` entry."""
        s = _Section(
            raw,
            path,
            kind="http_sd_config",
            known=frozenset({"url", "refresh_interval"}) | _HTTP_KEYS,
            unsupported=_HTTP_UNSUPPORTED,
            file=self.file,
        )
        url = s.str_("url")
        if not url:
            raise s.error("URL is missing", "url" if "url" in s.raw else None)
        try:
            parts = urlsplit(url)
        except ValueError as exc:
            raise s.error(f"invalid URL {url!r}: {exc}", "url") from None
        if parts.scheme not in ("http", "https"):
            raise s.error("URL scheme must be 'http' or 'https'", "url")
        if not parts.netloc:
            raise s.error("host is missing in URL", "url")
        http_client = self.parse_http_client(s, HTTPClientConfig())
        refresh = s.duration("refresh_interval")
        return HTTPSDConfig(
            url=url, refresh_interval=60.0 if refresh is None else refresh, http_client=http_client
        )

    def parse_kubernetes_sd(self, raw: _Tree, path: str) -> KubernetesSDConfig:
        """One ``kubernetes_sd_configs`` entry with every check of spec §2.1."""
        s = _Section(
            raw,
            path,
            kind="kubernetes_sd_config",
            known=_K8S_KEYS,
            unsupported=_HTTP_UNSUPPORTED,
            file=self.file,
        )
        role = s.str_("role")
        if not role:
            raise s.error(
                "role missing (one of: pod, service, endpoints, endpointslice, node, ingress)"
            )
        if role not in _K8S_ROLES:
            raise s.error(f'unknown Kubernetes SD role "{role}"', "role")
        http_client = self.parse_http_client(s, HTTPClientConfig())
        custom_http = http_client != HTTPClientConfig()
        api_server = s.str_("api_server")
        kubeconfig = s.str_("kubeconfig_file")
        ns = s.section(
            "namespaces", kind="namespace_discovery", known=frozenset({"names", "own_namespace"})
        )
        own_namespace = ns.bool_("own_namespace", False)
        if api_server:
            _check_http_url(s, "api_server", api_server)
        if api_server and kubeconfig:
            raise s.error("cannot use 'kubeconfig_file' and 'api_server' simultaneously")
        if kubeconfig and custom_http:
            raise s.error(
                "cannot use a custom HTTP client configuration together with 'kubeconfig_file'"
            )
        if not api_server and custom_http:
            raise s.error(
                "to use custom HTTP client configuration please provide the 'api_server' URL "
                "explicitly"
            )
        if api_server and own_namespace:
            raise s.error("cannot use 'api_server' and 'namespaces.own_namespace' simultaneously")
        if kubeconfig and own_namespace:
            raise s.error(
                "cannot use 'kubeconfig_file' and 'namespaces.own_namespace' simultaneously"
            )

        selectors: list[KubernetesSelector] = []
        seen_roles: set[str] = set()
        allowed = _K8S_SELECTOR_ROLES[role]
        for i, raw_sel in enumerate(s.list_("selectors")):
            spath = _idx(s.at("selectors"), i)
            sel = _Section(
                raw_sel,
                spath,
                kind="selector_config",
                known=frozenset({"role", "label", "field"}),
                file=self.file,
            )
            sel_role = sel.str_("role")
            if sel_role and sel_role not in _K8S_ROLES:
                raise sel.error(f'unknown Kubernetes SD role "{sel_role}"', "role")
            if sel_role in seen_roles:
                raise sel.error(f"duplicated selector role: {sel_role}", "role")
            seen_roles.add(sel_role)
            if sel_role not in allowed:
                raise sel.error(
                    f"{role} role supports only {', '.join(allowed)} selectors",
                    "role" if "role" in sel.raw else None,
                )
            label, field_sel = sel.str_("label"), sel.str_("field")
            problem = _label_selector_problem(label)
            if problem:
                raise sel.error(f'invalid label selector "{label}": {problem}', "label")
            problem = _field_selector_problem(field_sel)
            if problem:
                raise sel.error(f'invalid field selector "{field_sel}": {problem}', "field")
            selectors.append(KubernetesSelector(role=sel_role, label=label, field=field_sel))

        am = s.section(
            "attach_metadata",
            kind="attach_metadata",
            known=frozenset({"node", "namespace", "deployment", "job", "cronjob"}),
        )
        return KubernetesSDConfig(
            role=cast(
                "Literal['node', 'pod', 'service', 'endpoints', 'endpointslice', 'ingress']", role
            ),
            api_server=api_server,
            kubeconfig_file=_join_dir(self.base_dir, kubeconfig),
            namespaces=tuple(ns.str_list("names")),
            own_namespace=own_namespace,
            selectors=tuple(selectors),
            attach_metadata=AttachMetadata(
                node=am.bool_("node", False),
                namespace=am.bool_("namespace", False),
                deployment=am.bool_("deployment", False),
                job=am.bool_("job", False),
                cronjob=am.bool_("cronjob", False),
            ),
            http_client=http_client,
        )

    # -- HTTP client -------------------------------------------------------------------

    def parse_http_client(self, s: _Section, default: HTTPClientConfig) -> HTTPClientConfig:
        """The inline HTTP client keys of section ``s`` (prometheus/common ``Validate``)."""
        bearer = s.str_("bearer_token")
        bearer_file = s.str_("bearer_token_file")
        # ``basic_auth:`` (null) is "not configured"; ``basic_auth: {}`` is configured, empty.
        basic = self.parse_basic_auth(s) if s.has("basic_auth") else None
        if bearer and bearer_file:
            raise s.error("at most one of bearer_token & bearer_token_file must be configured")
        if basic is not None and (bearer or bearer_file):
            raise s.error(
                "at most one of basic_auth, oauth2, bearer_token & bearer_token_file must be "
                "configured"
            )
        authorization: Authorization | None = None
        if s.get("authorization") is not None:
            a = s.section(
                "authorization",
                kind="authorization",
                known=frozenset({"type", "credentials", "credentials_file"}),
                unsupported=frozenset({"credentials_ref"}),
            )
            if bearer or bearer_file:
                raise s.error(
                    "authorization is not compatible with bearer_token & bearer_token_file"
                )
            credentials, credentials_file = a.str_("credentials"), a.str_("credentials_file")
            if credentials and credentials_file:
                raise a.error(
                    "at most one of authorization credentials & credentials_file must be configured"
                )
            auth_type = a.str_("type").strip() or "Bearer"
            if auth_type.lower() == "basic":
                raise a.error(
                    'authorization type cannot be set to "basic", use "basic_auth" instead', "type"
                )
            if basic is not None:
                raise s.error(
                    "at most one of basic_auth, oauth2 & authorization must be configured"
                )
            authorization = Authorization(
                type=auth_type,
                credentials=credentials,
                credentials_file=_join_dir(self.base_dir, credentials_file),
            )
        elif bearer:
            authorization = Authorization(credentials=bearer)
        elif bearer_file:
            authorization = Authorization(credentials_file=_join_dir(self.base_dir, bearer_file))

        proxy_url = s.str_("proxy_url")
        if proxy_url:
            _check_http_url(s, "proxy_url", proxy_url)
        no_proxy = s.str_("no_proxy")
        from_env = s.bool_("proxy_from_environment", False)
        connect_header: list[tuple[str, tuple[str, ...]]] = []
        for name, values in s.mapping("proxy_connect_header").items():
            hpath = _join(s.at("proxy_connect_header"), name)
            if not isinstance(values, list):
                raise self.error(f"cannot unmarshal {_describe(values)} into []string", hpath)
            connect_header.append(
                (name, tuple(_as_str(v, _idx(hpath, i), self.file) for i, v in enumerate(values)))
            )
        if connect_header and not from_env and not proxy_url:
            raise s.error(
                "if proxy_connect_header is configured, proxy_url or proxy_from_environment must "
                "also be configured"
            )
        if from_env and proxy_url:
            raise s.error(
                "if proxy_from_environment is configured, proxy_url must not be configured"
            )
        if from_env and no_proxy:
            raise s.error(
                "if proxy_from_environment is configured, no_proxy must not be configured"
            )
        if no_proxy and not proxy_url:
            raise s.error("if no_proxy is configured, proxy_url must also be configured")

        headers: list[tuple[str, tuple[str, ...]]] = []
        for name, raw_header in s.mapping("http_headers").items():
            hpath = _join(s.at("http_headers"), name)
            canonical = _canonical_header(name)
            if name.lower() in _RESERVED_HTTP_HEADERS:
                raise self.error(f'setting header "{canonical}" is not allowed', hpath)
            h = _Section(
                raw_header,
                hpath,
                kind="header",
                known=frozenset({"values"}),
                unsupported=frozenset({"secrets", "files"}),
                file=self.file,
            )
            headers.append((name, tuple(h.str_list("values"))))

        return HTTPClientConfig(
            basic_auth=basic,
            authorization=authorization,
            tls_config=self.parse_tls(s),
            proxy_url=proxy_url,
            no_proxy=no_proxy,
            proxy_from_environment=from_env,
            proxy_connect_header=tuple(connect_header),
            follow_redirects=s.bool_("follow_redirects", default.follow_redirects),
            enable_http2=s.bool_("enable_http2", default.enable_http2),
            http_headers=tuple(headers),
        )

    def parse_basic_auth(self, s: _Section) -> BasicAuth:
        """``basic_auth``: one of each username/password pair."""
        b = s.section(
            "basic_auth",
            kind="basic_auth",
            known=frozenset({"username", "username_file", "password", "password_file"}),
            unsupported=frozenset({"username_ref", "password_ref"}),
        )
        username, username_file = b.str_("username"), b.str_("username_file")
        password, password_file = b.str_("password"), b.str_("password_file")
        if username and username_file:
            raise b.error("at most one of basic_auth username & username_file must be configured")
        if password and password_file:
            raise b.error("at most one of basic_auth password & password_file must be configured")
        return BasicAuth(
            username=username,
            username_file=_join_dir(self.base_dir, username_file),
            password=password,
            password_file=_join_dir(self.base_dir, password_file),
        )

    def parse_tls(self, s: _Section) -> TLSConfig:
        """``tls_config`` (prometheus/common ``TLSConfig.Validate``)."""
        t = s.section(
            "tls_config",
            kind="tls_config",
            known=_names(
                """
                ca ca_file cert cert_file key key_file server_name
                insecure_skip_verify min_version max_version
                """
            ),
            unsupported=frozenset({"ca_ref", "cert_ref", "key_ref"}),
        )
        values = {k: t.str_(k) for k in ("ca", "ca_file", "cert", "cert_file", "key", "key_file")}
        for inline in ("ca", "cert", "key"):
            if values[inline] and values[f"{inline}_file"]:
                raise t.error(f"at most one of {inline} and {inline}_file must be configured")
        has_cert = bool(values["cert"] or values["cert_file"])
        has_key = bool(values["key"] or values["key_file"])
        if has_cert and not has_key:
            raise t.error(
                "exactly one of key or key_file must be configured when a client certificate is "
                "configured"
            )
        if has_key and not has_cert:
            raise t.error(
                "exactly one of cert or cert_file must be configured when a client key is "
                "configured"
            )
        versions = {}
        for key in ("min_version", "max_version"):
            version = t.str_(key)
            if version and version not in _TLS_VERSIONS:
                raise t.error(f"unknown TLS version: {version}", key)
            versions[key] = version
        return TLSConfig(
            ca=values["ca"],
            ca_file=_join_dir(self.base_dir, values["ca_file"]),
            cert=values["cert"],
            cert_file=_join_dir(self.base_dir, values["cert_file"]),
            key=values["key"],
            key_file=_join_dir(self.base_dir, values["key_file"]),
            server_name=t.str_("server_name"),
            insecure_skip_verify=t.bool_("insecure_skip_verify", False),
            min_version=versions["min_version"],
            max_version=versions["max_version"],
        )

    # -- remote write ------------------------------------------------------------------

    def parse_remote_writes(self, top: _Section) -> tuple[RemoteWriteConfig, ...]:
        """Every ``remote_write`` entry, with names and duplicate checks (spec §6.5)."""
        out: list[RemoteWriteConfig] = []
        names: set[str] = set()
        hashes: set[str] = set()
        for i, raw in enumerate(top.list_("remote_write")):
            path = _idx("remote_write", i)
            if raw is None:
                raise self.error("empty or null remote write config section", path)
            rw = self.parse_remote_write(raw, path)
            if rw.name and rw.name in names:
                raise self.error(
                    f'found multiple remote write configs with job name "{rw.name}"',
                    _join(path, "name"),
                )
            if rw.config_hash in hashes:
                raise self.error(
                    f"duplicate remote write configs are not allowed, found duplicate for URL: "
                    f"{_redact_url(rw.url)}",
                    path,
                )
            hashes.add(rw.config_hash)
            if rw.name:
                names.add(rw.name)
            out.append(rw)
        return tuple(rw if rw.name else _replace_name(rw, rw.config_hash[:6]) for rw in out)

    def parse_remote_write(self, raw: _Tree, path: str) -> RemoteWriteConfig:
        """One ``remote_write`` entry; ``name`` stays empty here when not given."""
        s = _Section(
            raw,
            path,
            kind="remote_write",
            known=_REMOTE_WRITE_KEYS,
            unsupported=_HTTP_UNSUPPORTED | {"sigv4", "azuread", "google_iam"},
            file=self.file,
        )
        url = s.str_("url")
        if not url:
            raise s.error("url for remote_write is empty", "url" if "url" in s.raw else None)
        _check_http_url(s, "url", url)
        write_relabel = self.parse_relabel_list(
            s,
            "write_relabel_configs",
            "write",
            "empty or null relabeling rule in remote write config",
        )
        headers = s.str_map("headers")
        for name, _value in headers:
            if name.lower() == "authorization":
                raise self.error(
                    "authorization header must be changed via the basic_auth, authorization, "
                    "oauth2, sigv4, azuread or google_iam parameter",
                    _join(s.at("headers"), name),
                )
            if name.lower() in _RESERVED_WRITE_HEADERS:
                raise self.error(
                    f"{name} is a reserved header. It must not be changed",
                    _join(s.at("headers"), name),
                )
        message = s.str_("protobuf_message") or "prometheus.WriteRequest"
        if message not in _PROTOBUF_MESSAGES:
            raise s.error(
                f"invalid protobuf_message value: unknown remote write protobuf message {message}, "
                f"supported: {', '.join(_PROTOBUF_MESSAGES)}",
                "protobuf_message",
            )
        http_client = self.parse_http_client(s, HTTPClientConfig(enable_http2=False))
        remote_timeout = s.duration("remote_timeout")
        digest = hashlib.md5(
            yaml.safe_dump(
                _to_plain(raw), sort_keys=True, default_flow_style=False, allow_unicode=True
            ).encode("utf-8"),
            usedforsecurity=False,
        ).hexdigest()
        return RemoteWriteConfig(
            url=url,
            name=s.str_("name"),
            remote_timeout=30.0 if remote_timeout is None else remote_timeout,
            headers=tuple(headers),
            write_relabel_configs=write_relabel,
            send_exemplars=s.bool_("send_exemplars", False),
            send_native_histograms=s.bool_("send_native_histograms", False),
            round_robin_dns=s.bool_("round_robin_dns", False),
            protobuf_message=cast(
                "Literal['prometheus.WriteRequest', 'io.prometheus.write.v2.Request']", message
            ),
            queue_config=self.parse_queue(s),
            metadata_config=self.parse_metadata(s),
            http_client=http_client,
            config_hash=digest,
        )

    def parse_queue(self, s: _Section) -> QueueConfig:
        """``queue_config`` with the checks of spec §6.3."""
        q = s.section("queue_config", kind="queue_config", known=_QUEUE_KEYS)
        d = QueueConfig()

        def dur(key: str, default: float) -> float:
            value = q.duration(key)
            return default if value is None else value

        cfg = QueueConfig(
            capacity=q.int_("capacity", d.capacity, unsigned=False),
            max_shards=q.int_("max_shards", d.max_shards, unsigned=False),
            min_shards=q.int_("min_shards", d.min_shards, unsigned=False),
            max_samples_per_send=q.int_(
                "max_samples_per_send", d.max_samples_per_send, unsigned=False
            ),
            batch_send_deadline=dur("batch_send_deadline", d.batch_send_deadline),
            min_backoff=dur("min_backoff", d.min_backoff),
            max_backoff=dur("max_backoff", d.max_backoff),
            retry_on_http_429=q.bool_("retry_on_http_429", d.retry_on_http_429),
            sample_age_limit=dur("sample_age_limit", d.sample_age_limit),
        )
        for key in ("max_shards", "min_shards"):
            if getattr(cfg, key) <= 0:
                raise q.error(f"remote write queue {key} must be positive", key)
        if cfg.min_shards > cfg.max_shards:
            raise q.error(
                "remote write queue min_shards must not be greater than max_shards", "min_shards"
            )
        for key in ("max_samples_per_send", "capacity"):
            if getattr(cfg, key) <= 0:
                raise q.error(f"remote write queue {key} must be positive", key)
        if cfg.max_backoff < cfg.min_backoff:
            raise q.error(
                "remote write queue max_backoff must not be less than min_backoff", "max_backoff"
            )
        return cfg

    def parse_metadata(self, s: _Section) -> MetadataConfig:
        """``metadata_config``."""
        m = s.section(
            "metadata_config",
            kind="metadata_config",
            known=frozenset({"send", "send_interval", "max_samples_per_send"}),
        )
        interval = m.duration("send_interval")
        return MetadataConfig(
            send=m.bool_("send", True),
            send_interval=60.0 if interval is None else interval,
            max_samples_per_send=m.int_("max_samples_per_send", 2000),
        )


# ------------------------------------------------------------------------------ validators


def _agent_mode_empty(value: _Tree) -> bool:
    """Whether a server-only section holds nothing (Prometheus accepts empty ones)."""
    if _is_empty(value):
        return True
    if isinstance(value, dict):
        return all(_is_empty(v) for v in value.values())
    return False


def _validation_scheme(s: _Section, what: str) -> Literal["utf8", "legacy", ""]:
    """``metric_name_validation_scheme``: ``""`` when unset."""
    value = s.str_("metric_name_validation_scheme")
    if value in ("", "utf8", "legacy"):
        return cast("Literal['utf8', 'legacy', '']", value)
    raise s.error(
        f"unknown {what} name validation method specified, must be either '', 'legacy' or "
        f"'utf8', got {value}",
        "metric_name_validation_scheme",
    )


def _one_of(options: Sequence[str]) -> str:
    """``'a', 'b', 'c', or 'd'`` as Prometheus lists choices."""
    quoted = [f"'{o}'" for o in options]
    return ", ".join(quoted[:-1]) + ", or " + quoted[-1]


def _unknown_protocol(name: str) -> str:
    """Prometheus's unknown-protocol message; Go prints the sorted list as ``[a b]``."""
    supported = " ".join(sorted(SCRAPE_PROTOCOL_MEDIA_TYPES))
    return f"unknown scrape protocol {name}, supported: [{supported}]"


def _scrape_protocols(s: _Section, key: str, suffix: str) -> tuple[ScrapeProtocol, ...]:
    """A present ``scrape_protocols`` list, validated like ``validateAcceptScrapeProtocols``."""
    protocols = s.str_list(key)
    if not protocols:
        raise s.error(f"scrape_protocols cannot be empty {suffix}", key)
    seen: set[str] = set()
    for i, protocol in enumerate(protocols):
        if protocol.lower() in seen:
            raise s.error(
                f"duplicated protocol in scrape_protocols, got [{' '.join(protocols)}] {suffix}",
                _idx(key, i),
            )
        if protocol not in SCRAPE_PROTOCOL_MEDIA_TYPES:
            raise s.error(f"scrape_protocols: {_unknown_protocol(protocol)} {suffix}", _idx(key, i))
        seen.add(protocol.lower())
    return tuple(cast("ScrapeProtocol", p) for p in protocols)


def _valid_utf8(value: str) -> bool:
    """Whether ``value`` encodes as UTF-8 (no lone surrogates)."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _check_http_url(s: _Section, key: str, url: str) -> None:
    """Collector extension: a URL we will connect to must be absolute http(s)."""
    try:
        parts = urlsplit(url)
    except ValueError as exc:
        raise s.error(f'invalid URL "{url}": {exc}', key) from None
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise s.error(f'invalid URL "{url}": must be an absolute http or https URL', key)


def _canonical_header(name: str) -> str:
    """Go's ``http.CanonicalHeaderKey``: ``x-foo-bar`` -> ``X-Foo-Bar``."""
    return "-".join(part[:1].upper() + part[1:].lower() for part in name.split("-"))


def _redact_url(url: str) -> str:
    """The URL with any password replaced, as Prometheus's ``config.URL.Redacted``."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.hostname or ""
    netloc = f"{user}:xxxxx@{host}" + (f":{parts.port}" if parts.port else "")
    return parts._replace(netloc=netloc).geturl()


def _replace_name(rw: RemoteWriteConfig, name: str) -> RemoteWriteConfig:
    """A copy of ``rw`` with ``name`` set."""
    values = {f.name: getattr(rw, f.name) for f in fields(rw)}
    values["name"] = name
    return RemoteWriteConfig(**values)


# Kubernetes selector syntax (apimachinery ``labels.Parse`` / ``fields.ParseSelector``), checked
# only as far as needed to refuse what the API server would refuse.
_K8S_NAME = r"[A-Za-z0-9](?:[-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?"
_K8S_PREFIX = r"[a-z0-9](?:[-a-z0-9]*[a-z0-9])?(?:\.[a-z0-9](?:[-a-z0-9]*[a-z0-9])?)*"
_K8S_KEY = rf"(?:{_K8S_PREFIX}/)?{_K8S_NAME}"
_K8S_VALUE = rf"(?:{_K8S_NAME})?"
_LABEL_REQUIREMENT = re.compile(
    rf"\s*(?:!\s*{_K8S_KEY}"
    rf"|{_K8S_KEY}\s*(?:(?:==|=|!=)\s*{_K8S_VALUE}|[<>]\s*-?[0-9]+"
    rf"|\s+(?:in|notin)\s*\(\s*{_K8S_VALUE}(?:\s*,\s*{_K8S_VALUE})*\s*\))?)\s*"
)


def _split_top_level(s: str) -> Iterator[str]:
    """Split a label selector on commas outside parentheses."""
    depth = 0
    start = 0
    for i, ch in enumerate(s):
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        elif ch == "," and depth == 0:
            yield s[start:i]
            start = i + 1
    yield s[start:]


def _label_selector_problem(selector: str) -> str:
    """Why a Kubernetes label selector is invalid, or "" when it is fine (or empty)."""
    if not selector.strip():
        return ""
    for requirement in _split_top_level(selector):
        if not requirement.strip():
            return "empty requirement"
        if _LABEL_REQUIREMENT.fullmatch(requirement) is None:
            return f"unable to parse requirement {requirement.strip()!r}"
        key = re.split(r"[\s!=<>]", requirement.strip().lstrip("!").strip(), maxsplit=1)[0]
        if "/" in key and len(key.split("/", 1)[0]) > 253:
            return f"prefix part of {key!r} must be no more than 253 characters"
    return ""


def _field_selector_problem(selector: str) -> str:
    """Why a Kubernetes field selector is invalid, or "" when it is fine (or empty)."""
    if not selector:
        return ""
    for term in re.split(r"(?<!\\),", selector):
        match = re.search(r"!=|==|=", term)
        if match is None or match.start() == 0:
            return f"can't understand {term!r}"
    return ""


# ------------------------------------------------------------------------------ rendering

_DURATION_FIELDS = _names(
    """
    scrape_interval scrape_timeout evaluation_interval refresh_interval remote_timeout
    batch_send_deadline min_backoff max_backoff sample_age_limit send_interval
    """
)


def _render_value(name: str, value: object) -> object:
    """One field for YAML output: durations as strings, pair tuples as mappings."""
    if name in _DURATION_FIELDS and isinstance(value, float):
        return format_duration(value)
    if isinstance(value, RelabelConfig):
        return {"action": value.action} | _render_dataclass(value, omit_defaults=True)
    if is_dataclass(value) and not isinstance(value, type):
        return _render_dataclass(value)
    if isinstance(value, tuple):
        if value and all(isinstance(v, tuple) and len(v) == 2 for v in value):
            return {
                str(k): list(v) if isinstance(v, tuple) else v
                for k, v in cast("tuple[tuple[object, object], ...]", value)
            }
        return [_render_value("", v) for v in value]
    return value


def _render_dataclass(obj: object, *, omit_defaults: bool = False) -> dict[str, object]:
    """A dataclass as a mapping, empty strings/tuples and None left out.

    With ``omit_defaults``, fields equal to their declared default are left out too.
    """
    out: dict[str, object] = {}
    for f in fields(cast("type", type(obj))):
        value = getattr(obj, f.name)
        if value is None or value == "" or value == ():
            continue
        if omit_defaults and f.default is not MISSING and value == f.default:
            continue
        out[f.name] = _render_value(f.name, value)
    return out


def _render_http(client: HTTPClientConfig) -> dict[str, object]:
    """The inline HTTP client keys, secrets redacted."""
    out: dict[str, object] = {}
    if client.basic_auth is not None:
        basic = _render_dataclass(client.basic_auth)
        if client.basic_auth.password:
            basic["password"] = _SECRET
        out["basic_auth"] = basic
    if client.authorization is not None:
        auth = _render_dataclass(client.authorization)
        if client.authorization.credentials:
            auth["credentials"] = _SECRET
        out["authorization"] = auth
    if client.tls_config != TLSConfig():
        tls = _render_dataclass(client.tls_config)
        if client.tls_config.key:
            tls["key"] = _SECRET
        out["tls_config"] = tls
    if client.proxy_url:
        out["proxy_url"] = client.proxy_url
    if client.no_proxy:
        out["no_proxy"] = client.no_proxy
    if client.proxy_from_environment:
        out["proxy_from_environment"] = True
    if client.proxy_connect_header:
        out["proxy_connect_header"] = {
            name: [_SECRET] * len(values) for name, values in client.proxy_connect_header
        }
    out["follow_redirects"] = client.follow_redirects
    out["enable_http2"] = client.enable_http2
    if client.http_headers:
        out["http_headers"] = {name: {"values": list(v)} for name, v in client.http_headers}
    return out


def _render_global(g: GlobalConfig) -> dict[str, object]:
    """``global`` for `redacted_yaml`."""
    return _render_dataclass(g)


def _render_scrape(sc: ScrapeConfig) -> dict[str, object]:
    """One scrape config for `redacted_yaml`: HTTP keys inline, SD lists by their key."""
    out: dict[str, object] = {}
    for f in fields(ScrapeConfig):
        value = getattr(sc, f.name)
        if f.name == "http_client":
            out.update(_render_http(value))
        elif f.name == "scrape_via_apiserver_proxy":
            if value:
                out[f.name] = True
        elif f.name == "kubernetes_sd_configs":
            if value:
                out[f.name] = [_render_kubernetes(k) for k in value]
        elif f.name == "http_sd_configs":
            if value:
                out[f.name] = [
                    {"url": h.url, "refresh_interval": format_duration(h.refresh_interval)}
                    | _render_http(h.http_client)
                    for h in value
                ]
        elif f.name == "static_configs":
            if value:
                out[f.name] = [
                    {"targets": list(st.targets)}
                    | ({"labels": dict(st.labels)} if st.labels else {})
                    for st in value
                ]
        elif f.name == "params":
            if value:
                out[f.name] = {k: list(v) for k, v in value}
        elif value is not None and value != "" and value != ():
            out[f.name] = _render_value(f.name, value)
    return out


def _render_kubernetes(k: KubernetesSDConfig) -> dict[str, object]:
    """One kubernetes_sd_config for `redacted_yaml`."""
    out: dict[str, object] = {"role": k.role}
    if k.api_server:
        out["api_server"] = k.api_server
    if k.kubeconfig_file:
        out["kubeconfig_file"] = k.kubeconfig_file
    if k.namespaces or k.own_namespace:
        out["namespaces"] = {"names": list(k.namespaces), "own_namespace": k.own_namespace}
    if k.selectors:
        out["selectors"] = [_render_dataclass(s) for s in k.selectors]
    out["attach_metadata"] = _render_dataclass(k.attach_metadata)
    if k.http_client != HTTPClientConfig():
        out.update(_render_http(k.http_client))
    return out


def _render_remote_write(rw: RemoteWriteConfig) -> dict[str, object]:
    """One remote_write entry for `redacted_yaml`."""
    out: dict[str, object] = {}
    for f in fields(RemoteWriteConfig):
        value = getattr(rw, f.name)
        if f.name == "http_client":
            out.update(_render_http(value))
        elif f.name == "config_hash":
            continue
        elif f.name == "url":
            out[f.name] = _redact_url(value)
        elif f.name == "headers":
            if value:
                out[f.name] = dict(value)
        elif value is not None and value != "" and value != ():
            out[f.name] = _render_value(f.name, value)
    return out
