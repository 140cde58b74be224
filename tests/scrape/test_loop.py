"""Scrape loop semantics against canned bodies and a MemoryAppender (spec §4.4-§4.10, §11)."""

from __future__ import annotations

import math

from collector.config import ScrapeConfig
from collector.errors import ScrapeError
from collector.model.relabel import RelabelConfig
from collector.model.value import NORMAL_NAN_BITS, STALE_NAN_BITS, float_bits
from collector.scrape.scraper import ScrapeResponse
from tests.scrape.scrapekit import harness, http_error, names

REPORT = [
    "scrape_duration_seconds",
    "scrape_samples_post_metric_relabeling",
    "scrape_samples_scraped",
    "scrape_series_added",
    "up",
]


def cfg(**kw: object) -> ScrapeConfig:
    """A 15 s job config with overrides."""
    return ScrapeConfig(job_name="j", scrape_interval=15.0, scrape_timeout=10.0, **kw)  # type: ignore[arg-type]


async def test_success_commits_samples_and_report() -> None:
    """One commit holds the samples (target labels attached) and the five report series."""
    h = harness(b'a 1\nb{x="y"} 2\n')
    await h.scrape()
    ts = h.ts_ms()
    samples = h.appender.last
    assert names(samples) == sorted(["a", "b", *REPORT])
    (a,) = h.appender.by_name("a")
    assert a == ((("__name__", "a"), ("instance", "h:1"), ("job", "j")), 1.0, ts)
    assert h.appender.value("up") == 1.0
    assert h.appender.value("scrape_samples_scraped") == 2.0
    assert h.appender.value("scrape_samples_post_metric_relabeling") == 2.0
    assert h.appender.value("scrape_series_added") == 2.0
    assert h.loop.target.health == "up"
    assert h.loop.target.last_error == ""
    await h.scrape()
    assert h.appender.value("scrape_series_added") == 0.0


async def test_extra_scrape_metrics() -> None:
    """extra_scrape_metrics adds timeout, sample limit and body size."""
    h = harness(b"a 1\n", cfg=cfg(extra_scrape_metrics=True, sample_limit=7))
    await h.scrape()
    assert h.appender.value("scrape_timeout_seconds") == 10.0
    assert h.appender.value("scrape_sample_limit") == 7.0
    assert h.appender.value("scrape_body_size_bytes") == 4.0


async def test_disappearing_series_gets_one_marker() -> None:
    """Series in scrape N, absent in N+1: one stale marker at N+1's timestamp (§11 #14)."""
    h = harness(b"a 1\nb 2\n", b"a 1\n")
    await h.scrape()
    await h.scrape()
    (marker,) = h.appender.stale()
    assert dict(marker[0])["__name__"] == "b"
    assert float_bits(marker[1]) == STALE_NAN_BITS
    assert marker[2] == h.ts_ms()
    await h.scrape()
    assert h.appender.stale() == []


async def test_explicit_timestamps_are_not_tracked() -> None:
    """A vanished series with an explicit timestamp gets no marker unless tracked (§11 #14)."""
    h = harness(b"a 1 1699999000000\n", b"")
    await h.scrape()
    await h.scrape()
    assert h.appender.stale() == []
    h = harness(b"a 1 1699999000000\n", b"", cfg=cfg(track_timestamps_staleness=True))
    await h.scrape()
    await h.scrape()
    assert h.appender.stale_names() == ["a"]


async def test_http_failure_marks_everything_stale() -> None:
    """HTTP 500: up 0, scraped 0, all previous series stale, duration written (§11 #15)."""
    h = harness(b"a 1\nb 2\n", http_error())
    await h.scrape()
    await h.scrape()
    assert h.appender.stale_names() == ["a", "b"]
    assert h.appender.value("up") == 0.0
    assert h.appender.value("scrape_samples_scraped") == 0.0
    assert h.appender.by_name("scrape_duration_seconds")
    assert h.loop.target.health == "down"
    assert h.loop.target.last_error == "server returned HTTP status 500 Internal Server Error"
    await h.scrape()
    assert h.appender.stale() == []


