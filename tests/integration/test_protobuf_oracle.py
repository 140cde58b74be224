"""Protobuf scraping against the real Prometheus 2.42 agent as oracle (issue 12, scrape slice).

The same loopback targets answer in the delimited ``io.prometheus.client.MetricFamily`` format
(bodies built by the ``protobuf`` package from `tests.model.client_model`): counters with
labels and an exemplar, gauges with explicit timestamps, untyped, summaries with and without
quantiles, a classic histogram (unsorted bounds, ``le`` values Go renders with an exponent,
a bucket exemplar) and a gauge histogram, help, units. No native buckets: collector does not
ingest native histograms yet, and Prometheus 2.42 with ``--enable-feature=agent,native-histograms``
parses a histogram without spans as classic. Classic buckets with float counts
(``cumulative_count_float``) are left to the decoder's unit tests: 2.42 reads only the integer
counts, Prometheus 3 (which collector follows) the float ones when non-zero.

Prometheus 2.42 negotiates protobuf with that flag; collector asks for it with
``scrape_protocols: [PrometheusProto]``. Both remote-write 1.0 to one receiver (one path per
sender); what each sent must be identical series by series and value by value: every label
set, the set of values of every series (explicit-timestamp series: the (timestamp, value)
pairs), the report series' values (``scrape_duration_seconds`` aside), and the metadata.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import defaultdict
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from collector.model.value import float_bits, is_stale
from collector.remote.codec import decode_metadata, decode_request, decompress
from tests.integration import servers
from tests.integration.running import eventually, running_agent, serve_routes
from tests.integration.servers import Server
from tests.model import client_model as pb

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

PROTO = (
    "application/vnd.google.protobuf; proto=io.prometheus.client.MetricFamily; encoding=delimited"
)
JOB = "proto"
NOW_MS = int(time.time() * 1000)


def families(instance: int, stamped_ms: int) -> list[Any]:
    """One target's body: every classic kind, ``instance`` varies the values; the room
    gauges carry the explicit timestamp ``stamped_ms``."""
    out = []
    c = pb.MetricFamily(name="http_requests_total", type=pb.COUNTER, help="Requests served.")
    for code, n in (("200", 1027 + instance), ("500", 3)):
        m = c.metric.add()
        m.label.add(name="method", value="get")
        m.label.add(name="code", value=code)
        m.counter.value = n
    c.metric[0].counter.exemplar.value = 0.67
    c.metric[0].counter.exemplar.label.add(name="trace_id", value="KOO5S4vxi0o")
    c.metric[0].counter.created_timestamp.seconds = NOW_MS // 1000 - 3600
    out.append(c)

    b = pb.MetricFamily(name="process_resident_memory_bytes", type=pb.GAUGE, unit="bytes")
    b.help = "Résident memory size in bytes."
    b.metric.add().gauge.value = 2.5e7 + instance
    out.append(b)

    g = pb.MetricFamily(name="room_temperature_celsius", type=pb.GAUGE, help="With stamps.")
    for room, v in (("a", 21.5), ("b", -3.25)):
        m = g.metric.add()
        m.label.add(name="room", value=room)
        m.gauge.value = v + instance
        m.timestamp_ms = stamped_ms
    out.append(g)

    u = pb.MetricFamily(name="some_untyped", type=pb.UNTYPED)
    um = u.metric.add()
    um.label.add(name="checksum", value="")  # an empty value: no label, for both
    um.untyped.value = 42
    out.append(u)

    s = pb.MetricFamily(name="rpc_duration_seconds", type=pb.SUMMARY, help="RPC latency.")
    sm = s.metric.add()
    sm.label.add(name="service", value="exponential")
    sm.summary.sample_count, sm.summary.sample_sum = 262 + instance, 0.00025551262820703587
    for q, v in ((0.5, 6.442786329648548e-07), (0.9, 1.9435742936658396e-06), (0.99, 4.05e-06)):
        sm.summary.quantile.add(quantile=q, value=v)
    out.append(s)
    nq = pb.MetricFamily(name="summary_without_quantiles", type=pb.SUMMARY)
    nq.metric.add().summary.sample_count = 42
    nq.metric[0].summary.sample_sum = 1.234
    out.append(nq)

    h = pb.MetricFamily(name="request_size_bytes", type=pb.HISTOGRAM, help="Sizes.")
    hm = h.metric.add()
    hm.label.add(name="handler", value="/api")
    hist = hm.histogram
    hist.sample_count, hist.sample_sum = 175 + instance, 1.5e6
    for ub, n in ((100, 2), (1000, 4), (1e6, 16), (0.0004899999999999998, 16), (123456, 17)):
        hist.bucket.add(upper_bound=ub, cumulative_count=n)
    hist.bucket[1].exemplar.value = 999
    hist.bucket[1].exemplar.label.add(name="trace_id", value="abc")
    hist.bucket[1].exemplar.timestamp.seconds = NOW_MS // 1000
    out.append(h)

    gh = pb.MetricFamily(name="queue_depth_histogram", type=pb.GAUGE_HISTOGRAM, help="Depth.")
    ghm = gh.metric.add().histogram
    ghm.sample_count, ghm.sample_sum = 5, 12
    ghm.bucket.add(upper_bound=1, cumulative_count=1)
    ghm.bucket.add(upper_bound=1e-5, cumulative_count=3)
    out.append(gh)
    return out


# ----------------------------------------------------------------------------- rig


@dataclass
class Sent:
    """What one agent remote-wrote: values per series, and metadata entries."""

    series: dict[tuple[tuple[str, str], ...], set[tuple[int, int]]] = field(
        default_factory=lambda: defaultdict(set)
    )
    """Sorted labels -> {(timestamp ms, value bits)} (stale markers left out)."""
    metadata: set[tuple[int, str, str, str]] = field(default_factory=set)


@contextlib.asynccontextmanager
async def serve(
    targets: int, stamped_ms: int
) -> AsyncIterator[tuple[list[str], str, list[list[str]], dict[str, Sent]]]:
    """``targets`` protobuf endpoints and a receiver (``/write/<sender>``); yields their
    addresses, the receiver's, the Accept headers each target saw, what each sender sent."""
    sent: dict[str, Sent] = defaultdict(Sent)
    accepts: list[list[str]] = [[] for _ in range(targets)]
    bodies = [pb.delimited(families(i, stamped_ms)) for i in range(targets)]

    async def write(request: web.Request) -> web.Response:
        data = decompress(await request.read())
        book = sent[request.match_info["sender"]]
        for labels, points in decode_request(data):
            key = tuple(sorted(labels))
            for value, ts in points:
                if not is_stale(value):
                    book.series[key].add((ts, float_bits(value)))
        book.metadata.update(decode_metadata(data))
        return web.Response(status=204)

    def metrics(i: int) -> Any:
        async def handle(request: web.Request) -> web.Response:
            agent = request.headers.get("User-Agent", "").split("/")[0]
            accepts[i].append(f"{agent} {request.headers.get('Accept', '')}")
            return web.Response(body=bodies[i], headers={"Content-Type": PROTO})

        return handle

    routes = [("GET", "/metrics", metrics(i)) for i in range(targets)]
    async with serve_routes([*routes, ("POST", "/write/{sender}", write)]) as addresses:
        yield addresses[:-1], addresses[-1], accepts, sent


