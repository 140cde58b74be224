"""The honest inventory of the config schema (issue 12): every field acts, or is refused.

`collector.config.schema` is walked with ``dataclasses.fields``, recursively. Fields whose type
is another config dataclass (``http_client``, ``queue_config``, ``static_configs`` ...) are
containers: only their own fields are checked. Every other field must be in at least one table:

- `COVERED`: the behaviour tests that set it and check what it does. Each named test must exist
  (its ``def`` is found in the file, and a ``[param]`` id in the file's text).
- `REFUSED`: YAML setting it to a value collector does not implement; loading it must fail with
  ``field <key> is not supported by collector`` at that key.
- `READ_UNTESTED`: implemented (the named module reads the attribute, checked here) but no
  behaviour test sets it yet: the gap list, which should only shrink.
- `INERT`: accepted and ignored by design; each one must be named in README's unsupported list.

A field added to the schema without an entry fails `test_every_schema_field_is_accounted_for`
with its name; an entry for a field that no longer exists fails too.
"""

from __future__ import annotations

import dataclasses
import pathlib
import re
import typing
from collections.abc import Iterator, Mapping

import pytest

from collector.config import schema
from collector.config.loader import load_config_text
from collector.errors import ConfigError

ROOT = pathlib.Path(__file__).resolve().parents[2]

_LOADED = "tests/config/test_config.py::test_valid_config"


def _valid(case: str) -> str:
    """A `test_valid_config` row: proves the key loads and where its value ends up."""
    return f"{_LOADED}[{case}]"