async def test_parse_error_staleness_quirk() -> None:
    """`a 1\\nb{ 2\\nc 3` after `a 1\\nb 2\\nc 3`: markers for b and c only, scraped=1 (§11 #16)."""
    h = harness(b"a 1\nb 2\nc 3\n", b"a 1\nb{ 2\nc 3\n")
    await h.scrape()
    await h.scrape()
    assert h.appender.stale_names() == ["b", "c"]
    assert names(h.appender.samples()) == REPORT  # a's sample was rolled back
    assert h.appender.value("up") == 0.0
    assert h.appender.value("scrape_samples_scraped") == 1.0
    assert h.loop.target.last_error


async def test_sample_limit_5_5_1() -> None:
    """3 known + 2 new, limit 4: up 0, 5/5/1, nothing forwarded, no markers (§11 #17)."""
    h = harness(b"a 1\nb 1\nc 1\n", b"a 1\nb 1\nc 1\nd 1\ne 1\n", cfg=cfg(sample_limit=4))
    await h.scrape()
    await h.scrape()
    assert names(h.appender.last) == REPORT
    assert h.appender.value("up") == 0.0
    assert h.appender.value("scrape_samples_scraped") == 5.0
    assert h.appender.value("scrape_samples_post_metric_relabeling") == 5.0
    assert h.appender.value("scrape_series_added") == 1.0
    assert h.loop.target.last_error == "sample limit exceeded"
    assert h.metric("prometheus_target_scrapes_exceeded_sample_limit_total") == 1.0


async def test_sample_limit_ignores_stale_markers() -> None:
    """Markers for vanished known series are written even at the limit."""
    h = harness(b"a 1\nb 1\n", b"c 1\n", cfg=cfg(sample_limit=1))
    await h.scrape()  # fails: 2 > 1, nothing tracked beyond a
    await h.scrape()
    assert h.appender.value("up") == 1.0
    assert h.appender.stale_names() == ["a"]


async def test_honor_labels_false_exported_chain() -> None:
    """Conflicts go to exported_*, shortest name first (§4.5 EMPIRICAL, §11 #13)."""
    h = harness(b'm{job="inner",exported_job="e",instance="i2"} 1\n', address="t:1", job="labels")
    await h.scrape()
    (m,) = h.appender.by_name("m")
    assert dict(m[0]) == {
        "__name__": "m",
        "exported_exported_job": "inner",
        "exported_instance": "i2",
        "exported_job": "e",
        "instance": "t:1",
        "job": "labels",
    }


async def test_honor_labels_13() -> None:
    """§11 #13: honor_labels false vs true on {job="x", exported_job="y"}, target job "j"."""
    h = harness(b'm{job="x",exported_job="y"} 1\n')
    await h.scrape()
    assert dict(h.appender.by_name("m")[0][0]) == {
        "__name__": "m",
        "exported_exported_job": "x",
        "exported_job": "y",
        "instance": "h:1",
        "job": "j",
    }
    h = harness(b'm{job="x",exported_job="y"} 1\n', cfg=cfg(honor_labels=True))
    await h.scrape()
    assert dict(h.appender.by_name("m")[0][0]) == {
        "__name__": "m",
        "exported_job": "y",
        "instance": "h:1",
        "job": "x",
    }


async def test_duplicate_series_dropped_and_counted() -> None:
    """The same series twice without timestamps: the second is dropped and counted."""
    h = harness(b"a 1\na 2\n")
    await h.scrape()
    assert [s[1] for s in h.appender.by_name("a")] == [1.0]
    assert h.metric("prometheus_target_scrapes_sample_duplicate_timestamp_total") == 1.0
    assert h.appender.value("scrape_samples_post_metric_relabeling") == 2.0


async def test_out_of_bounds_and_out_of_order() -> None:
    """Timestamps > now+10m are dropped; a repeated explicit timestamp is out of order."""
    future = (1_699_999_980 + 3600) * 1000
    h = harness(f"a 1 {future}\nb 1 1699999000000\n".encode())
    await h.scrape()
    assert names(h.appender.samples()) == sorted(["b", *REPORT])
    assert h.metric("prometheus_target_scrapes_sample_out_of_bounds_total") == 1.0
    await h.scrape()
    assert names(h.appender.samples()) == REPORT  # a is out of bounds again, b out of order
    assert h.metric("prometheus_target_scrapes_sample_out_of_order_total") == 1.0