def config(targets: list[str], receiver: str, sender: str, *, collector: bool) -> str:
    listed = ", ".join(f"'{t}'" for t in targets)
    text = (
        "global: {scrape_interval: 1s, scrape_timeout: 1s}\n"
        f"scrape_configs:\n  - job_name: {JOB}\n"
        f"    static_configs: [{{targets: [{listed}]}}]\n"
    )
    if collector:
        text += "    scrape_protocols: [PrometheusProto]\n"
    return text + (
        f"remote_write:\n  - url: http://{receiver}/write/{sender}\n"
        "    queue_config: {batch_send_deadline: 200ms, min_backoff: 50ms, max_backoff: 500ms}\n"
        "    metadata_config: {send_interval: 1s}\n"
    )


def prometheus_agent(workdir: Path, text: str) -> contextlib.AbstractContextManager[Server]:
    """Prometheus 2.42 in agent mode with native histograms on (so it negotiates protobuf)."""
    return servers.prometheus_agent(workdir, text, features="native-histograms")


def _names(book: Sent) -> set[str]:
    return {dict(k)["__name__"] for k in book.series}


_REPORT_VALUES = ("up", "scrape_samples_scraped", "scrape_samples_post_metric_relabeling")
_REPORT = {*_REPORT_VALUES, "scrape_duration_seconds", "scrape_series_added"}


