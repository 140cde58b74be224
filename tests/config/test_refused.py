"""What collector does not implement is refused at load, never silently accepted (issue 12).

The field-by-field inventory is `tests/config/test_field_coverage.py`; here are the cases the
issue reported, end to end: ``collector check config`` fails on them, the values that are
Prometheus's defaults still load, and the loaded default never asks targets for protobuf.
"""

from __future__ import annotations

import pathlib

import pytest

from collector import cli
from collector.config import load_config_text
from collector.errors import ConfigError
from collector.scrape.scraper import accept_header, scrape_protocols

RW_V2 = (
    "remote_write:\n"
    "  - url: http://rw.invalid/api/v1/write\n"
    "    protobuf_message: io.prometheus.write.v2.Request\n"
)


def test_check_config_accepts_remote_write_2(
    tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Remote write 2.0 is sent (`collector.remote.codec2`): ``check config`` passes and the
    loaded destination carries the message; an unknown message is still an error."""
    path = tmp_path / "rw2.yml"
    path.write_text(RW_V2)
    assert cli.main(["check", "config", str(path)]) == 0
    out, _ = capsys.readouterr()
    assert "SUCCESS" in out
    config = load_config_text(RW_V2, base_dir="/cfg", env={})
    assert config.remote_write[0].protobuf_message == "io.prometheus.write.v2.Request"
    with pytest.raises(ConfigError) as info:
        load_config_text(
            RW_V2.replace("write.v2.Request", "write.v3.Request"), base_dir="/", env={}
        )
    assert [p.path for p in info.value.problems] == ["remote_write[0].protobuf_message"]


def test_every_refusal_of_a_file_is_reported() -> None:
    """The issue's config, protobuf first and remote write 2.0, gives one problem per refused
    key (protobuf scraping, native histograms, exemplars and remote write 2.0 load)."""
    text = (
        "global: {scrape_native_histograms: true, convert_classic_histograms_to_nhcb: true}\n"
        "scrape_configs:\n"
        "  - job_name: a\n"
        "    scrape_protocols: [PrometheusProto, PrometheusText0.0.4]\n"
        "    static_configs: [{targets: ['127.0.0.1:9100']}]\n"
        "remote_write:\n"
        "  - url: http://rw.invalid/w\n"
        "    protobuf_message: io.prometheus.write.v2.Request\n"
        "    send_exemplars: true\n"
        "    round_robin_dns: true\n"
    )
    with pytest.raises(ConfigError) as info:
        load_config_text(text, base_dir="/cfg", env={}, file="c.yml")
    assert [(p.line, p.path) for p in info.value.problems] == [
        (1, "global.convert_classic_histograms_to_nhcb"),
        (10, "remote_write[0].round_robin_dns"),
    ]
    assert all("is not supported by collector: " in p.message for p in info.value.problems)


def test_prometheus_defaults_spelled_out_still_load() -> None:
    """Default (no-op) values of the refused keys load, so Prometheus files keep working."""
    config = load_config_text(
        "global:\n"
        "  scrape_native_histograms: false\n"
        "  always_scrape_classic_histograms: false\n"
        "  convert_classic_histograms_to_nhcb: false\n"
        "  metric_name_escaping_scheme: allow-utf-8\n"
        "  evaluation_interval: 15s\n"
        "scrape_configs:\n"
        "  - job_name: a\n"
        "    native_histogram_bucket_limit: 0\n"
        "    native_histogram_min_bucket_factor: 0\n"
        "    metric_name_validation_scheme: legacy\n"
        "    metric_name_escaping_scheme: underscores\n"
        "remote_write:\n"
        "  - url: http://rw.invalid/w\n"
        "    protobuf_message: prometheus.WriteRequest\n"
        "    send_exemplars: false\n"
        "    send_native_histograms: false\n"
        "    round_robin_dns: false\n"
        "    enable_http2: false\n",
        base_dir="/cfg",
        env={},
    )
    assert config.remote_write[0].protobuf_message == "prometheus.WriteRequest"
    assert config.scrape_configs[0].metric_name_escaping_scheme == "underscores"


def test_a_loaded_job_asks_for_protobuf_only_when_configured() -> None:
    """By default the Accept header has no protobuf media type (native histograms, which
    put it first, are off); a job that lists PrometheusProto asks for it."""
    config = load_config_text(
        "scrape_configs:\n  - job_name: a\n  - job_name: b\n    scrape_native_histograms: false\n"
        "  - job_name: c\n    scrape_protocols: [PrometheusProto]\n"
        "    fallback_scrape_protocol: PrometheusProto\n",
        base_dir="/cfg",
        env={},
    )
    a, b, c = config.scrape_configs
    for job in (a, b):
        assert "protobuf" not in accept_header(scrape_protocols(job))
        assert "PrometheusProto" not in job.scrape_protocols
    assert c.scrape_protocols == ("PrometheusProto",)
    assert c.fallback_scrape_protocol == "PrometheusProto"