COVERED: Mapping[str, tuple[str, ...]] = {
    "Config.source": ("tests/config/test_config.py::test_source_and_path_kept",),
    "Config.path": ("tests/config/test_config.py::test_source_and_path_kept",),
    "Config.scrape_config_files": ("tests/config/test_config.py::test_scrape_config_files",),
    "GlobalConfig.scrape_interval": (_valid("job-interval-from-global"),),
    "GlobalConfig.scrape_timeout": (_valid("job-timeout-global"),),
    "GlobalConfig.external_labels": (
        _valid("external-labels-sorted"),
        "tests/remote/test_writer.py::test_external_labels_and_write_relabel",
    ),
    "GlobalConfig.scrape_protocols": (_valid("protocols-from-global"),),
    "GlobalConfig.scrape_native_histograms": (
        "tests/scrape/test_native_histograms.py::test_native_histograms_put_protobuf_first",
    ),
    "GlobalConfig.always_scrape_classic_histograms": (
        "tests/scrape/test_native_histograms.py::test_native_histograms_put_protobuf_first",
    ),
    "ScrapeConfig.scrape_native_histograms": (
        "tests/scrape/test_native_histograms.py::test_loop_commits_one_histogram_series_and_marks_it_stale",
    ),
    "ScrapeConfig.always_scrape_classic_histograms": (
        "tests/scrape/test_native_histograms.py::test_loop_keeps_classic_series_when_asked",
    ),
    "ScrapeConfig.native_histogram_bucket_limit": (
        "tests/scrape/test_native_histograms.py::test_bucket_limit_reduces_then_fails_the_scrape",
    ),
    "ScrapeConfig.native_histogram_min_bucket_factor": (
        "tests/scrape/test_native_histograms.py::test_min_bucket_factor_lowers_the_schema",
    ),
    "RemoteWriteConfig.send_exemplars": (
        "tests/remote/test_histogram_send.py::test_exemplars_sent_only_when_asked",
    ),
    "RemoteWriteConfig.send_native_histograms": (
        "tests/remote/test_histogram_send.py::test_histograms_sent_only_when_asked",
    ),
    "GlobalConfig.body_size_limit": (_valid("limits-from-global"),),
    "GlobalConfig.sample_limit": (_valid("limits-from-global"),),
    "GlobalConfig.target_limit": (_valid("limits-from-global"),),
    "GlobalConfig.label_limit": (_valid("limits-from-global"),),
    "GlobalConfig.label_name_length_limit": (_valid("limits-from-global"),),
    "GlobalConfig.label_value_length_limit": (_valid("limits-from-global"),),
    "GlobalConfig.keep_dropped_targets": (_valid("limits-from-global"),),
    "GlobalConfig.metric_name_validation_scheme": (_valid("validation-legacy-global"),),
    "GlobalConfig.metric_name_escaping_scheme": (_valid("validation-legacy-global"),),
    "GlobalConfig.extra_scrape_metrics": (_valid("extra-metrics-from-global"),),
    "ScrapeConfig.job_name": (
        "tests/scrape/test_target.py::test_defaults_and_instance_without_port",
    ),
    "ScrapeConfig.scrape_interval": (
        "tests/scrape/test_timing.py::test_first_scrape_at_offset_then_every_interval",
    ),
    "ScrapeConfig.scrape_timeout": ("tests/scrape/test_scraper_http.py::test_hang_times_out",),
    "ScrapeConfig.scrape_protocols": (
        "tests/scrape/test_headers.py::test_default_accept_header_exact",
        "tests/scrape/test_headers.py::test_configured_protocols_and_legacy_escaping",
        "tests/scrape/test_protobuf_scrape.py::test_accept_header_as_prometheus_builds_it",
        "tests/scrape/test_protobuf_scrape.py::test_protobuf_target_is_scraped",
    ),
    "ScrapeConfig.fallback_scrape_protocol": (
        "tests/scrape/test_headers.py::test_fallback_protocol_is_used",
        "tests/scrape/test_protobuf_scrape.py::test_fallback_protocol_protobuf",
    ),
    "ScrapeConfig.metrics_path": (
        "tests/scrape/test_target.py::test_defaults_and_instance_without_port",
    ),
    "ScrapeConfig.scheme": (
        "tests/scrape/test_target.py::test_defaults_and_instance_without_port",
    ),
    "ScrapeConfig.honor_labels": ("tests/scrape/test_loop.py::test_honor_labels_13",),
    "ScrapeConfig.honor_timestamps": (
        "tests/scrape/test_loop.py::test_honor_timestamps_false_uses_scrape_time",
    ),
    "ScrapeConfig.track_timestamps_staleness": (
        "tests/scrape/test_cache.py::test_explicit_timestamps_are_tracked_only_when_asked",
    ),
    "ScrapeConfig.params": (
        "tests/scrape/test_target.py::test_params_become_param_labels_and_sorted_query",
    ),
    "ScrapeConfig.enable_compression": ("tests/scrape/test_scraper_http.py::test_headers_sent",),
    "ScrapeConfig.body_size_limit": (
        "tests/scrape/test_scraper_http.py::test_body_size_limit_counts_uncompressed_bytes",
    ),
    "ScrapeConfig.sample_limit": (
        "tests/scrape/test_cache.py::test_sample_limit_counts_and_keeps_series_alive",
    ),
    "ScrapeConfig.target_limit": ("tests/scrape/test_pool.py::test_target_limit_forces_errors",),
    "ScrapeConfig.label_limit": ("tests/scrape/test_loop.py::test_label_limits_exact_messages",),
    "ScrapeConfig.label_name_length_limit": (
        "tests/scrape/test_loop.py::test_label_limits_exact_messages",
    ),
    "ScrapeConfig.label_value_length_limit": (
        "tests/scrape/test_loop.py::test_label_limits_exact_messages",
    ),
    "ScrapeConfig.keep_dropped_targets": (
        "tests/scrape/test_dropped_targets.py::test_keep_dropped_targets_caps_the_list_not_the_count",
    ),
    "ScrapeConfig.extra_scrape_metrics": ("tests/scrape/test_loop.py::test_extra_scrape_metrics",),
    "ScrapeConfig.metric_name_validation_scheme": (
        "tests/scrape/test_loop.py::test_invalid_names_legacy_scheme",
    ),
    "ScrapeConfig.metric_name_escaping_scheme": (
        "tests/scrape/test_headers.py::test_configured_protocols_and_legacy_escaping",
    ),
    "ScrapeConfig.relabel_configs": (
        "tests/scrape/test_target.py::test_relabel_drop_is_dropped_not_failed",
    ),
    "ScrapeConfig.metric_relabel_configs": (
        "tests/scrape/test_loop.py::test_metric_relabel_drop_uses_dropped_cache",
    ),
    "ScrapeConfig.scrape_via_apiserver_proxy": (
        "tests/scrape/test_proxy_route.py::test_unresolvable_target_is_a_scrape_error",
    ),
    "ScrapeConfig.sample_limit_mode": (
        "tests/scrape/test_limits.py::test_keep_first_writes_the_first_samples_and_counts_the_rest",
    ),
    "ScrapeConfig.series_limit": (
        "tests/scrape/test_limits.py::test_series_limit_refuses_new_series_and_keeps_the_known_ones",
    ),
    "ScrapeConfig.series_limit_window": (
        "tests/scrape/test_limits.py::test_series_limit_window_forgets_gone_series",
    ),
    "RemoteWriteConfig.url": ("tests/remote/test_writer.py::test_headers_and_body",),
    "RemoteWriteConfig.name": ("tests/config/test_config.py::test_remote_name_is_hash_prefix",),
    "RemoteWriteConfig.config_hash": (
        "tests/config/test_config.py::test_remote_name_changes_with_block",
    ),
    "RemoteWriteConfig.headers": ("tests/remote/test_writer.py::test_headers_and_body",),
    "RemoteWriteConfig.write_relabel_configs": (
        "tests/remote/test_writer.py::test_external_labels_and_write_relabel",
    ),
    "RemoteWriteConfig.protobuf_message": (
        "tests/remote/test_writer.py::test_headers_and_body",
        "tests/remote/test_rw2_send.py::test_headers_and_body",
        "tests/config/test_refused.py::test_check_config_accepts_remote_write_2",
    ),
    "QueueConfig.capacity": (
        "tests/remote/test_writer.py::test_spill_to_disk_and_replay_in_order",
    ),
    "QueueConfig.max_shards": (
        "tests/remote/test_reshard.py::test_slow_receiver_scales_up_within_bounds",
    ),
    "QueueConfig.min_shards": (
        "tests/remote/test_reshard.py::test_fast_receiver_scales_down_to_min",
    ),
    "QueueConfig.max_samples_per_send": (
        "tests/remote/test_writer_memory.py::test_entries_share_their_shard_append_and_encode_zero",
    ),
    "QueueConfig.batch_send_deadline": (
        "tests/remote/test_writer.py::test_partial_batch_waits_for_deadline_or_group_commit",
    ),
    "QueueConfig.min_backoff": ("tests/remote/test_queue_math.py::test_backoff_doubles_and_caps",),
    "QueueConfig.max_backoff": ("tests/remote/test_queue_math.py::test_backoff_doubles_and_caps",),
    "QueueConfig.retry_on_http_429": (
        "tests/remote/test_writer.py::test_429_depends_on_retry_on_http_429",
    ),
    "MetadataConfig.send": (
        "tests/remote/test_metadata.py::test_send_false_or_no_source_sends_nothing",
    ),
    "MetadataConfig.send_interval": (
        "tests/remote/test_metadata.py::test_interval_types_and_only_field_3",
    ),
    "MetadataConfig.max_samples_per_send": (
        "tests/remote/test_metadata.py::test_chunks_and_dedupe",
    ),
    "HTTPClientConfig.proxy_url": (
        "tests/test_secrets.py::test_proxy_url_password_is_redacted_on_the_config_page",
    ),
    "TLSConfig.cert": ("tests/test_secrets.py::test_an_unloadable_scrape_key_is_a_target_error",),
    "TLSConfig.key": ("tests/test_secrets.py::test_an_unloadable_scrape_key_is_a_target_error",),
    "TLSConfig.insecure_skip_verify": (
        "tests/remote/test_queue_math.py::test_ssl_context_from_tls_config",
    ),
    "TLSConfig.min_version": ("tests/remote/test_queue_math.py::test_ssl_context_from_tls_config",),
    "BasicAuth.username": (
        "tests/remote/test_writer.py::test_auth_headers_and_rotated_credentials",
    ),
    "BasicAuth.password": (
        "tests/remote/test_writer.py::test_auth_headers_and_rotated_credentials",
    ),
    "Authorization.type": (
        "tests/remote/test_writer.py::test_auth_headers_and_rotated_credentials",
    ),
    "Authorization.credentials": (
        "tests/remote/test_writer.py::test_auth_headers_and_rotated_credentials",
    ),
    "Authorization.credentials_file": (
        "tests/discovery/test_http.py::test_bearer_token_from_file",
    ),
    "StaticConfig.targets": (
        "tests/discovery/test_static.py::test_duplicate_static_targets_count_twice",
    ),
    "StaticConfig.labels": (
        "tests/scrape/test_target.py::test_target_label_wins_over_group_label",
    ),
    "FileSDConfig.files": (
        "tests/discovery/test_file.py::test_new_file_matching_glob_is_picked_up",
    ),
    "FileSDConfig.refresh_interval": (
        "tests/discovery/test_file.py::test_full_refresh_rereads_unchanged_files",
    ),
    "HTTPSDConfig.url": (
        "tests/discovery/test_http.py::test_valid_response_sends_groups_with_meta_url",
    ),
    "HTTPSDConfig.refresh_interval": (
        "tests/discovery/test_http.py::test_unreachable_endpoint_first_refresh_still_syncs",
    ),
    "KubeletSDConfig.url": ("tests/discovery/test_kubelet.py::test_url_keeps_its_path",),
    "KubeletSDConfig.refresh_interval": (
        "tests/discovery/test_kubelet.py::test_pods_gone_since_last_poll_are_emptied",
    ),
    "KubernetesSelector.role": (
        "tests/discovery/kubernetes/test_discoverer.py::test_node_local_field_selector",
    ),
    "KubernetesSelector.field": (
        "tests/discovery/kubernetes/test_discoverer.py::test_node_local_field_selector",
    ),
    "AttachMetadata.node": (
        "tests/discovery/kubernetes/test_discoverer.py::test_pod_attach_metadata_node_and_namespace",
    ),
    "AttachMetadata.namespace": (
        "tests/discovery/kubernetes/test_discoverer.py::test_pod_attach_metadata_node_and_namespace",
    ),
    "KubernetesSDConfig.role": ("tests/discovery/kubernetes/test_discoverer.py::test_node_role",),
    "KubernetesSDConfig.api_server": (
        "tests/discovery/kubernetes/test_informer.py::test_401_reloads_credentials",
    ),
    "KubernetesSDConfig.kubeconfig_file": (
        "tests/scrape/test_proxy_route.py::test_connection_is_the_one_discovery_uses",
    ),
    "KubernetesSDConfig.namespaces": (
        "tests/discovery/kubernetes/test_discoverer.py::test_namespaces_list",
    ),
    "KubernetesSDConfig.own_namespace": (
        "tests/discovery/kubernetes/test_discoverer.py::test_own_namespace_read",
    ),
}


