"""The other direction: a loaded `Config` back to YAML, secrets redacted.

`redacted_yaml` renders what the loader produced (`collector.config.schema`), Prometheus-shaped,
for ``/api/v1/status/config`` and the web UI: defaults filled in, environment expanded, paths
resolved, every secret shown as ``<secret>``. Secret-free output loads back to an equal config.

Prometheus counterpart: ``Config.String`` with ``config.Secret`` marshalling as ``<secret>``.
"""

from __future__ import annotations

from dataclasses import MISSING, fields, is_dataclass
from typing import cast

import yaml

from collector.config.http_client import redact_url
from collector.config.schema import (
    Config,
    GlobalConfig,
    HTTPClientConfig,
    KubernetesSDConfig,
    RemoteWriteConfig,
    ScrapeConfig,
    TLSConfig,
)
from collector.config.section import names
from collector.model.duration import format_duration
from collector.model.relabel import RelabelConfig

__all__ = ["redacted_yaml"]

_SECRET = "<secret>"


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


_DURATION_FIELDS = names(
    """
    scrape_interval scrape_timeout evaluation_interval refresh_interval remote_timeout
    batch_send_deadline min_backoff max_backoff sample_age_limit send_interval
    series_limit_window
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
        out["proxy_url"] = redact_url(client.proxy_url)
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
            out[f.name] = redact_url(value)
        elif f.name == "headers":
            if value:
                out[f.name] = dict(value)
        elif value is not None and value != "" and value != ():
            out[f.name] = _render_value(f.name, value)
    return out
