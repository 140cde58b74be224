"""Step 3 of a load, scrape area: ``global`` and each ``scrape_configs`` entry.

`parse_global` reads the ``global`` section; `parse_scrape_config` reads one job and fills in
everything that falls back to ``global`` (intervals, limits, protocols, validation and escaping
schemes), delegating its HTTP client to `collector.config.http_client`, its ``*_sd_configs`` to
`collector.config.discovery` and its relabel rules to `collector.model.relabel`. Every problem of
a job is reported (see `collector.config.section`); checks that combine two keys are skipped
when one of them was already reported, so one mistake gives one line.

Prometheus counterpart: ``GlobalConfig.UnmarshalYAML`` and ``ScrapeConfig.Validate`` in
``config/config.go``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal, cast

from collector.config.discovery import (
    SD_UNSUPPORTED,
    parse_file_sd,
    parse_http_sd,
    parse_kubelet_sd,
    parse_kubernetes_sd,
    parse_sd_list,
    parse_static_config,
)
from collector.config.http_client import HTTP_KEYS, HTTP_UNSUPPORTED, parse_http_client
from collector.config.schema import (
    DEFAULT_PROTO_FIRST_SCRAPE_PROTOCOLS,
    DEFAULT_SCRAPE_PROTOCOLS,
    SCRAPE_PROTOCOL_MEDIA_TYPES,
    GlobalConfig,
    HTTPClientConfig,
    ScrapeConfig,
    ScrapeProtocol,
)
from collector.config.section import Section, Source, names, valid_utf8
from collector.config.yaml_tree import Tree, idx, join
from collector.model.duration import format_duration
from collector.model.labels import is_legacy_label_name, is_valid_label_name

__all__ = ["parse_global", "parse_scrape_config"]

_GLOBAL_KEYS = names(
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
    names(
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
        file_sd_configs http_sd_configs kubernetes_sd_configs kubelet_sd_configs relabel_configs
        metric_relabel_configs scrape_via_apiserver_proxy
        sample_limit_mode series_limit series_limit_window
        """
    )
    | HTTP_KEYS
)
_SCRAPE_UNSUPPORTED = SD_UNSUPPORTED | HTTP_UNSUPPORTED | {"scrape_failure_log_file"}
_ESCAPING_SCHEMES = ("allow-utf-8", "underscores", "dots", "values")

# Keys Prometheus knows whose non-default values collector does not implement (issue 12): a
# value that loads must act, so these are refused, naming the key, rather than ignored. Each
# maps to the reason the error gives. Native histograms are scraped
# (``scrape_native_histograms``, ``always_scrape_classic_histograms`` and the two
# ``native_histogram_*`` limits act); custom-bucket conversion does not exist yet.
_NOT_IMPLEMENTED = {
    "convert_classic_histograms_to_nhcb": "classic histograms are not converted to native "
    "histograms with custom buckets",
}
_DEFAULT_GLOBAL = GlobalConfig()


def parse_global(top: Section) -> GlobalConfig:
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
        path = join(g.at("external_labels"), name)
        if not valid:
            g.src.report(f'"{name}" is not a valid label name', path)
        elif not valid_utf8(value):
            g.src.report(f'"{value}" is not a valid label value', path)
        elif value:
            external_labels.append((name, value))

    interval = g.duration("scrape_interval") or _DEFAULT_GLOBAL.scrape_interval
    timeout = g.duration("scrape_timeout") or 0.0
    if timeout > interval and not g.failed & {"scrape_interval", "scrape_timeout"}:
        g.fail("global scrape timeout greater than scrape interval", "scrape_timeout")
    if timeout == 0 or timeout > interval:
        timeout = min(_DEFAULT_GLOBAL.scrape_timeout, interval)
    g.duration("rule_query_offset")  # accepted for compatibility, unused by an agent
    g.str_("query_log_file")  # same

    protocols: tuple[ScrapeProtocol, ...] = ()
    if "scrape_protocols" in g.raw:
        protocols = _scrape_protocols(g, "scrape_protocols", "for global config")

    derived = "underscores" if scheme == "legacy" else "allow-utf-8"
    escaping = g.str_("metric_name_escaping_scheme")
    if escaping == "":
        escaping = derived
    elif escaping not in _ESCAPING_SCHEMES:
        g.fail(
            "unknown global name escaping method specified, must be one of "
            f'{_one_of(_ESCAPING_SCHEMES)}, got "{escaping}"',
            "metric_name_escaping_scheme",
        )
    elif escaping != derived:
        _refuse_escaping(g, escaping, derived, scheme or "utf8")
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
        convert_classic_histograms_to_nhcb=(
            _refused_true(g, "convert_classic_histograms_to_nhcb") or False
        ),
        always_scrape_classic_histograms=g.bool_("always_scrape_classic_histograms", False),
    )