async def test_honor_timestamps_false_uses_scrape_time() -> None:
    """honor_timestamps: false ignores explicit timestamps."""
    h = harness(b"a 1 1000\n", cfg=cfg(honor_timestamps=False))
    await h.scrape()
    assert h.appender.by_name("a")[0][2] == h.ts_ms()


async def test_nan_values_keep_bits() -> None:
    """Scraped NaN arrives as the normal NaN, not the stale one."""
    h = harness(b"a NaN\n")
    await h.scrape()
    value = h.appender.by_name("a")[0][1]
    assert math.isnan(value)
    assert float_bits(value) == NORMAL_NAN_BITS


async def test_metric_relabel_drop_uses_dropped_cache() -> None:
    """Dropped series are cached as dropped and not counted post-relabeling."""
    rule = RelabelConfig(source_labels=("__name__",), regex="drop_.*", action="drop")
    h = harness(b"keep 1\ndrop_me 2\n", cfg=cfg(metric_relabel_configs=(rule,)))
    await h.scrape()
    await h.scrape()
    assert names(h.appender.samples()) == sorted(["keep", *REPORT])
    assert h.appender.value("scrape_samples_scraped") == 2.0
    assert h.appender.value("scrape_samples_post_metric_relabeling") == 1.0
    assert h.loop.cache.series[b"drop_me"] == 0


async def test_missing_metric_name_fails() -> None:
    """A metric relabel that removes __name__ fails the scrape with Prometheus's message."""
    rule = RelabelConfig(regex="__name__", action="labeldrop")
    h = harness(b"a 1\n", cfg=cfg(metric_relabel_configs=(rule,)))
    await h.scrape()
    assert h.loop.target.last_error == "missing metric name (__name__ label)"
    assert h.appender.value("up") == 0.0


async def test_invalid_names_legacy_scheme() -> None:
    """Legacy validation refuses a dotted label name produced by relabeling."""
    rule = RelabelConfig(target_label="a.b", replacement="v")
    h = harness(
        b"a 1\n",
        cfg=cfg(metric_relabel_configs=(rule,), metric_name_validation_scheme="legacy"),
    )
    await h.scrape()
    assert h.loop.target.last_error == (
        'invalid metric name or label names: {__name__="a", a.b="v", instance="h:1", job="j"}'
    )


async def test_duplicate_label_names_fail() -> None:
    """Duplicate label names fail the scrape with the storage error (EMPIRICAL)."""
    h = harness(b'a{x="1",x="2"} 1\n')
    await h.scrape()
    assert h.loop.target.last_error == 'label name "x" is not unique: invalid sample'
    assert h.appender.value("up") == 0.0


async def test_label_limits_exact_messages() -> None:
    """label_limit, name length and value length limits fail with exact messages."""
    h = harness(b'm{a="1",b="2"} 1\n', cfg=cfg(label_limit=4))
    await h.scrape()
    assert (
        h.loop.target.last_error
        == "label_limit exceeded (metric: m, number of labels: 5, limit: 4)"
    )
    assert h.metric("prometheus_target_scrape_pool_exceeded_label_limits_total") == 1.0
    h = harness(b'm{long_name="1"} 1\n', cfg=cfg(label_name_length_limit=8))
    await h.scrape()
    assert h.loop.target.last_error == (
        "label_name_length_limit exceeded (metric: m, label name: long_name, length: 9, limit: 8)"
    )
    h = harness(b'm{a="ab\\"c"} 1\n', cfg=cfg(label_value_length_limit=3))
    await h.scrape()
    assert h.loop.target.last_error == (
        'label_value_length_limit exceeded (metric: m, label name: a, value: "ab\\"c", '
        "length: 4, limit: 3)"
    )


