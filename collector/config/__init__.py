"""Prometheus-compatible configuration: YAML -> frozen dataclasses, defaults, validation.

Everything downstream (discovery, scrape, remote write, web) reads these dataclasses and never
the YAML. Durations are ``float`` seconds, sizes ``int`` bytes. Defaults are Prometheus 3.x's
(spec §8). Loading is strict: unknown keys, wrong types, bad durations, bad regexes and
impossible combinations are refused with Prometheus's messages. A load reports *every* problem,
not only the first: it raises one `collector.errors.ConfigError` whose ``problems`` each name
the file, line, column and YAML path, e.g.
``c.yml:12:9: scrape_configs[2].scrape_interval: not a valid duration string: "5x"``.

How a file is read (`load_config` / `load_config_text`, in `collector.config.loader`):

1. The YAML is composed into nodes and converted by us, not by ``yaml.safe_load``'s
   constructors, so that a scalar keeps its source text: ``version: 1.10`` is the string
   ``"1.10"`` and ``env: on`` is ``"on"`` where a string is expected, as with Go's yaml.v2.
   Duplicate mapping keys are refused, as Go's strict decoder does. Each node's line and
   column is kept for error messages (`collector.config.yaml_tree`).
2. ``${VAR}`` / ``$VAR`` are expanded from the environment in every string *value* (keys are
   untouched); ``$$`` is a literal ``$``; an undefined or empty variable expands to ``""`` and
   logs a warning. Prometheus does this for ``external_labels`` only; we do it everywhere so one
   file serves a DaemonSet (``${NODE_NAME}``) and a StatefulSet (``${POD_NAME}``). **Exception:**
   the ``replacement`` and ``target_label`` of relabel rules are not expanded, because there
   ``$1`` / ``${1}`` / ``${name}`` are regex-group templates (spec §5.3) and Prometheus files
   must load unchanged. A value that expansion changed may stand for a number or a boolean
   (``sample_limit: ${LIMIT}``).
3. Every section is checked for unknown keys first, then typed, defaulted and validated with
   Prometheus's messages (`collector.config.section` reads values; `scrape`, `discovery`,
   `http_client` and `remote_write` hold the rules of each area). A problem is recorded and
   checking goes on with the next value, the next job, the next section. Keys Prometheus
   knows but this agent does not implement (``oauth2``, ``consul_sd_configs``, ``sigv4``, ...)
   are refused with ``field X is not supported by collector`` when they carry a value; agent
   mode refuses ``alerting``, ``rule_files`` and ``remote_read``.
4. Relative file paths (TLS files, credential files, ``kubeconfig_file``, ``file_sd_configs``
   globs, ``scrape_config_files``) are joined to the directory of the file that names them.

The result is the frozen dataclasses of `collector.config.schema`; `collector.config.render`
turns one back into redacted YAML. This package re-exports the public names of both.

Collector extensions: ``scrape_via_apiserver_proxy: <bool>`` on a scrape config (scrape pods
and nodes through the Kubernetes API server proxy); ``url``/``api_server`` must be absolute
http(s) URLs at load time (Prometheus only fails later, when connecting).

Prometheus counterpart: ``config/config.go`` (plus ``prometheus/common/config`` for the HTTP
client block and the discovery packages' ``SDConfig.UnmarshalYAML``).
"""

from __future__ import annotations

from collector.config.loader import load_config, load_config_text
from collector.config.render import redacted_yaml
from collector.config.schema import (
    DEFAULT_PROTO_FIRST_SCRAPE_PROTOCOLS,
    DEFAULT_SCRAPE_PROTOCOLS,
    SCRAPE_PROTOCOL_MEDIA_TYPES,
    AgentOptions,
    AttachMetadata,
    Authorization,
    BasicAuth,
    Config,
    FileSDConfig,
    GlobalConfig,
    HTTPClientConfig,
    HTTPSDConfig,
    KubeletSDConfig,
    KubernetesSDConfig,
    KubernetesSelector,
    MetadataConfig,
    QueueConfig,
    RemoteWriteConfig,
    ScrapeConfig,
    ScrapeProtocol,
    StaticConfig,
    TLSConfig,
)

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
    "load_config",
    "load_config_text",
    "redacted_yaml",
]