def parse_scrape_config(
    src: Source, raw: Tree, path: str, glob_cfg: GlobalConfig
) -> ScrapeConfig | None:
    """One ``scrape_configs`` entry with global fallbacks applied (spec §8.3).

    None when the entry is null or not a mapping (reported). Otherwise a config even when
    problems were reported, so that later checks (duplicate job names) still see the job.
    """
    if raw is None:
        src.report("empty or null scrape config section", path)
        return None
    s = Section(
        raw,
        path,
        src=src,
        kind="scrape_config",
        known=_SCRAPE_KEYS,
        unsupported=_SCRAPE_UNSUPPORTED,
    )
    if not s.valid:
        return None
    job = s.str_("job_name")
    if not job and "job_name" not in s.failed:
        s.report("job_name is empty", "job_name" if "job_name" in s.raw else None)
    http_client = parse_http_client(s, HTTPClientConfig())

    relabel_configs = s.relabel_list(
        "relabel_configs", "target", "empty or null target relabeling rule in scrape config"
    )
    metric_relabel_configs = s.relabel_list(
        "metric_relabel_configs", "metric", "empty or null metric relabeling rule in scrape config"
    )
    static_configs = parse_sd_list(s, "static_configs", parse_static_config)
    if not relabel_configs and "relabel_configs" not in s.failed:
        for i, sc in enumerate(static_configs):
            for j, target in enumerate(sc.targets):
                if "/" in target:
                    where = idx(join(idx(s.at("static_configs"), i), "targets"), j)
                    src.report(f'"{target}" is not a valid hostname', where)
    file_sd = parse_sd_list(s, "file_sd_configs", parse_file_sd)
    http_sd = parse_sd_list(s, "http_sd_configs", parse_http_sd)
    k8s_sd = parse_sd_list(s, "kubernetes_sd_configs", parse_kubernetes_sd)
    kubelet_sd = parse_sd_list(s, "kubelet_sd_configs", parse_kubelet_sd)

    interval = s.duration("scrape_interval") or glob_cfg.scrape_interval
    timeout = s.duration("scrape_timeout") or 0.0
    if timeout > interval and not s.failed & {"scrape_interval", "scrape_timeout"}:
        s.fail(
            f'scrape timeout greater than scrape interval for scrape config with job name "{job}"',
            "scrape_timeout",
        )
    if timeout == 0 or timeout > interval:
        timeout = min(glob_cfg.scrape_timeout, interval)

    native = s.opt_bool("scrape_native_histograms")
    native_histograms = glob_cfg.scrape_native_histograms if native is None else native
    job_for = f'for scrape config with job name "{job}"'
    # Prometheus puts PrometheusProto first when native histograms are on and no list is
    # configured (reference §3.4).
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
    if fallback_text in SCRAPE_PROTOCOL_MEDIA_TYPES:
        fallback = cast("ScrapeProtocol", fallback_text)
    elif fallback_text:
        s.fail(
            f'invalid fallback_scrape_protocol for scrape config with job name "{job}": '
            f"{_unknown_protocol(fallback_text)}",
            "fallback_scrape_protocol",
        )

    scheme, escaping = _schemes(s, glob_cfg)
    sample_limit_mode, series_limit, series_window = _limit_extensions(s, interval)
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
        params=tuple(s.str_lists_map("params")),
        enable_compression=s.bool_("enable_compression", True),
        body_size_limit=s.size("body_size_limit") or glob_cfg.body_size_limit,
        sample_limit=s.int_("sample_limit") or glob_cfg.sample_limit,
        target_limit=s.int_("target_limit") or glob_cfg.target_limit,
        label_limit=s.int_("label_limit") or glob_cfg.label_limit,
        label_name_length_limit=(
            s.int_("label_name_length_limit") or glob_cfg.label_name_length_limit
        ),
        label_value_length_limit=(
            s.int_("label_value_length_limit") or glob_cfg.label_value_length_limit
        ),
        keep_dropped_targets=s.int_("keep_dropped_targets") or glob_cfg.keep_dropped_targets,
        extra_scrape_metrics=_fallback_bool(s, "extra_scrape_metrics", glob_cfg),
        metric_name_validation_scheme=scheme,
        scrape_native_histograms=native_histograms,
        http_client=http_client,
        static_configs=static_configs,
        file_sd_configs=file_sd,
        http_sd_configs=http_sd,
        kubernetes_sd_configs=k8s_sd,
        kubelet_sd_configs=kubelet_sd,
        relabel_configs=relabel_configs,
        metric_relabel_configs=metric_relabel_configs,
        scrape_via_apiserver_proxy=s.bool_("scrape_via_apiserver_proxy", False),
        metric_name_escaping_scheme=escaping,
        convert_classic_histograms_to_nhcb=_fallback_bool(
            s, "convert_classic_histograms_to_nhcb", glob_cfg
        ),
        always_scrape_classic_histograms=_fallback_bool(
            s, "always_scrape_classic_histograms", glob_cfg
        ),
        native_histogram_bucket_limit=s.int_("native_histogram_bucket_limit"),
        native_histogram_min_bucket_factor=s.float_("native_histogram_min_bucket_factor"),
        sample_limit_mode=sample_limit_mode,
        series_limit=series_limit,
        series_limit_window=series_window,
    )


