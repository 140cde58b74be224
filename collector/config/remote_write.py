"""Step 3 of a load, remote-write area: every ``remote_write`` entry and its identity.

`parse_remote_writes` reads the list into `RemoteWriteConfig` values for `collector.remote`:
each entry's URL, headers, relabel rules, ``queue_config``, ``metadata_config`` and HTTP client
(`collector.config.http_client`), then the checks across entries (duplicate names, duplicate
blocks) and the default ``name``. Every problem is reported (see `collector.config.section`).

Identity: each block, as written but after environment expansion, is serialised with
``yaml.safe_dump(block, sort_keys=True, default_flow_style=False, allow_unicode=True)`` and
hashed with MD5; the hex digest is `RemoteWriteConfig.config_hash` and its first 6 characters the
default ``name`` (see `collector.config.load_config_text`).

Prometheus counterpart: ``RemoteWriteConfig.UnmarshalYAML`` and ``QueueConfig`` in
``config/config.go``; ``toHash`` in ``storage/remote/write.go``.
"""

from __future__ import annotations

import hashlib
from dataclasses import replace

import yaml

from collector.config.http_client import (
    HTTP_KEYS,
    HTTP_UNSUPPORTED,
    RESERVED_WRITE_HEADERS,
    check_http_url,
    parse_http_client,
    redact_url,
    refuse_unhonoured,
)
from collector.config.schema import HTTPClientConfig, MetadataConfig, QueueConfig, RemoteWriteConfig
from collector.config.section import Section, Source, names
from collector.config.yaml_tree import Tree, idx, join, to_plain

__all__ = ["parse_remote_writes"]

_REMOTE_WRITE_KEYS = (
    names(
        """
        url remote_timeout headers write_relabel_configs name send_exemplars
        send_native_histograms round_robin_dns protobuf_message queue_config
        metadata_config
        """
    )
    | HTTP_KEYS
)
_QUEUE_KEYS = names(
    """
    capacity max_shards min_shards max_samples_per_send batch_send_deadline min_backoff
    max_backoff retry_on_http_429 sample_age_limit
    """
)
_PROTOBUF_MESSAGES = ("prometheus.WriteRequest", "io.prometheus.write.v2.Request")
_HTTP_DEFAULT = HTTPClientConfig(enable_http2=False)
# What the sender does not implement (issue 12): a value that loads must act, so these are
# refused with the reason rather than ignored. The sender encodes remote write 1.0 float
# samples, native histograms and exemplars (`collector.remote.codec`, and
# `collector.remote.codec2` for ``protobuf_message: io.prometheus.write.v2.Request``) and
# posts through one aiohttp session.
_NOT_IMPLEMENTED = {
    "round_robin_dns": "the sender does not spread requests over the host's addresses",
}
_HTTP_UNHONOURED = {
    "enable_http2": "the sender speaks HTTP/1.1 only",
    "proxy_from_environment": "the sender does not read proxy settings from the environment",
    "no_proxy": "the sender does not apply it (only scrapes do)",
    "proxy_connect_header": "the sender does not send it (only scrapes do)",
}


def parse_remote_writes(top: Section) -> tuple[RemoteWriteConfig, ...]:
    """Every ``remote_write`` entry, with names and duplicate checks (spec §6.5)."""
    src = top.src
    out: list[RemoteWriteConfig] = []
    names_seen: set[str] = set()
    hashes: set[str] = set()
    for i, raw in enumerate(top.list_("remote_write")):
        path = idx("remote_write", i)
        if raw is None:
            src.report("empty or null remote write config section", path)
            continue
        rw = _parse_remote_write(src, raw, path)
        if rw is None:
            continue
        if rw.name and rw.name in names_seen:
            src.report(
                f'found multiple remote write configs with job name "{rw.name}"',
                join(path, "name"),
            )
        if rw.config_hash in hashes:
            src.report(
                f"duplicate remote write configs are not allowed, found duplicate for URL: "
                f"{redact_url(rw.url)}",
                path,
            )
        hashes.add(rw.config_hash)
        if rw.name:
            names_seen.add(rw.name)
        out.append(rw)
    return tuple(rw if rw.name else replace(rw, name=rw.config_hash[:6]) for rw in out)


