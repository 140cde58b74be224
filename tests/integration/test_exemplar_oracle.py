"""Exemplars against the real Prometheus 2.42 agent as oracle (issue 12): ``send_exemplars``.

Two loopback targets: one answers OpenMetrics text (counter exemplars with and without their
own timestamp, empty exemplar label values, a histogram bucket exemplar), one the delimited
protobuf format (a counter exemplar with a timestamp, one without, a classic bucket
exemplar). Prometheus 2.42 (``--enable-feature=agent,exemplar-storage``) and collector scrape
both and remote-write 1.0 with ``send_exemplars: true`` to one receiver.

What each sent must be the same, exemplar by exemplar: the series it belongs to, its labels
(sorted, empty values dropped), its value, and its timestamp when the exposition gave one; an
exemplar without one carries the scrape timestamp of its sample (each agent its own scrape, so
only checked to be a timestamp the agent also sent a sample at). Both send each exemplar once,
however many scrapes repeat it (the agent's ``AppendExemplar`` skips an exemplar equal to the
series' last one). Explicit exemplar timestamps are a few seconds ahead of the start, as in the
protobuf oracle test: Prometheus's write-ahead-log watcher sends nothing older than its start.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import defaultdict
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from aiohttp import web

from collector.remote import prompb
from collector.remote.codec import decompress
from tests.integration import servers
from tests.integration.running import eventually, running_agent, serve_routes
from tests.integration.servers import Server
from tests.integration.test_protobuf_oracle import PROTO
from tests.model import client_model as pb

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

OM = "application/openmetrics-text; version=1.0.0; charset=utf-8"
Labels = tuple[tuple[str, str], ...]
Ex = tuple[Labels, float, int]


def om_body(stamp_s: float) -> bytes:
    return (
        "# TYPE jobs counter\n"
        "# HELP jobs Jobs run.\n"
        f'jobs_total{{kind="a"}} 17 # {{trace_id="oHg5SJYRHA0",span=""}} 9.8 {stamp_s:.3f}\n'
        'jobs_total{kind="b"} 18 # {trace_id="x"} 1\n'
        'jobs_total{kind="c"} 3\n'
        "# TYPE wait_seconds histogram\n"
        f'wait_seconds_bucket{{le="1.0"}} 2 # {{trace_id="b1"}} 0.5 {stamp_s:.3f}\n'
        'wait_seconds_bucket{le="+Inf"} 3 # {trace_id="b2"} 7\n'
        "wait_seconds_count 3\n"
        "wait_seconds_sum 8.5\n"
        "# EOF\n"
    ).encode()


def proto_body(stamp_ms: int) -> bytes:
    c = pb.MetricFamily(name="calls_total", type=pb.COUNTER, help="Calls.")
    m = c.metric.add()
    m.label.add(name="code", value="200")
    m.counter.value = 5
    m.counter.exemplar.value = 0.67
    m.counter.exemplar.label.add(name="trace_id", value="KOO")
    m.counter.exemplar.timestamp.seconds = stamp_ms // 1000
    m.counter.exemplar.timestamp.nanos = (stamp_ms % 1000) * 1_000_000
    n = c.metric.add()
    n.label.add(name="code", value="500")
    n.counter.value = 6
    n.counter.exemplar.value = 1
    n.counter.exemplar.label.add(name="trace_id", value="nots")
    h = pb.MetricFamily(name="size_bytes", type=pb.HISTOGRAM)
    hm = h.metric.add().histogram
    hm.sample_count, hm.sample_sum = 4, 100.0
    hm.bucket.add(upper_bound=10, cumulative_count=1)
    hm.bucket.add(upper_bound=100, cumulative_count=4)
    hm.bucket[1].exemplar.value = 42
    hm.bucket[1].exemplar.label.add(name="trace_id", value="bkt")
    hm.bucket[1].exemplar.timestamp.seconds = stamp_ms // 1000
    return pb.delimited([c, h])


@dataclass
class Sent:
    exemplars: dict[Labels, list[Ex]] = field(default_factory=lambda: defaultdict(list))
    sample_ts: dict[Labels, set[int]] = field(default_factory=lambda: defaultdict(set))


def record(book: Sent, raw: bytes) -> None:
    message = prompb.WriteRequest()
    message.ParseFromString(raw)
    for series in message.timeseries:
        key = tuple(sorted((label.name, label.value) for label in series.labels))
        for sample in series.samples:
            book.sample_ts[key].add(sample.timestamp)
        for e in series.exemplars:
            labels = tuple((x.name, x.value) for x in e.labels)
            book.exemplars[key].append((labels, e.value, e.timestamp))


@contextlib.asynccontextmanager
async def serve(stamp_ms: int) -> AsyncIterator[tuple[list[str], str, dict[str, Sent]]]:
    sent: dict[str, Sent] = defaultdict(Sent)

    async def write(request: web.Request) -> web.Response:
        record(sent[request.match_info["sender"]], decompress(await request.read()))
        return web.Response(status=204)

    async def om(request: web.Request) -> web.Response:
        return web.Response(body=om_body(stamp_ms / 1000), headers={"Content-Type": OM})

    async def proto(request: web.Request) -> web.Response:
        return web.Response(body=proto_body(stamp_ms), headers={"Content-Type": PROTO})

    routes = [
        ("GET", "/metrics", om),
        ("GET", "/metrics", proto),
        ("POST", "/write/{sender}", write),
    ]
    async with serve_routes(routes) as addresses:
        yield addresses[:2], addresses[2], sent


def config(targets: list[str], receiver: str, sender: str) -> str:
    listed = ", ".join(f"'{t}'" for t in targets)
    return (
        "global: {scrape_interval: 1s, scrape_timeout: 1s}\n"
        f"scrape_configs:\n  - job_name: ex\n    static_configs: [{{targets: [{listed}]}}]\n"
        f"remote_write:\n  - url: http://{receiver}/write/{sender}\n"
        "    send_exemplars: true\n"
        "    queue_config: {batch_send_deadline: 200ms, min_backoff: 50ms, max_backoff: 500ms}\n"
    )


def prometheus_agent(workdir: Path, text: str) -> contextlib.AbstractContextManager[Server]:
    """Prometheus 2.42 in agent mode with exemplar storage."""
    return servers.prometheus_agent(workdir, text, features="exemplar-storage")


def _name(key: Labels) -> str:
    return dict(key)["__name__"]


async def test_exemplars_match_the_prometheus_agent(tmp_path: Path) -> None:
    stamp_ms = int(time.time() * 1000) + 15_000
    async with serve(stamp_ms) as (targets, receiver, sent):
        with prometheus_agent(tmp_path / "prometheus", config(targets, receiver, "prometheus")):
            agent_dir = tmp_path / "collector"
            agent_dir.mkdir()
            async with running_agent(
                config(targets, receiver, "collector"), agent_dir, flush_deadline=5.0
            ):

                def complete(name: str) -> bool:
                    book = sent.get(name)
                    return book is not None and len(book.exemplars) >= 7

                await eventually(lambda: complete("prometheus") and complete("collector"))
                await asyncio.sleep(4)  # several more scrapes: nothing more to send
    prom, ours = sent["prometheus"], sent["collector"]
    assert sorted(ours.exemplars) == sorted(prom.exemplars)
    assert {_name(k) for k in prom.exemplars} == {
        "jobs_total",
        "wait_seconds_bucket",
        "calls_total",
        "size_bytes_bucket",
    }
    for key in prom.exemplars:
        (mine,) = ours.exemplars[key]  # each sent once, by both
        (theirs,) = prom.exemplars[key]
        assert mine[:2] == theirs[:2], key
        if theirs[2] == stamp_ms or theirs[2] == stamp_ms // 1000 * 1000:
            assert mine[2] == theirs[2], key
        else:  # no timestamp of its own: its sample's scrape timestamp
            assert mine[2] in ours.sample_ts[key], key
            assert theirs[2] in prom.sample_ts[key], key
    explicit = [e for es in prom.exemplars.values() for e in es if e[2] // 1000 == stamp_ms // 1000]
    assert len(explicit) == 4
    a = next(k for k in prom.exemplars if dict(k).get("kind") == "a")
    assert ours.exemplars[a][0][0] == (("trace_id", "oHg5SJYRHA0"),)  # empty span dropped