_SAMPLE_LIMIT_MODES = ("fail", "keep_first")
_DEFAULT_SERIES_WINDOW = 3600.0


def _limit_extensions(
    s: Section, interval: float
) -> tuple[Literal["fail", "keep_first"], int, float]:
    """The collector's limit keys: ``sample_limit_mode``, ``series_limit`` and its window.

    A window shorter than the scrape interval would forget every series between two scrapes,
    so the limit would never bind: that is refused rather than silently meaningless.
    """
    mode = s.str_("sample_limit_mode") or "fail"
    if mode not in _SAMPLE_LIMIT_MODES:
        s.fail(
            f"sample_limit_mode must be 'fail' or 'keep_first', got \"{mode}\"",
            "sample_limit_mode",
        )
        mode = "fail"
    limit = s.int_("series_limit")
    window = s.duration("series_limit_window")
    if window is None:
        window = _DEFAULT_SERIES_WINDOW
    elif window <= 0:
        s.fail("series_limit_window must be greater than 0", "series_limit_window")
        window = _DEFAULT_SERIES_WINDOW
    elif window < interval and "scrape_interval" not in s.failed:
        s.fail(
            f"series_limit_window ({format_duration(window)}) must not be shorter than the "
            f"scrape interval ({format_duration(interval)})",
            "series_limit_window",
        )
        window = _DEFAULT_SERIES_WINDOW
    return cast("Literal['fail', 'keep_first']", mode), limit, window


def _fallback_bool(s: Section, key: str, glob_cfg: GlobalConfig) -> bool:
    """A job's boolean, or the global one of the same name when the job does not set it."""
    value = _refused_true(s, key) if key in _NOT_IMPLEMENTED else s.opt_bool(key)
    return cast("bool", getattr(glob_cfg, key)) if value is None else value


def _refused_true(s: Section, key: str) -> bool | None:
    """A `_NOT_IMPLEMENTED` boolean: None when absent, False when false; true is refused
    (and reads as False, so jobs do not inherit a refused global value)."""
    value = s.opt_bool(key)
    if value:
        s.unsupported(key, f"{_NOT_IMPLEMENTED[key]}; only false is accepted")
        return False
    return value


def _refuse_escaping(s: Section, escaping: str, derived: str, scheme: str) -> None:
    """A ``metric_name_escaping_scheme`` the scraper would not send: it always asks for the
    escaping that follows from the validation scheme (``collector.scrape.scraper``)."""
    s.unsupported(
        "metric_name_escaping_scheme",
        f"the Accept header always asks for escaping={derived} under {scheme} validation, "
        f'so "{escaping}" is not honoured; leave it unset or set it to "{derived}"',
    )


