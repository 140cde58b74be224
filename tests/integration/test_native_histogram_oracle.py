"""Native histograms against the real Prometheus 2.42 agent as oracle (issue 12, done-when).

The same loopback protobuf targets (bodies built by the ``protobuf`` package from
`tests.model.client_model`) serve native integer histograms (positive and negative spans with
an empty bucket inside a span, a zero bucket, schemas 3 and -2, one also with classic buckets),
a native gauge histogram, a native float histogram and a classic histogram. Prometheus 2.42
runs with ``--enable-feature=agent,native-histograms``; collector with
``scrape_native_histograms: true``; both remote-write 1.0 with ``send_native_histograms: true``
to one receiver, which decodes ``TimeSeries.histograms`` with `collector.remote.prompb`.

Compared field by field: for every series, the set of ``Histogram`` messages each agent sent
(every field, timestamps aside: each agent stamps its own scrapes; the serialized message with
``timestamp`` cleared), and the float series as the protobuf oracle test compares them. 2.42
has no ``scrape_classic_histograms`` nor ``native_histogram_bucket_limit`` keys (promtool
refuses both), so neither is compared here (unit tests hold them).

When the histograms go away, both agents mark every histogram series stale once, at the same
scrape, with the float StaleNaN (the agent's marker; a Prometheus server's head would store a
histogram-shaped one). One difference is 2.42's and is checked as such: a float native
histogram (``sample_count_float``, absolute ``positive_count``): 2.42's ``isNativeHistogram``
looks for integer deltas only, so it scrapes it as a classic histogram from the integer fields
(``_count`` 0, ``_sum``, ``_bucket{le="+Inf"}`` 0) and its agent cannot send float histograms
anyway; Prometheus 3 (which collector follows) ingests it as a float histogram, whose fields
are checked against the body.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import defaultdict
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from collector.model.value import STALE_NAN_BITS, float_bits, is_stale
from collector.remote import prompb
from collector.remote.codec import decompress
from tests.integration.running import eventually, running_agent, serve_routes
from tests.integration.test_protobuf_oracle import PROTO, prometheus_agent
from tests.model import client_model as pb

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

JOB = "nh"
Labels = tuple[tuple[str, str], ...]


def families(instance: int, *, histograms: bool = True) -> list[Any]:
    """One target's body; ``instance`` varies the values; without ``histograms`` only the
    gauge is left (the histogram series then go stale)."""
    up = pb.MetricFamily(name="build_info", type=pb.GAUGE)
    up.metric.add().gauge.value = 1 + instance
    if not histograms:
        return [up]

    rpc = pb.MetricFamily(name="rpc_duration_seconds", type=pb.HISTOGRAM, help="RPC latency.")
    for method, scale in (("get", 1), ("put", 3)):
        m = rpc.metric.add()
        m.label.add(name="method", value=method)
        h = m.histogram
        counts = [scale, 3, 0, 2, 3 + instance]  # index 3 empty: compacted away
        h.sample_count = sum(counts) + (1 + instance) + (2 + instance)
        h.sample_sum = 33.25 * scale + instance
        h.schema = 3
        h.zero_threshold = 2.938735877055719e-39
        h.zero_count = 2 + instance
        h.positive_span.add(offset=-1, length=2)
        h.positive_span.add(offset=2, length=3)
        h.positive_delta.extend(b - a for a, b in zip([0, *counts], counts, strict=False))
        h.negative_span.add(offset=4, length=1)
        h.negative_delta.extend([1 + instance])
        h.bucket.add(upper_bound=0.5, cumulative_count=4)  # classic too: ignored by both
        h.bucket.add(upper_bound=2, cumulative_count=9)

    wide = pb.MetricFamily(name="payload_bytes", type=pb.HISTOGRAM, help="Payload sizes.")
    w = wide.metric.add().histogram
    w.sample_count, w.sample_sum = 1550 + instance, 7.5e6
    w.schema = -2
    w.positive_span.add(offset=1, length=4)
    w.positive_delta.extend([100, 300, -150, 549 + instance])
    w.negative_span.add(offset=-3, length=1)
    w.negative_delta.extend([1])

    depth = pb.MetricFamily(name="queue_depth", type=pb.GAUGE_HISTOGRAM, help="Depth.")
    d = depth.metric.add().histogram
    d.sample_count, d.sample_sum = 4 + instance, 10.0
    d.schema = 0
    d.positive_span.add(offset=2, length=1)
    d.positive_delta.extend([4 + instance])

    ratio = pb.MetricFamily(name="load_ratio", type=pb.HISTOGRAM, help="Float counts.")
    r = ratio.metric.add().histogram
    r.sample_count_float, r.sample_sum = 7.5 + instance, 3.0
    r.zero_count_float = 0.5
    r.schema = 1
    r.positive_span.add(offset=0, length=3)
    r.positive_count.extend([3.5, 0.0, 3.5 + instance])

    classic = pb.MetricFamily(name="request_size_bytes", type=pb.HISTOGRAM, help="Sizes.")
    c = classic.metric.add().histogram
    c.sample_count, c.sample_sum = 17 + instance, 1.5e6
    for ub, n in ((100, 2), (1000, 4), (1e6, 16)):
        c.bucket.add(upper_bound=ub, cumulative_count=n)
    return [up, rpc, wide, depth, ratio, classic]


NATIVE = ("rpc_duration_seconds", "payload_bytes", "queue_depth")


@dataclass
class Sent:
    """What one agent remote-wrote."""

    floats: dict[Labels, set[int]] = field(default_factory=lambda: defaultdict(set))
    """Labels -> value bits (stale markers apart)."""
    histograms: dict[Labels, set[bytes]] = field(default_factory=lambda: defaultdict(set))
    """Labels -> serialized Histogram messages with ``timestamp`` cleared (markers apart)."""
    raw: dict[Labels, list[Any]] = field(default_factory=lambda: defaultdict(list))
    """Labels -> every Histogram message as received."""
    float_stale: dict[Labels, list[int]] = field(default_factory=lambda: defaultdict(list))
    histogram_stale: dict[Labels, list[Any]] = field(default_factory=lambda: defaultdict(list))


def record(book: Sent, raw: bytes) -> None:
    message = prompb.WriteRequest()
    message.ParseFromString(raw)
    for series in message.timeseries:
        key = tuple(sorted((label.name, label.value) for label in series.labels))
        for sample in series.samples:
            if is_stale(sample.value):
                book.float_stale[key].append(sample.timestamp)
            else:
                book.floats[key].add(float_bits(sample.value))
        for h in series.histograms:
            if float_bits(h.sum) == STALE_NAN_BITS:
                book.histogram_stale[key].append(h)
                continue
            book.raw[key].append(h)
            copy = prompb.Histogram()
            copy.CopyFrom(h)
            copy.timestamp = 0
            book.histograms[key].add(copy.SerializeToString(deterministic=True))


@contextlib.asynccontextmanager
async def serve(targets: int) -> AsyncIterator[tuple[list[str], str, dict[str, Sent], list[bool]]]:
    """Protobuf targets and a receiver at ``/write/<sender>``; ``state[0]`` False removes the
    histograms from every body."""
    sent: dict[str, Sent] = defaultdict(Sent)
    state = [True]

    async def write(request: web.Request) -> web.Response:
        record(sent[request.match_info["sender"]], decompress(await request.read()))
        return web.Response(status=204)

    def metrics(i: int) -> Any:
        async def handle(request: web.Request) -> web.Response:
            body = pb.delimited(families(i, histograms=state[0]))
            return web.Response(body=body, headers={"Content-Type": PROTO})

        return handle

    routes = [("GET", "/metrics", metrics(i)) for i in range(targets)]
    async with serve_routes([*routes, ("POST", "/write/{sender}", write)]) as addresses:
        yield addresses[:-1], addresses[-1], sent, state


def config(targets: list[str], receiver: str, sender: str, *, collector: bool) -> str:
    listed = ", ".join(f"'{t}'" for t in targets)
    text = (
        "global: {scrape_interval: 1s, scrape_timeout: 1s}\n"
        f"scrape_configs:\n  - job_name: {JOB}\n"
        f"    static_configs: [{{targets: [{listed}]}}]\n"
    )
    if collector:
        text += "    scrape_native_histograms: true\n"
    return text + (
        f"remote_write:\n  - url: http://{receiver}/write/{sender}\n"
        "    send_native_histograms: true\n"
        "    queue_config: {batch_send_deadline: 200ms, min_backoff: 50ms, max_backoff: 500ms}\n"
    )


def _name(key: Labels) -> str:
    return dict(key)["__name__"]


async def test_native_histograms_match_the_prometheus_agent(tmp_path: Path) -> None:
    async with serve(2) as (targets, receiver, sent, state):
        prom_text = config(targets, receiver, "prometheus", collector=False)
        ours_text = config(targets, receiver, "collector", collector=True)
        with prometheus_agent(tmp_path / "prometheus", prom_text):
            agent_dir = tmp_path / "collector"
            agent_dir.mkdir()
            async with running_agent(ours_text, agent_dir, flush_deadline=5.0):

                def complete(name: str) -> bool:
                    book = sent.get(name)
                    if book is None:
                        return False
                    have = {_name(k) for k in book.histograms}
                    return have >= set(NATIVE) and len(book.histograms) >= 2 * 4

                await eventually(lambda: complete("prometheus") and complete("collector"))
                await asyncio.sleep(3)  # several more scrapes of both
                state[0] = False  # the histograms go away: staleness markers

                def marked(name: str) -> bool:
                    book = sent[name]
                    gone = {_name(k) for k in (*book.float_stale, *book.histogram_stale)}
                    return gone >= {
                        *NATIVE,
                        "load_ratio_sum" if name == "prometheus" else "load_ratio",
                    }

                await eventually(lambda: marked("prometheus") and marked("collector"), timeout=30)
                await asyncio.sleep(2)
    prom, ours = sent["prometheus"], sent["collector"]

    # Native histograms: the same series, and the same Histogram messages field by field.
    native_prom = dict(prom.histograms)
    native_ours = {k: v for k, v in ours.histograms.items() if _name(k) != "load_ratio"}
    assert sorted(native_ours) == sorted(native_prom)
    assert {_name(k) for k in native_prom} == set(NATIVE)
    assert len(native_prom) == 2 * 4  # two targets: get, put, payload, depth
    for key in sorted(native_prom):
        assert native_ours[key] == native_prom[key], key
        assert len(native_prom[key]) == 1, key  # every scrape sent the same histogram
    # Spot checks that the comparison saw what the bodies hold: compaction, gauge hint.
    (rpc,) = (h for k, hs in ours.raw.items() for h in hs[:1] if dict(k).get("method") == "get"
              and dict(k)["instance"] == targets[0])  # fmt: skip
    assert (rpc.schema, rpc.count_int, rpc.zero_count_int) == (3, 12, 2)
    assert [(s.offset, s.length) for s in rpc.positive_spans] == [(-1, 2), (3, 2)]
    assert list(rpc.positive_deltas) == [1, 2, -1, 1]
    depth = next(h for k, hs in ours.raw.items() for h in hs if _name(k) == "queue_depth")
    assert depth.reset_hint == 3  # GAUGE
    # The timestamps are each agent's scrape times: whole ms, one per interval.
    for key in native_prom:
        assert len({h.timestamp for h in ours.raw[key]}) == len(ours.raw[key])

    # Float series: classic histograms and the gauge the same; the float native histogram is
    # 2.42's classic reading of it (see the module docstring), collector's float histogram.
    ratio_prom = {k for k in prom.floats if _name(k).startswith("load_ratio")}
    assert {_name(k) for k in ratio_prom} == {
        "load_ratio_count",
        "load_ratio_sum",
        "load_ratio_bucket",
    }
    ours_ratio = [h for k, hs in ours.raw.items() if _name(k) == "load_ratio" for h in hs]
    assert {(h.count_float, h.zero_count_float, h.schema) for h in ours_ratio} == {
        (7.5, 0.5, 1),
        (8.5, 0.5, 1),
    }
    assert {tuple(h.positive_counts) for h in ours_ratio} == {(3.5, 3.5), (3.5, 4.5)}
    assert {tuple((s.offset, s.length) for s in h.positive_spans) for h in ours_ratio} == {
        ((0, 1), (1, 1))
    }
    assert all(h.WhichOneof("count") == "count_float" for h in ours_ratio)
    floats_prom = {
        k: v for k, v in prom.floats.items() if not _name(k).startswith(("load_ratio", "scrape_"))
    }
    floats_ours = {k: v for k, v in ours.floats.items() if not _name(k).startswith("scrape_")}
    assert sorted(floats_ours) == sorted(floats_prom)
    for key in floats_prom:
        assert floats_ours[key] == floats_prom[key], key
    assert {_name(k) for k in floats_prom} == {
        "build_info",
        "up",
        "request_size_bytes_count",
        "request_size_bytes_sum",
        "request_size_bytes_bucket",
    }

    # Staleness: every histogram series marked once by each, at the same scrape, with the
    # float StaleNaN (the agent's marker; no histogram-shaped marker from either).
    assert not prom.histogram_stale
    assert not ours.histogram_stale
    for key in native_prom:
        (prom_ts,) = prom.float_stale[key]
        (our_ts,) = ours.float_stale[key]
        assert abs(our_ts - prom_ts) < 1000  # the same scrape interval
    for key in (k for k in ours.raw if _name(k) == "load_ratio"):
        assert len(ours.float_stale[key]) == 1