def _job(entries: str) -> str:
    return f"scrape_configs: [{{job_name: a, {entries}}}]"


def _rw(entries: str) -> str:
    return f"remote_write: [{{url: 'http://rw.invalid/w', {entries}}}]"


def _http_sd(entries: str) -> str:
    return _job(f"http_sd_configs: [{{url: 'http://sd.invalid/', {entries}}}]")


def _k8s(entries: str) -> str:
    return _job(
        f"kubernetes_sd_configs: [{{role: pod, api_server: 'https://k.invalid', {entries}}}]"
    )


_PROXY = "proxy_url: 'http://p.invalid:3128', "

REFUSED: Mapping[str, tuple[tuple[str, str], ...]] = {
    # field -> (YAML, path of the refused key); each YAML must fail naming the key there.
    "GlobalConfig.metric_name_escaping_scheme": (
        ("global: {metric_name_escaping_scheme: dots}", "global.metric_name_escaping_scheme"),
    ),
    "GlobalConfig.convert_classic_histograms_to_nhcb": (
        (
            "global: {convert_classic_histograms_to_nhcb: true}",
            "global.convert_classic_histograms_to_nhcb",
        ),
    ),
    "ScrapeConfig.metric_name_escaping_scheme": (
        (
            _job("metric_name_escaping_scheme: values"),
            "scrape_configs[0].metric_name_escaping_scheme",
        ),
    ),
    "ScrapeConfig.convert_classic_histograms_to_nhcb": (
        (
            _job("convert_classic_histograms_to_nhcb: true"),
            "scrape_configs[0].convert_classic_histograms_to_nhcb",
        ),
    ),
    "RemoteWriteConfig.round_robin_dns": (
        (_rw("round_robin_dns: true"), "remote_write[0].round_robin_dns"),
    ),
    "HTTPClientConfig.enable_http2": ((_rw("enable_http2: true"), "remote_write[0].enable_http2"),),
    "HTTPClientConfig.proxy_from_environment": (
        (_rw("proxy_from_environment: true"), "remote_write[0].proxy_from_environment"),
    ),
    "HTTPClientConfig.no_proxy": (
        (_rw(_PROXY + "no_proxy: localhost"), "remote_write[0].no_proxy"),
        (_http_sd(_PROXY + "no_proxy: localhost"), "scrape_configs[0].http_sd_configs[0].no_proxy"),
        (
            _k8s(_PROXY + "no_proxy: localhost"),
            "scrape_configs[0].kubernetes_sd_configs[0].no_proxy",
        ),
    ),
    "HTTPClientConfig.proxy_connect_header": (
        (_rw(_PROXY + "proxy_connect_header: {X-A: [b]}"), "remote_write[0].proxy_connect_header"),
        (
            _http_sd(_PROXY + "proxy_connect_header: {X-A: [b]}"),
            "scrape_configs[0].http_sd_configs[0].proxy_connect_header",
        ),
    ),
    "HTTPClientConfig.follow_redirects": (
        (
            _k8s("follow_redirects: false"),
            "scrape_configs[0].kubernetes_sd_configs[0].follow_redirects",
        ),
    ),
    "TLSConfig.min_version": (
        (
            _k8s("tls_config: {min_version: TLS13}"),
            "scrape_configs[0].kubernetes_sd_configs[0].tls_config.min_version",
        ),
    ),
    "TLSConfig.max_version": (
        (
            _k8s("tls_config: {max_version: TLS12}"),
            "scrape_configs[0].kubernetes_sd_configs[0].tls_config.max_version",
        ),
    ),
    **{
        f"AttachMetadata.{key}": (
            (
                _k8s(f"attach_metadata: {{{key}: true}}"),
                f"scrape_configs[0].kubernetes_sd_configs[0].attach_metadata.{key}",
            ),
        )
        for key in ("deployment", "job", "cronjob")
    },
}

