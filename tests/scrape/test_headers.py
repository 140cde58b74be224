"""Accept, timeout header and Content-Type -> parser rules (spec §4.2, §4.3)."""

from __future__ import annotations

import pytest

from collector.config import ScrapeConfig
from collector.errors import ScrapeContentTypeError
from collector.scrape.scraper import accept_header, parser_for, scrape_protocols, timeout_header

P3_DEFAULT = (
    "application/openmetrics-text;version=1.0.0;escaping=allow-utf-8;q=0.6,"
    "application/openmetrics-text;version=0.0.1;q=0.5,"
    "text/plain;version=1.0.0;escaping=allow-utf-8;q=0.4,"
    "text/plain;version=0.0.4;q=0.3,*/*;q=0.2"
)
P3_PROTO_FIRST = (
    "application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited;q=0.6,"
    "application/openmetrics-text;version=1.0.0;escaping=allow-utf-8;q=0.5,"
    "application/openmetrics-text;version=0.0.1;q=0.4,"
    "text/plain;version=1.0.0;escaping=allow-utf-8;q=0.3,"
    "text/plain;version=0.0.4;q=0.2,*/*;q=0.1"
)


def test_default_accept_header_exact() -> None:
    """The P3 default Accept header, byte for byte."""
    assert accept_header(scrape_protocols(ScrapeConfig(job_name="j"))) == P3_DEFAULT


def test_native_histograms_accept_header_exact() -> None:
    """With scrape_native_histograms, protobuf comes first."""
    cfg = ScrapeConfig(job_name="j", scrape_native_histograms=True)
    assert accept_header(scrape_protocols(cfg)) == P3_PROTO_FIRST


def test_configured_protocols_and_legacy_escaping() -> None:
    """Configured protocols in order; legacy validation escapes with underscores."""
    assert (
        accept_header(("PrometheusText1.0.0",), escaping="underscores")
        == "text/plain;version=1.0.0;escaping=underscores;q=0.6,*/*;q=0.5"
    )
    assert accept_header(("PrometheusText0.0.4",)) == "text/plain;version=0.0.4;q=0.6,*/*;q=0.5"


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(10.0, "10"), (0.5, "0.5"), (1.0, "1"), (1.25, "1.25"), (0.001, "0.001"), (1e-5, "0.00001")],
)
def test_timeout_header_shortest_decimal(seconds: float, text: str) -> None:
    """X-Prometheus-Scrape-Timeout-Seconds is the shortest decimal."""
    assert timeout_header(seconds) == text


@pytest.mark.parametrize(
    ("content_type", "fmt"),
    [
        ("text/plain; version=0.0.4; charset=utf-8", "text"),
        ("TEXT/PLAIN", "text"),
        ("application/openmetrics-text; version=1.0.0; charset=utf-8", "openmetrics"),
    ],
)
def test_content_type_selects_parser(content_type: str, fmt: str) -> None:
    """The media type picks the parser; parameters are ignored."""
    assert parser_for(content_type, None) == fmt


@pytest.mark.parametrize(
    ("content_type", "message"),
    [
        (
            "",
            "non-compliant scrape target sending blank Content-Type and no "
            "fallback_scrape_protocol specified for target",
        ),
        ("text/", 'cannot parse Content-Type "text/" and no fallback_scrape_protocol for target'),
        (
            "application/json",
            'received unsupported Content-Type "application/json" and no '
            "fallback_scrape_protocol specified for target",
        ),
    ],
    ids=["blank", "unparsable", "unsupported"],
)
def test_content_type_errors_exact(content_type: str, message: str) -> None:
    """The three P3 Content-Type errors, exact."""
    with pytest.raises(ScrapeContentTypeError) as info:
        parser_for(content_type, None)
    assert str(info.value) == message


def test_fallback_protocol_is_used() -> None:
    """fallback_scrape_protocol rescues blank, unparsable and unsupported types."""
    assert parser_for("", "PrometheusText0.0.4") == "text"
    assert parser_for("garbage", "OpenMetricsText1.0.0") == "openmetrics"
    assert parser_for("application/json", "PrometheusText1.0.0") == "text"


def test_parser_choice_is_remembered_but_not_errors() -> None:
    """A Content-Type's parser is chosen once; a refused one raises every time; the memory
    of choices stays bounded whatever targets send."""
    from collector.scrape import scraper

    scraper._CHOSEN.clear()
    assert parser_for("text/plain; version=0.0.4", None) == "text"
    assert scraper._CHOSEN == {("text/plain; version=0.0.4", None): "text"}
    assert parser_for("text/plain; version=0.0.4", None) == "text"
    for _ in range(2):
        with pytest.raises(ScrapeContentTypeError):
            parser_for("application/json", None)
    assert len(scraper._CHOSEN) == 1
    for i in range(scraper._CHOSEN_MAX + 5):
        assert parser_for(f"text/plain; v={i}", None) == "text"
    assert 0 < len(scraper._CHOSEN) <= scraper._CHOSEN_MAX
