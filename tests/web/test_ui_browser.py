"""Every page of the web UI in a real browser (Debian's Chromium, headless).

Each page is loaded, waited for until its data is drawn, acted on like a user (click, type),
asserted through the DOM, and saved as a screenshot under ``test-artifacts/ui/``
(`tests.web.cdp`). Any uncaught script error fails the test.

The first test runs the real agent against loopback targets: every page with real data. The
second serves the app on a scripted view, so that what the pages draw (a 15-minute chart,
limits, "x s ago") can be asserted exactly.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncIterator, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from prometheus_client import CollectorRegistry

from collector import __version__
from collector.config import AgentOptions
from collector.web.app import make_app
from tests.integration.running import Target, eventually, running_agent, serve_target
from tests.web.cdp import Page, browser_page, js_string

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

JSON = dict[str, Any]


EXPOSITION = b"""# TYPE shop_orders_total counter
shop_orders_total{shop="a"} 1
shop_orders_total{shop="b"} 2
shop_orders_total{shop="c"} 3
# TYPE shop_queue_depth gauge
shop_queue_depth{queue="x"} 4
shop_queue_depth{queue="y"} 5
"""


@contextlib.asynccontextmanager
async def accepting_receiver() -> AsyncIterator[str]:
    """A remote-write receiver that accepts everything; yields its URL."""

    async def write(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/api/v1/write", write)
    async with TestServer(app, host="127.0.0.1") as server:
        yield str(server.make_url("/api/v1/write"))


async def test_every_page_against_a_running_agent(tmp_path: Path) -> None:
    """Targets, service discovery, remote write, the playground and status render real data,
    and act on clicks and typing as a user expects."""
    target = Target(body=EXPOSITION)
    async with serve_target(target), accepting_receiver() as receiver:
        config = f"""
global: {{scrape_interval: 200ms, scrape_timeout: 200ms}}
scrape_configs:
  - job_name: shop
    sample_limit: 3
    sample_limit_mode: keep_first
    static_configs:
      - {{targets: ['{target.address}'], labels: {{team: blue}}}}
      - {{targets: ['127.0.0.1:1'], labels: {{team: gone}}}}
  - job_name: filtered
    relabel_configs:
      - {{source_labels: [team], regex: drop-me, action: drop}}
    static_configs:
      - {{targets: ['{target.address}'], labels: {{team: keep}}}}
      - {{targets: ['10.0.0.9:9100'], labels: {{team: drop-me}}}}