READ_UNTESTED: Mapping[str, str] = {
    # Implemented (the module reads the attribute) but no behaviour test sets it yet.
    "RemoteWriteConfig.remote_timeout": "collector/remote/client.py",
    "QueueConfig.sample_age_limit": "collector/remote/writer.py",
    "HTTPClientConfig.no_proxy": "collector/scrape/scraper.py",
    "HTTPClientConfig.proxy_from_environment": "collector/scrape/scraper.py",
    "HTTPClientConfig.proxy_connect_header": "collector/scrape/scraper.py",
    "HTTPClientConfig.follow_redirects": "collector/scrape/scraper.py",
    "HTTPClientConfig.http_headers": "collector/scrape/scraper.py",
    "TLSConfig.ca": "collector/httpclient.py",
    "TLSConfig.ca_file": "collector/httpclient.py",
    "TLSConfig.cert_file": "collector/httpclient.py",
    "TLSConfig.key_file": "collector/httpclient.py",
    "TLSConfig.server_name": "collector/scrape/scraper.py",
    "TLSConfig.max_version": "collector/httpclient.py",
    "BasicAuth.username_file": "collector/discovery/http.py",
    "BasicAuth.password_file": "collector/discovery/http.py",
    "KubernetesSelector.label": "collector/discovery/kubernetes/discoverer.py",
}