async def test_empty_body_is_success_and_marks_stale() -> None:
    """An empty 200 body: up 1, 0 samples, all previous series stale (§11 #20)."""
    h = harness(b"a 1\n", ScrapeResponse(body=b"", content_type=""))
    await h.scrape()
    await h.scrape()
    assert h.appender.value("up") == 1.0
    assert h.appender.value("scrape_samples_scraped") == 0.0
    assert h.appender.stale_names() == ["a"]


async def test_blank_content_type_fails_without_fallback() -> None:
    """Missing Content-Type fails; a fallback protocol makes it parse (§11 #22)."""
    h = harness(b"a 1\n", content_type="")
    await h.scrape()
    assert h.appender.value("up") == 0.0
    assert h.loop.target.last_error.startswith("non-compliant scrape target")
    h = harness(b"a 1\n", content_type="", cfg=cfg(fallback_scrape_protocol="PrometheusText0.0.4"))
    await h.scrape()
    assert h.appender.value("up") == 1.0


async def test_openmetrics_body() -> None:
    """An OpenMetrics Content-Type selects the OM parser (a missing # EOF fails)."""
    ct = "application/openmetrics-text; version=1.0.0"
    h = harness(b"a 1\n# EOF\n", b"a 1\n", content_type=ct)
    await h.scrape()
    assert h.appender.value("up") == 1.0
    await h.scrape()
    assert h.appender.value("up") == 0.0


async def test_forced_error_skips_scrape() -> None:
    """A forced error (target_limit) reports up 0 and marks stale without calling the scraper."""
    h = harness(b"a 1\n")
    await h.scrape()
    h.loop.forced_error = "target_limit exceeded (number of targets: 2, limit: 1)"
    await h.scrape()
    assert len(h.scraper.times) == 1
    assert h.appender.value("up") == 0.0
    assert h.appender.stale_names() == ["a"]
    assert h.loop.target.last_error == "target_limit exceeded (number of targets: 2, limit: 1)"


async def test_unexpected_exception_is_data() -> None:
    """Any exception inside an iteration becomes up 0 and last_error."""
    h = harness(RuntimeError("boom"))
    await h.scrape()
    assert h.appender.value("up") == 0.0
    assert h.loop.target.last_error == "boom"


async def test_cache_evicts_and_releases_refs() -> None:
    """Series not seen in a successful scrape are evicted and their refs released."""
    h = harness(b"a 1\nb 1\n", b"a 1\n")
    await h.scrape()
    refs = len(h.registry)
    await h.scrape()
    assert len(h.registry) == refs - 1
    assert b"b" not in h.loop.cache.series
    h.loop.close()
    assert len(h.registry) == 0


async def test_forced_cache_flush_after_failures() -> None:
    """A cache that balloons while scrapes fail is flushed (counted) each time it is too big."""
    bodies: list[bytes | ScrapeResponse | BaseException] = [b"a 1\n"]
    for i in range(3):
        lines = "".join(f'm{{i="{i}_{j}"}} 1\n' for j in range(600))
        bodies.append((lines + "bad{\n").encode())
    h = harness(*bodies)
    for _ in range(4):
        await h.scrape()
    # 1 + 600 entries: fine; 1201 > 2*1 + 1000: flushed to 600; 1200 again: flushed again.
    assert h.metric("prometheus_target_scrapes_cache_flush_forced_total") == 2.0
    assert len(h.loop.cache) == 600


async def test_timestamp_alignment_in_loop() -> None:
    """Scrapes within 2 ms of the ideal grid get the aligned timestamp."""
    h = harness(b"a 1\n")
    await h.scrape(advance=0)
    first = h.ts_ms()
    h.wall.advance(15.0015)
    await h.loop.scrape_and_report()
    assert h.appender.by_name("a")[0][2] == first + 15_000


async def test_scrape_error_message_from_scraper() -> None:
    """A scraper error string becomes lastError verbatim."""
    h = harness(ScrapeError('Get "http://h:1/metrics": context deadline exceeded'))
    await h.scrape()
    assert h.loop.target.last_error == 'Get "http://h:1/metrics": context deadline exceeded'