async def test_protobuf_targets_match_the_prometheus_agent(tmp_path: Path) -> None:
    """Two protobuf targets scraped by collector and by Prometheus 2.42: the same series,
    values, timestamps and metadata arrive over remote write 1.0.

    Two differences are 2.42's, fixed in the Prometheus 3 parser collector follows
    (``model/textparse/protobufparse.go``), and are checked as such: 2.42 names a gauge
    histogram's classic series without ``_bucket``/``_count``/``_sum`` (its ``getMagicName``
    knows only HISTOGRAM), and it reports no unit from protobuf (no ``EntryUnit``).
    """
    # Explicit timestamps must be newer than Prometheus's WAL watcher start, which sends
    # nothing older: a few seconds ahead of now (both accept up to 10 minutes ahead).
    stamped_ms = int(time.time() * 1000) + 15_000
    async with serve(2, stamped_ms) as (targets, receiver, accepts, sent):
        prom_text = config(targets, receiver, "prometheus", collector=False)
        ours_text = config(targets, receiver, "collector", collector=True)
        with prometheus_agent(tmp_path / "prometheus", prom_text):
            agent_dir = tmp_path / "collector"
            agent_dir.mkdir()
            async with running_agent(ours_text, agent_dir, flush_deadline=5.0):
                expected = {f.name for f in families(0, stamped_ms)}

                def complete(name: str) -> bool:
                    book = sent.get(name)
                    if book is None or not book.metadata:
                        return False
                    have = _names(book)
                    return all(any(n.startswith(e) for n in have) for e in expected)

                await eventually(lambda: complete("prometheus") and complete("collector"))
                await asyncio.sleep(4)  # several more scrapes of both
        # Both stopped (the receiver still up): their last batches were flushed.
    prom, ours = sent["prometheus"], sent["collector"]
    # Both agents asked for protobuf first (Prometheus 2.42: because of native-histograms).
    asked = {a.split(" ", 1)[0] for t in accepts for a in t}
    assert asked == {"Prometheus", "collector"}
    assert all(
        a.split(" ", 1)[1].startswith("application/vnd.google.protobuf;")
        for t in accepts
        for a in t
    )

    gauge_histogram = "queue_depth_histogram"
    _rename_gauge_histogram(prom, gauge_histogram)
    _fold_count_and_sum(ours, gauge_histogram)
    assert sorted(ours.series) == sorted(prom.series)
    for key in sorted(prom.series):
        name = dict(key)["__name__"]
        if name in ("scrape_duration_seconds", "scrape_series_added"):
            continue
        if name != "room_temperature_celsius":
            values = {bits for _, bits in ours.series[key]}
            assert values == {bits for _, bits in prom.series[key]}, key
        else:  # explicit timestamps: the same (timestamp, value) pairs
            (point,) = prom.series[key]
            assert point[0] == stamped_ms
            assert ours.series[key] == prom.series[key], key
    # 26 series per body (2.42 folds a gauge histogram's _count and _sum: 25), 5 report series.
    assert len(prom.series) == 2 * 25 + 2 * 5

    blank = {(t, n, h, "") for t, n, h, _ in ours.metadata}
    assert blank == prom.metadata
    units = {n: u for _, n, _, u in ours.metadata if u}
    assert units == {"process_resident_memory_bytes": "bytes"}
    types = {n: t for t, n, _, _ in ours.metadata}
    assert types[gauge_histogram] == 4  # GAUGEHISTOGRAM


def _rename_gauge_histogram(prom: Sent, name: str) -> None:
    """Map 2.42's gauge histogram series onto Prometheus 3's names (see the test docstring):
    its ``le`` series are the ``_bucket`` ones; its unsuffixed series holds the values of
    both ``_count`` and ``_sum``, kept under one name for the comparison."""
    for key in [k for k in prom.series if dict(k)["__name__"] == name]:
        points = prom.series.pop(key)
        labels = dict(key)
        if "le" in labels:
            labels["__name__"] = name + "_bucket"
            prom.series[tuple(sorted(labels.items()))] |= points
        else:
            labels["__name__"] = name + "_count_and_sum"
            prom.series[tuple(sorted(labels.items()))] |= points


def _fold_count_and_sum(ours: Sent, name: str) -> None:
    """Put collector's ``_count`` and ``_sum`` of a gauge histogram under the one name that
    `_rename_gauge_histogram` gives 2.42's folded series (their values are then compared)."""
    for suffix in ("_count", "_sum"):
        for key in [k for k in ours.series if dict(k)["__name__"] == name + suffix]:
            labels = dict(key)
            labels["__name__"] = name + "_count_and_sum"
            ours.series[tuple(sorted(labels.items()))] |= ours.series.pop(key)