INERT: Mapping[str, str] = {
    # Accepted and ignored by design; README's unsupported bullet must name each.
    "GlobalConfig.evaluation_interval": "rules are not evaluated in agent mode (as Prometheus)",
    "HTTPClientConfig.enable_http2": "aiohttp speaks HTTP/1.1 only (default true for scrapes)",
}


def _is_config(tp: object) -> bool:
    return dataclasses.is_dataclass(tp) and getattr(tp, "__module__", "") == schema.__name__


def _containers(tp: object) -> list[type]:
    """The config dataclasses a field type holds: ``X``, ``X | None``, ``tuple[X, ...]``."""
    return [arg for arg in (tp, *typing.get_args(tp)) if isinstance(arg, type) and _is_config(arg)]


def _walk(cls: type, seen: set[type]) -> Iterator[str]:
    """``Class.field`` for every leaf field reachable from ``cls`` (each class once)."""
    if cls in seen:
        return
    seen.add(cls)
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        inner = _containers(hints[f.name])
        if inner:
            for sub in inner:
                yield from _walk(sub, seen)
        else:
            yield f"{cls.__name__}.{f.name}"


LEAVES = tuple(_walk(schema.Config, set()))


def _test_exists(node_id: str) -> bool:
    """Whether ``path::name[param]`` names a test: its ``def`` is in the file (and the param
    id, if any, in its text)."""
    path, _, name = node_id.partition("::")
    name, _, param = name.partition("[")
    file = ROOT / path
    if not file.is_file():
        return False
    text = file.read_text(encoding="utf-8")
    if re.search(rf"^\s*(async\s+)?def {re.escape(name)}\(", text, re.MULTILINE) is None:
        return False
    return not param or f'"{param.rstrip("]")}"' in text


