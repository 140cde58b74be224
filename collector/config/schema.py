"""The loaded configuration as frozen dataclasses, plus the constants shared with the pipeline.

The end product of the config package: the loader (`collector.config.loader`) turns YAML into
these values, and everything downstream (discovery, scrape, remote write, web) reads them and
never the YAML. Durations are ``float`` seconds, sizes ``int`` bytes. Defaults are Prometheus
3.x's (spec §8). `AgentOptions` holds the command-line options, set by the CLI.

Prometheus counterpart: the structs of ``config/config.go`` and ``prometheus/common/config``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from collector.model.relabel import RelabelConfig

__all__ = [
    "DEFAULT_PROTO_FIRST_SCRAPE_PROTOCOLS",
    "DEFAULT_SCRAPE_PROTOCOLS",
    "SCRAPE_PROTOCOL_MEDIA_TYPES",
    "AgentOptions",
    "AttachMetadata",
    "Authorization",
    "BasicAuth",
    "Config",
    "FileSDConfig",
    "GlobalConfig",
    "HTTPClientConfig",
    "HTTPSDConfig",
    "KubeletSDConfig",
    "KubernetesSDConfig",
    "KubernetesSelector",
    "MetadataConfig",
    "QueueConfig",
    "RemoteWriteConfig",
    "ScrapeConfig",
    "ScrapeProtocol",
    "StaticConfig",
    "TLSConfig",
]

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
class KubeletSDConfig:
    """One ``kubelet_sd_configs`` entry (collector extension: no Prometheus counterpart).

    The pods bound to one kubelet, from its ``/pods``, as the ``pod`` role would give them.
    """

    url: str
    """The kubelet; ``/pods`` is appended to its path. Default ``https://$NODE_NAME:10250``."""
    refresh_interval: float = 15.0
    """How often ``/pods`` is polled (the kubelet offers no watch)."""
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
    text list (``PrometheusProto`` is refused, so never protobuf). Empty only in hand-built
    configs, where it means the dynamic default of `collector.scrape.scraper`."""
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
    kubelet_sd_configs: tuple[KubeletSDConfig, ...] = ()
    """collector extension: the local kubelet's pods (`KubeletSDConfig`)."""
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
    sample_limit_mode: Literal["fail", "keep_first"] = "fail"
    """collector extension. ``fail`` (Prometheus): a scrape over ``sample_limit`` fails whole.
    ``keep_first``: the first ``sample_limit`` samples in body order are written, the rest are
    dropped and counted per target, and the scrape stays up."""
    series_limit: int = 0
    """collector extension (vmagent's ``series_limit``): distinct series one target may expose
    per `series_limit_window`; samples of further new series are dropped and counted per
    target, the series it already has keep flowing. 0 = no limit."""
    series_limit_window: float = 3600.0
    """Seconds over which `series_limit` counts distinct series: ``1h`` (vmagent's hourly limit)
    or ``1d`` (its daily one), or any duration of at least the scrape interval."""


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
    retry_on_http_429: bool = True
    """Retry 429 like 5xx (honouring ``Retry-After``). Prometheus defaults to false, which drops
    what a receiver only asked us to slow down for; an agent with no TSDB behind it must not."""
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
    wal_sync_interval: float = 1.0
    """``--storage.remote.wal-sync-interval``: group commit period of the write-ahead queues."""
    wal_fsync: bool = True
    """``--storage.remote.wal-fsync``: fsync every group commit."""
    max_disk_bytes: int = 1 << 30
    """``--storage.remote.max-disk-bytes``: cap of each destination's write-ahead log."""
    web_config_file: str = ""
    """``--web.config.file``: exporter-toolkit TLS / basic auth / headers for every endpoint;
    empty = plain HTTP, no authentication."""
    receiver_max_body_bytes: int = 32 << 20
    """``--web.remote-write-receiver.max-body-bytes``: compressed request body (413 above)."""
    receiver_max_decompressed_bytes: int = 128 << 20
    """``--web.remote-write-receiver.max-decompressed-bytes``: decompressed size (413 above),
    read from the snappy header before decompressing."""
    receiver_max_series_per_request: int = 100_000
    """``--web.remote-write-receiver.max-series-per-request`` (0 = no cap; 400 above)."""
    receiver_max_samples_per_request: int = 1_000_000
    """``--web.remote-write-receiver.max-samples-per-request``: float samples plus native
    histograms (0 = no cap; 400 above, before they are decoded into objects)."""
    receiver_max_labels_per_series: int = 128
    """``--web.remote-write-receiver.max-labels-per-series`` (0 = no cap; 400 above)."""
    receiver_max_label_name_length: int = 1024
    """``--web.remote-write-receiver.max-label-name-length``, UTF-8 bytes (0 = no cap)."""
    receiver_max_label_value_length: int = 16 * 1024
    """``--web.remote-write-receiver.max-label-value-length``, UTF-8 bytes (0 = no cap)."""
    cluster_peers_from: str = ""
    """``--cluster.peers-from``: ``kubernetes``, ``static`` or ``file``; empty: implied by
    ``--cluster.peers`` / ``--cluster.peers-file``, or no sharding (`collector.cluster`)."""
    cluster_peers: tuple[str, ...] = ()
    """``--cluster.peers=a,b,c``: every member's name, this one's included."""
    cluster_peers_file: str = ""
    """``--cluster.peers-file``: the member list in a file, re-read when it changes."""
    cluster_peers_file_refresh: float = 5.0
    """``--cluster.peers-file-refresh``: how often the peers file is checked, seconds."""
    cluster_self: str = ""
    """``--cluster.self``: this member's name; empty: ``$POD_NAME``, else the host name."""
    cluster_peers_selector: str = "app.kubernetes.io/name=collector"
    """``--cluster.peers-selector``: label selector of the agent's own pods (kubernetes)."""
    cluster_peers_namespace: str = ""
    """``--cluster.peers-namespace``: their namespace; empty: ``$POD_NAMESPACE``."""
    cluster_replication_factor: int = 1
    """``--cluster.replication-factor``: members that scrape each target."""
    cluster_handoff_overlap: float | None = None
    """``--cluster.handoff-overlap``: seconds a member keeps scraping a target another member
    took over, then stops without staleness markers; None: one scrape interval."""
    cluster_leave_delay: float = 0.0
    """``--cluster.leave-delay``: at SIGTERM, seconds spent not ready (so Kubernetes peers take
    over) but still scraping, before the ordered stop; 0: stop at once."""
    scrape_workers: str = "auto"
    """``--scrape.workers``: ``auto`` or a count of scrape processes (`collector.workers`)."""

    def config_env(self, environ: Mapping[str, str]) -> dict[str, str]:
        """The environment ``${VAR}`` expansion sees: ``environ`` plus
        ``COLLECTOR_SELF_ADDRESS``, where this agent's own ``/metrics`` answers (the listen
        address, an unspecified host replaced by loopback), unless ``environ`` sets it."""
        env = dict(environ)
        if "COLLECTOR_SELF_ADDRESS" not in env:
            host, _, port = self.listen_address.rpartition(":")
            if host in ("", "0.0.0.0", "[::]", "::"):
                host = "[::1]" if ":" in host else "127.0.0.1"
            env["COLLECTOR_SELF_ADDRESS"] = f"{host}:{port}"
        return env

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
"""The same with protobuf first: Prometheus's default when ``scrape_native_histograms`` is on
and neither the job nor ``global`` lists protocols."""