def _parse_remote_write(src: Source, raw: Tree, path: str) -> RemoteWriteConfig | None:
    """One ``remote_write`` entry; ``name`` stays empty here when not given."""
    s = Section(
        raw,
        path,
        src=src,
        kind="remote_write",
        known=_REMOTE_WRITE_KEYS,
        unsupported=HTTP_UNSUPPORTED | {"sigv4", "azuread", "google_iam"},
    )
    if not s.valid:
        return None
    url = s.str_("url")
    if not url:
        if "url" not in s.failed:
            s.report("url for remote_write is empty", "url" if "url" in s.raw else None)
    else:
        check_http_url(s, "url", url)
    write_relabel = s.relabel_list(
        "write_relabel_configs", "write", "empty or null relabeling rule in remote write config"
    )
    headers = s.str_map("headers")
    for name, _value in headers:
        if name.lower() == "authorization":
            src.report(
                "authorization header must be changed via the basic_auth, authorization, "
                "oauth2, sigv4, azuread or google_iam parameter",
                join(s.at("headers"), name),
            )
        elif name.lower() in RESERVED_WRITE_HEADERS:
            src.report(
                f"{name} is a reserved header. It must not be changed", join(s.at("headers"), name)
            )
    message = s.str_("protobuf_message") or "prometheus.WriteRequest"
    if message not in _PROTOBUF_MESSAGES:
        s.fail(
            f"invalid protobuf_message value: unknown remote write protobuf message {message}, "
            f"supported: {', '.join(_PROTOBUF_MESSAGES)}",
            "protobuf_message",
        )
    for key, why in _NOT_IMPLEMENTED.items():
        if s.bool_(key, False):
            s.unsupported(key, f"{why}; only false is accepted")
    http_client = parse_http_client(s, _HTTP_DEFAULT)
    refuse_unhonoured(s, http_client, _HTTP_DEFAULT, _HTTP_UNHONOURED)
    remote_timeout = s.duration("remote_timeout")
    digest = hashlib.md5(
        yaml.safe_dump(
            to_plain(raw), sort_keys=True, default_flow_style=False, allow_unicode=True
        ).encode("utf-8"),
        usedforsecurity=False,
    ).hexdigest()
    return RemoteWriteConfig(
        url=url,
        name=s.str_("name"),
        remote_timeout=30.0 if remote_timeout is None else remote_timeout,
        headers=tuple(headers),
        write_relabel_configs=write_relabel,
        send_native_histograms=s.bool_("send_native_histograms", False),
        send_exemplars=s.bool_("send_exemplars", False),
        # round_robin_dns keeps its False default: any other value was refused above.
        protobuf_message=(
            "io.prometheus.write.v2.Request"
            if message == "io.prometheus.write.v2.Request"
            else "prometheus.WriteRequest"
        ),
        queue_config=_parse_queue(s),
        metadata_config=_parse_metadata(s),
        http_client=http_client,
        config_hash=digest,
    )


def _parse_queue(s: Section) -> QueueConfig:
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
        max_samples_per_send=q.int_("max_samples_per_send", d.max_samples_per_send, unsigned=False),
        batch_send_deadline=dur("batch_send_deadline", d.batch_send_deadline),
        min_backoff=dur("min_backoff", d.min_backoff),
        max_backoff=dur("max_backoff", d.max_backoff),
        retry_on_http_429=q.bool_("retry_on_http_429", d.retry_on_http_429),
        sample_age_limit=dur("sample_age_limit", d.sample_age_limit),
    )
    for key in ("max_shards", "min_shards"):
        if getattr(cfg, key) <= 0:
            q.fail(f"remote write queue {key} must be positive", key)
    if cfg.min_shards > cfg.max_shards and not q.failed & {"min_shards", "max_shards"}:
        q.fail("remote write queue min_shards must not be greater than max_shards", "min_shards")
    for key in ("max_samples_per_send", "capacity"):
        if getattr(cfg, key) <= 0:
            q.fail(f"remote write queue {key} must be positive", key)
    if cfg.max_backoff < cfg.min_backoff and not q.failed & {"min_backoff", "max_backoff"}:
        q.fail("remote write queue max_backoff must not be less than min_backoff", "max_backoff")
    return cfg


def _parse_metadata(s: Section) -> MetadataConfig:
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