remote_write: [{{url: '{receiver}', name: sink}}]
"""
        async with running_agent(config, tmp_path) as agent:
            await eventually(lambda: target.scrapes >= 4)
            agent.history.record(asyncio.get_running_loop().time())
            base = f"http://{agent.options.listen_address}/"
            async with aiohttp.ClientSession() as session:
                probe = await session.get(
                    f"{base}api/v1/targets/relabel_steps",
                    params={"scrapePool": "filtered", "labels": "{}"},
                )
                steps_api = probe.status != 404
            async with browser_page(tmp_path / "profile") as page:
                await _targets_page(page, base, target, steps_api=steps_api)
                await _discovery_page(page, base, steps_api=steps_api)
                await _remote_write_page(page, base)
                await _playground_page(page, base)
                await _status_page(page, base)


async def _targets_page(page: Page, base: str, target: Target, *, steps_api: bool) -> None:
    await page.goto(f"{base}#/targets", page="targets")
    await page.wait("document.querySelectorAll('tr.target').length === 3")
    assert await page.texts("details.pool .pool-name") == ["filtered", "shop"]
    assert await page.texts("details[data-pool=shop] .badge") == ["1/2 up"]
    up_row = f"details[data-pool=shop] tr[data-url='http://{target.address}/metrics']"
    assert await page.texts(f"{up_row} .health") == ["up"]
    # The cache holds all five series; keep_first writes three and counts the rest.
    assert await page.texts(f"{up_row} td.series") == ["5"]
    assert await page.js(
        f"document.querySelector({js_string(up_row + ' time')}).title.includes('T')"
    )
    assert "s ago" in (await page.texts(f"{up_row} time"))[0]
    down = "tr[data-url='http://127.0.0.1:1/metrics']"
    assert (
        "dial tcp 127.0.0.1:1: connect: connection refused"
        in (await page.texts(f"{down} td.error"))[0]
    )
    await page.screenshot("targets")

    await page.click("button[data-health=down]")
    assert await page.texts("tr.target .health") == ["down"]
    await page.click("button[data-health=all]")
    await page.type("#target-filter", 'team="keep')
    assert await page.texts("tr.target") != []
    assert await page.js("document.querySelectorAll('tr.target').length") == 1
    assert await page.texts("details.pool .pool-name") == ["filtered"]
    await page.type("#target-filter", "")
    await page.click("details[data-pool=shop] > summary")
    assert not await page.js("document.querySelector('details[data-pool=shop]').open")
    await page.click("details[data-pool=shop] > summary")

    await page.click(f"{up_row} button.disclose")
    await page.wait("document.querySelector('.target-cardinality table.bars')")
    names = await page.texts(".target-cardinality table.bars td.name")
    assert names[:2] == ["shop_orders_total", "shop_queue_depth"]
    limits = await page.texts(".target-cardinality table.limits tbody td")
    assert limits[:2] == ["sample_limit", "3 (keep_first)"]
    assert int(limits[3]) >= 2  # two samples past the limit in every scrape
    if steps_api:
        # The shop pool has no relabel_configs: nothing to step through.
        await page.wait("document.querySelector('.relabel-steps p')")
    else:
        await page.wait("document.querySelector('.relabel-steps .notice.warn')")
    await page.screenshot("target-details")


async def _discovery_page(page: Page, base: str, *, steps_api: bool) -> None:
    await page.goto(f"{base}#/discovery", page="discovery")
    pool = "details[data-pool=filtered]"
    counts = await page.js(
        f"Object.fromEntries([...document.querySelectorAll('{pool} .count')]"
        ".map(e => [e.dataset.count, e.querySelector('b').textContent]))"
    )
    assert counts == {
        "discovered": "2",
        "active": "1",
        "dropped": "1",
        "failed": "0",
        "series": "5",
    }
    await page.click(f"{pool} > summary")
    await page.wait(
        f"document.querySelector('{pool} tr.dropped-target td.verdict span:not(.muted)')"
        if steps_api
        else f"document.querySelector('{pool} td.verdict')"
    )
    assert await page.texts(f"{pool} tr.dropped-target summary") == ["10.0.0.9:9100"]
    verdict = (await page.texts(f"{pool} td.verdict"))[0]
    if steps_api:
        await page.wait(
            f"document.querySelector('{pool} td.verdict').textContent.includes('rule 1')"
        )
        verdict = (await page.texts(f"{pool} td.verdict"))[0]
        assert verdict.startswith("rule 1 drop")
        assert 'regex: "drop-me"' in verdict
    else:
        await page.wait(
            f"document.querySelector('{pool} td.verdict').textContent.includes('not available')"
        )
    await page.screenshot("service-discovery")


async def _remote_write_page(page: Page, base: str) -> None:
    await page.goto(f"{base}#/remote-write", page="remote-write")
    queue = "section.queue[data-queue=sink]"
    stats = await page.js(
        f"Object.fromEntries([...document.querySelectorAll('{queue} .tile')]"
        ".map(e => [e.dataset.stat, e.querySelector('.value').textContent]))"
    )
    assert set(stats) == {
        "samples/s sent",
        "sent",
        "failed",
        "retried",
        "pending",
        "shards",
        "write-ahead queue",
        "remote write",
    }
    assert stats["failed"] == "0"
    assert stats["remote write"] == "1.0"
    assert await page.js(f"document.querySelectorAll('{queue} svg.chart polyline').length") == 3
    await page.screenshot("remote-write")


async def _playground_page(page: Page, base: str) -> None:
    await page.goto(f"{base}#/relabel", page="relabel")
    await page.click("#pg-run")
    await page.wait("document.querySelector('#pg-output .verdict')")
    assert (await page.texts("#pg-output .verdict"))[0].startswith("kept:")
    assert await page.js("document.querySelectorAll('#pg-output tr.step').length") == 4
    kept = await page.js(
        "[...document.querySelectorAll('#pg-output .verdict .chip')].map(c => c.dataset.label)"
    )
    assert kept == ["__address__", "job", "namespace", "pod"]
    await page.screenshot("relabel-playground")
    await page.type("#pg-rules", "- {source_labels: [job], regex: kubernetes-pods, action: drop}")
    await page.js(
        "document.querySelector('#pg-rules').value = document.querySelector('#pg-rules').value"
    )
    await page.click("#pg-run")
    await page.wait("document.querySelector('#pg-output .verdict.dropped')")
    assert await page.texts("#pg-output .verdict") == ["dropped by rule 1"]
    await page.type("#pg-rules", "- {action: repalce}")
    await page.click("#pg-run")
    await page.wait("document.querySelector('#pg-output .notice.error')")
    assert "rules[0]" in (await page.texts("#pg-output .notice"))[0]


async def _status_page(page: Page, base: str) -> None:
    await page.goto(f"{base}#/status", page="status")
    assert "job_name: shop" in (await page.texts("#config-yaml"))[0]
    flags = await page.texts("#flags th")
    assert "--config.file" in flags
    assert "--web.listen-address" in flags
    build = dict(
        zip(await page.texts("#build-info th"), await page.texts("#build-info td"), strict=True)
    )
    assert build["version"] == __version__
    assert build["python"].startswith("CPython")
    await page.screenshot("status")


def _iso(seconds_ago: float) -> str:
    return (datetime.now(UTC) - timedelta(seconds=seconds_ago)).isoformat().replace("+00:00", "Z")


def _step(action: str, output: dict[str, str], *, keep: bool = True, **rule: object) -> JSON:
    return {
        "rule": {"separator": ";", "regex": "(.*)", "replacement": "$1", "action": action, **rule},
        "output": output if keep else {},
        "keep": keep,
    }


class ScriptedAgent:
    """An `AgentView` and `UiView` with fixed, known data: what each page must draw."""

    options = AgentOptions(config_file="/etc/collector/collector.yml")

    def __init__(self) -> None:
        self.discovered = {"__address__": "10.0.0.5:9100", "__meta_role": "node", "job": "node"}
        self.active: list[JSON] = [
            {
                "discoveredLabels": self.discovered,
                "labels": {"instance": "10.0.0.5:9100", "job": "node"},
                "scrapePool": "node",
                "scrapeUrl": "http://10.0.0.5:9100/metrics",
                "globalUrl": "http://10.0.0.5:9100/metrics",
                "lastError": "",
                "lastScrape": _iso(42),
                "lastScrapeDuration": 0.0123,
                "health": "up",
                "scrapeInterval": "15s",
                "scrapeTimeout": "10s",
            }
        ]
        self.dropped: list[JSON] = [
            {
                "discoveredLabels": {"__address__": "10.0.0.6:9100", "__meta_role": "gpu"},
                "scrapePool": "node",
            },
        ]

    def is_ready(self) -> bool:
        return True

    async def reload(self) -> None:
        return None

    def request_quit(self) -> None:
        return None

    def active_targets(self) -> Sequence[JSON]:
        return self.active

    def dropped_targets(self) -> Sequence[JSON]:
        return self.dropped

    def dropped_target_counts(self) -> Mapping[str, int]:
        return {"node": 1}

    def target_relabel_steps(self, pool: str, labels: Mapping[str, str]) -> Mapping[str, object]:
        if labels.get("__meta_role") == "gpu":
            steps = [
                _step("replace", dict(labels), target_label="x"),
                _step("keep", {}, keep=False, source_labels=["__meta_role"], regex="node"),
            ]
        else:
            kept = {**labels, "role": "node"}
            steps = [
                _step("replace", kept, source_labels=["__meta_role"], target_label="role"),
                _step("keep", kept, source_labels=["__meta_role"], regex="node"),
            ]
        return {"steps": steps}

    def series_relabel_steps(
        self, pool: str, series: Mapping[str, str], *, target: Mapping[str, str] | None
    ) -> Mapping[str, object]:
        return {}

    def config_yaml(self) -> str:
        return "global:\n  scrape_interval: 15s\nscrape_configs:\n- job_name: node\n"

    def remote_write_status(self) -> Sequence[JSON]:
        # 90 points, one every 10 s: the sent rate climbs from 0 to 89 samples/s, one failure.
        points = [
            {
                "ago": 890.0 - 10 * i,
                "sent": float(i),
                "failed": 1.0 if i == 45 else 0.0,
                "retried": 0.0,
                "pending": 7.0,
            }
            for i in range(90)
        ]
        return [
            {
                "name": "mimir",
                "url": "https://mimir.example/api/v1/push",
                "samplesSent": 123456,
                "samplesFailed": 10,
                "samplesRetried": 0,
                "samplesPending": 7,
                "shards": 3,
                "diskQueueBytes": 3 * 1024 * 1024,
                "protocol": "1.0",
                "protocolConfigured": "2.0",
                "fallbackReason": "HTTP 415: server returned HTTP status 415",
                "samplesPerSecond": 89.0,
                "history": {"interval": 10.0, "span": 900.0, "points": points},
            }
        ]

    async def cardinality(
        self, *, scrape_pool: str, scrape_url: str, top: int
    ) -> Mapping[str, object]:
        churn = {
            "lastAdded": 4,
            "lastRemoved": 1,
            "recentAdded": 40,
            "recentRemoved": 9,
            "recentScrapes": 10,
            "totalAdded": 400,
            "totalRemoved": 90,
        }
        target = {
            "scrapePool": "node",
            "scrapeUrl": "http://10.0.0.5:9100/metrics",
            "labels": self.active[0]["labels"],
            "health": "up",
            "lastError": "",
            "series": 1234,
            "churn": churn,
            "seriesCountByMetricName": [{"name": "node_cpu_seconds_total", "value": 800}][:top],
            "labelValueCountByLabelName": [{"name": "cpu", "value": 64}][:top],
            "limits": {
                "sampleLimit": 0,
                "sampleLimitMode": "fail",
                "labelLimit": 0,
                "seriesLimit": 1000,
                "seriesLimitWindow": "1h",
                "windowSeries": 1000,
                "refusedSeries": 234,
                "refusedByMetricName": [{"name": "node_cpu_seconds_total", "value": 234}],
                "scrapesLimited": {"series_limit": 12},
                "samplesLimited": {"series_limit": 2808},
            },
        }
        return {"activeTargets": [target], "pools": [], "targets": 1, "series": 1234}

    def scrape_pools(self) -> Sequence[Mapping[str, object]]:
        return [
            {
                "scrapePool": "node",
                "discovered": 2,
                "active": 1,
                "dropped": 1,
                "failed": 0,
                "series": 1234,
            }
        ]


async def test_pages_draw_what_the_agent_reports(tmp_path: Path) -> None:
    """Exact rendering: "x s ago" with the time on hover, a target's relabel steps with the
    changed labels marked, its series_limit and culprit, the rule that dropped a target, and
    the 15-minute remote-write chart (one polyline vertex per point)."""
    view = ScriptedAgent()
    app = make_app(view, registry=CollectorRegistry(), ui=view)
    async with TestServer(app, host="127.0.0.1") as server, browser_page(tmp_path / "p") as page:
        base = str(server.make_url("/"))
        await page.goto(f"{base}#/targets", page="targets")
        row = "tr[data-url='http://10.0.0.5:9100/metrics']"
        assert re.fullmatch(r"4[2-4] s ago", (await page.texts(f"{row} time"))[0])
        hover = await page.js(f"document.querySelector({js_string(row + ' time')}).title")
        assert view.active[0]["lastScrape"][:19] in hover  # the exact UTC time, to the second
        assert await page.texts(f"{row} td.series") == ["1,234"]
        assert (await page.texts(f"{row} td.num"))[0] == "12.3 ms"
        await page.click(f"{row} button.disclose")
        await page.wait("document.querySelector('.relabel-steps table.steps')")
        assert await page.texts(".relabel-steps .chip.added") == ['role="node"']
        assert await page.texts(".target-cardinality table.limits td") == [
            "series_limit",
            "1,000 of 1,000 per 1h",
            "12",
            "2,808",
        ]
        heads = await page.texts(".target-cardinality h4")
        assert heads[-1] == "Series refused by series_limit this window, by metric name (234)"
        refused = await page.texts(".target-cardinality table.bars td.name")
        assert refused[-1] == "node_cpu_seconds_total"
        await page.screenshot("scripted-target-details")

        await page.goto(f"{base}#/discovery", page="discovery")
        await page.click("details[data-pool=node] > summary")
        await page.wait("document.querySelector('td.verdict .rule-ref')")
        assert await page.texts("td.verdict") == [
            'rule 2 keep  source_labels: [__meta_role]  regex: "node"'
        ]
        await page.screenshot("scripted-service-discovery")

        await page.goto(f"{base}#/remote-write", page="remote-write")
        queue = "section.queue[data-queue=mimir]"
        sent = await page.js(
            f"document.querySelector('{queue} polyline[data-series=sent]').getAttribute('points')"
        )
        vertices = [tuple(map(float, p.split(","))) for p in sent.split()]
        assert len(vertices) == 90
        assert vertices == sorted(vertices)  # time runs left to right, the rate only climbs
        assert vertices[-1][1] < vertices[0][1]  # 89/s is drawn above 0/s
        assert await page.texts(f"{queue} [data-stat='samples/s sent'] .value") == ["89"]
        assert await page.texts(f"{queue} [data-stat='write-ahead queue'] .value") == ["3.0 MiB"]
        assert (
            await page.js(f"document.querySelector('{queue} [data-stat=failed]').className")
            == "tile bad"
        )
        assert await page.texts(f"{queue} [data-stat='remote write'] .value") == ["1.0"]
        assert await page.texts(f"{queue} .notice.warn") == [
            "Configured for remote write 2.0; sending 1.0 since the receiver refused it: "
            "HTTP 415: server returned HTTP status 415"
        ]
        await page.screenshot("scripted-remote-write")