def test_the_walk_reaches_every_config_class() -> None:
    """The recursive walk finds the leaves of nested sections, so nothing hides in a block."""
    classes = {leaf.split(".")[0] for leaf in LEAVES}
    assert {"TLSConfig", "QueueConfig", "AttachMetadata", "KubernetesSelector"} <= classes
    assert "ScrapeConfig.http_client" not in LEAVES  # a container, walked into
    assert "ScrapeConfig.relabel_configs" in LEAVES  # RelabelConfig is the model's, a leaf


def test_every_schema_field_is_accounted_for() -> None:
    """Each field is exercised by a behaviour test, refused, read-but-untested or inert."""
    tables = (COVERED, REFUSED, READ_UNTESTED, INERT)
    missing = [leaf for leaf in LEAVES if not any(leaf in t for t in tables)]
    assert not missing, (
        "config fields with no behaviour test and no refusal (add a test to COVERED, refuse "
        "non-default values in collector/config and add them to REFUSED): " + ", ".join(missing)
    )
    stale = sorted({key for t in tables for key in t} - set(LEAVES))
    assert not stale, f"entries for fields the schema no longer has: {stale}"


@pytest.mark.parametrize("field", sorted(COVERED))
def test_named_behaviour_tests_exist(field: str) -> None:
    """A COVERED field's tests exist, so a renamed or deleted test cannot keep it covered."""
    gone = [node for node in COVERED[field] if not _test_exists(node)]
    assert not gone, f"{field}: no such test {gone}"


@pytest.mark.parametrize("field", sorted(READ_UNTESTED))
def test_untested_fields_are_at_least_read(field: str) -> None:
    """A READ_UNTESTED field is read by its module: dead fields must be refused instead."""
    name = field.split(".")[1]
    text = (ROOT / READ_UNTESTED[field]).read_text(encoding="utf-8")
    assert re.search(rf"\.{name}\b", text), f"{READ_UNTESTED[field]} never reads .{name}"


@pytest.mark.parametrize("field", sorted(INERT))
def test_inert_fields_are_documented(field: str) -> None:
    """An INERT field's key is named in README's list of what the agent does not have."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    start = readme.index("- Features this agent does not have")
    bullet = readme[start : readme.index("\n- ", start + 1)]
    assert f"`{field.split('.')[1]}`" in bullet


@pytest.mark.parametrize(
    ("field", "text", "path"),
    [(field, text, path) for field, cases in sorted(REFUSED.items()) for text, path in cases],
)
def test_refused_values_fail_naming_the_key(field: str, text: str, path: str) -> None:
    """Setting a REFUSED field to a value collector does not implement fails at that key with
    ``field <key> is not supported by collector``."""
    with pytest.raises(ConfigError) as info:
        load_config_text(text, base_dir="/cfg", env={}, file="c.yml")
    key = re.sub(r"\[\d+\]$", "", path).rsplit(".", 1)[1]
    found = [(p.path, p.message) for p in info.value.problems]
    assert any(
        p == path and m.startswith(f"field {key} is not supported by collector: ") for p, m in found
    ), found