def _schemes(s: Section, glob_cfg: GlobalConfig) -> tuple[Literal["utf8", "legacy"], str]:
    """A job's metric name validation and escaping schemes, global ones as fallback."""
    local_scheme = _validation_scheme(s, "scrape config")
    scheme = local_scheme or glob_cfg.metric_name_validation_scheme
    derived = "underscores" if scheme == "legacy" else "allow-utf-8"
    escaping = s.str_("metric_name_escaping_scheme")
    if escaping == "":
        if not local_scheme:
            escaping = glob_cfg.metric_name_escaping_scheme
        else:
            escaping = "underscores" if scheme == "legacy" else "allow-utf-8"
    if escaping not in _ESCAPING_SCHEMES:
        s.fail(
            "unknown scrape config name escaping method specified, must be one of "
            f'{_one_of(_ESCAPING_SCHEMES)}, got "{escaping}"',
            "metric_name_escaping_scheme",
        )
    elif (
        escaping == "allow-utf-8"
        and scheme != "utf8"
        and not s.failed & {"metric_name_validation_scheme", "metric_name_escaping_scheme"}
    ):
        s.report(
            "utf8 metric names requested but validation scheme is not set to UTF8",
            "metric_name_escaping_scheme" if "metric_name_escaping_scheme" in s.raw else None,
        )
    elif escaping != derived and "metric_name_escaping_scheme" in s.raw:
        # An inherited global value was already refused there; refuse the job's own only.
        _refuse_escaping(s, escaping, derived, scheme)
    return scheme, escaping


def _validation_scheme(s: Section, what: str) -> Literal["utf8", "legacy", ""]:
    """``metric_name_validation_scheme``: ``""`` when unset (or wrong, reported)."""
    value = s.str_("metric_name_validation_scheme")
    if value in ("", "utf8", "legacy"):
        return cast("Literal['utf8', 'legacy', '']", value)
    s.fail(
        f"unknown {what} name validation method specified, must be either '', 'legacy' or "
        f"'utf8', got {value}",
        "metric_name_validation_scheme",
    )
    return ""


def _one_of(options: Sequence[str]) -> str:
    """``'a', 'b', 'c', or 'd'`` as Prometheus lists choices."""
    quoted = [f"'{o}'" for o in options]
    return ", ".join(quoted[:-1]) + ", or " + quoted[-1]


def _unknown_protocol(name: str) -> str:
    """Prometheus's unknown-protocol message; Go prints the sorted list as ``[a b]``."""
    supported = " ".join(sorted(SCRAPE_PROTOCOL_MEDIA_TYPES))
    return f"unknown scrape protocol {name}, supported: [{supported}]"


def _scrape_protocols(s: Section, key: str, suffix: str) -> tuple[ScrapeProtocol, ...]:
    """A present ``scrape_protocols`` list, validated like ``validateAcceptScrapeProtocols``."""
    protocols = s.str_list(key)
    if not protocols and key not in s.failed:
        s.fail(f"scrape_protocols cannot be empty {suffix}", key)
    seen: set[str] = set()
    valid: list[ScrapeProtocol] = []
    duplicate_reported = False
    for i, protocol in enumerate(protocols):
        if protocol.lower() in seen:
            # Once: the message holds the whole list, so one per repeat would grow with the
            # square of its length (fuzzing: 900 repeats of 6 KB each). Prometheus stops here.
            if not duplicate_reported:
                s.src.report(
                    f"duplicated protocol in scrape_protocols, got [{' '.join(protocols)}]"
                    f" {suffix}",
                    idx(s.at(key), i),
                )
                duplicate_reported = True
        elif protocol not in SCRAPE_PROTOCOL_MEDIA_TYPES:
            s.src.report(
                f"scrape_protocols: {_unknown_protocol(protocol)} {suffix}", idx(s.at(key), i)
            )
        else:
            valid.append(cast("ScrapeProtocol", protocol))
        seen.add(protocol.lower())
    return tuple(valid)
