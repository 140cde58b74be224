"""Remote write 2.0 end to end against real peers.

* Relay: collector scrapes a target and sends it twice, as 1.0 straight to VictoriaMetrics and
  as 2.0 to a second collector's receiver (``--web.enable-remote-write-receiver``), which
  forwards it as 1.0 to another VictoriaMetrics; and the way back, 1.0 to a receiver that sends
  2.0 to a third that sends 1.0. Both stores must hold the same raw samples.
* Native histograms and exemplars relayed: collector scrapes a protobuf target (integer, float
  and gauge native histograms, a counter exemplar) and sends 1.0 straight to a Python receiver
  and 2.0 to a second collector's receiver, which forwards 1.0 to the same Python receiver
  (VictoriaMetrics 1.79 stores no native histograms): each path's ``TimeSeries``, decoded with
  `collector.remote.prompb`, are the same multiset, field by field.
* Real 1.0 receivers: Prometheus 2.42 and VictoriaMetrics answer a 2.0 body with 204 and none of
  the written-count headers (they read it as an empty 1.0 request, nothing stored). collector
  treats that as the 2.0 spec says (as a 415) and sends the batch again as 1.0: both end up with
  exactly what a 1.0 destination got, the first batch included.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections import Counter, defaultdict
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from collector.agent import Agent
from collector.remote import prompb
from collector.remote.codec import decompress
from tests.integration.running import Target, eventually, running_agent, serve_target
from tests.integration.servers import Server, free_port, prometheus_receiver, victoria_metrics
from tests.integration.test_native_histogram_oracle import families
from tests.integration.test_protobuf_oracle import PROTO
from tests.model import client_model as pb

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

BODY = b"""# HELP http_requests_total Requests served.
# TYPE http_requests_total counter
http_requests_total{code="200",method="GET"} 1027
http_requests_total{code="500",method="POST"} 3
# HELP temperature_celsius Temperature.
# TYPE temperature_celsius gauge
# UNIT temperature_celsius celsius
temperature_celsius{room="a"} 21.5
temperature_celsius{room="b"} -0.0
# HELP latency_seconds Latency.
# TYPE latency_seconds histogram
latency_seconds_bucket{le="0.1"} 4
latency_seconds_bucket{le="+Inf"} 9
latency_seconds_sum 3.25
latency_seconds_count 9
"""

V2 = "io.prometheus.write.v2.Request"


def _dir(tmp_path: Path, name: str) -> Path:
    path = tmp_path / name
    path.mkdir()
    return path


def _destination(name: str, url: str, message: str = "prometheus.WriteRequest") -> str:
    return (
        f"  - url: {url}\n"
        f"    name: {name}\n"
        f"    protobuf_message: {message}\n"
        "    queue_config: {batch_send_deadline: 200ms, min_backoff: 50ms, max_backoff: 500ms}\n"
    )


def _scrape(target: Target) -> str:
    return (
        "global: {scrape_interval: 500ms, scrape_timeout: 400ms}\n"
        "scrape_configs:\n"
        f"  - job_name: t\n    static_configs: [{{targets: ['{target.address}']}}]\n"
        "remote_write:\n"
    )


def _raw(server: Server) -> dict[frozenset[tuple[str, str]], list[tuple[int, str]]]:
    """Every raw sample of job t in a VictoriaMetrics, per series: (timestamp, value text)."""
    out: dict[frozenset[tuple[str, str]], list[tuple[int, str]]] = {}
    for line in server.export('{job="t"}'):
        metric = line["metric"]
        values = line["values"]
        timestamps = line["timestamps"]
        assert isinstance(metric, dict)
        assert isinstance(values, list)
        assert isinstance(timestamps, list)
        key = frozenset(metric.items())
        out.setdefault(key, []).extend(
            sorted(zip(timestamps, (repr(float(v)) for v in values), strict=True))
        )
    return out


def _holds(server: Server, sent: float, same_as: Server) -> bool:
    """Whether a VictoriaMetrics shows all ``sent`` samples of job t (stale markers included)
    and exactly what ``same_as`` shows. It makes rows searchable a moment after they arrive,
    longer under load: callers poll this (`eventually` reports the last AssertionError)."""
    got, other = _raw(server), _raw(same_as)
    shown, shown_other = sum(map(len, got.values())), sum(map(len, other.values()))
    repeated = sum(len(v) - len(set(v)) for v in got.values())
    assert shown == sent, f"{shown} samples shown ({repeated} repeated), {sent:g} sent"
    assert got == other, f"the two stores differ: {shown} samples against {shown_other}"
    return True


async def _status(agent: Agent) -> dict[str, dict[str, object]]:
    """The agent's /api/v1/status/remote_write entries by name."""
    url = f"http://{agent.options.listen_address}/api/v1/status/remote_write"
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        data = await response.json()
    return {entry["name"]: entry for entry in data["data"]}


def _metric(agent: Agent, name: str, **labels: str) -> float:
    return agent.registry.get_sample_value(name, labels) or 0.0


@pytest.mark.parametrize(
    "hops",
    [
        pytest.param(("2.0",), id="2.0-to-1.0"),
        pytest.param(("1.0", "2.0"), id="1.0-to-2.0-to-1.0"),
    ],
)
async def test_relay_through_collectors_receiver_equals_direct_rw1(
    tmp_path: Path, hops: tuple[str, ...]
) -> None:
    """collector -> collector's receiver [-> collector's receiver] -> (1.0) VictoriaMetrics, the
    legs in ``hops`` sent as 2.0 or 1.0, holds exactly what collector -> (1.0) VictoriaMetrics
    holds: the receiver turns 2.0 into 1.0 and back. Every 2.0 leg stayed on 2.0 (the
    receiver's written headers were read), with nothing partial."""
    target = Target(body=BODY)
    message = {"1.0": "prometheus.WriteRequest", "2.0": V2}
    with (
        victoria_metrics(_dir(tmp_path, "direct")) as direct,
        victoria_metrics(_dir(tmp_path, "relayed")) as relayed,
    ):
        async with serve_target(target), contextlib.AsyncExitStack() as stack:
            # Relays from the one next to VictoriaMetrics back to the one the scraper sends to;
            # the stack stops the scraper first, then each relay before the next one on.
            next_url, next_message = f"{relayed.url}/api/v1/write", message["1.0"]
            relays: list[Agent] = []
            for i in reversed(range(len(hops))):
                config = "global: {}\nremote_write:\n" + _destination(
                    "next", next_url, next_message
                )
                relay = await stack.enter_async_context(
                    running_agent(config, _dir(tmp_path, f"relay{i}"), remote_write_receiver=True)
                )
                relays.insert(0, relay)
                next_url = f"http://{relay.options.listen_address}/api/v1/write"
                next_message = message[hops[i]]
            config = (
                _scrape(target)
                + _destination("direct", f"{direct.url}/api/v1/write")
                + _destination("next", next_url, next_message)
            )
            scraper = await stack.enter_async_context(
                running_agent(config, _dir(tmp_path, "scraper"))
            )
            await eventually(lambda: target.scrapes >= 6, timeout=30)
            for agent, protocol in zip((scraper, *relays), (*hops, "1.0"), strict=True):
                status = await _status(agent)
                assert status["next"]["protocol"] == protocol
                assert status["next"]["fallbackReason"] == ""
                assert (
                    _metric(
                        agent, "collector_remote_write_partial_writes_total", remote_name="next"
                    )
                    == 0
                )
            await stack.aclose()  # every agent flushed and stopped, scraper first
            sent = {
                name: _metric(
                    scraper, "prometheus_remote_storage_samples_total", remote_name=name, url=url
                )
                for name, url in (("direct", f"{direct.url}/api/v1/write"), ("next", next_url))
            }
            assert sent["direct"] == sent["next"] > 0

            await eventually(lambda: _holds(direct, sent["direct"], relayed), timeout=30)
            got = _raw(direct)
    names = {dict(key)["__name__"] for key in got}
    assert {"http_requests_total", "temperature_celsius", "latency_seconds_bucket", "up"} <= names


def _proto_body(stamp_ms: int) -> bytes:
    """Native histograms (integer, float, gauge) and a counter with an exemplar."""
    counter = pb.MetricFamily(name="jobs_total", type=pb.COUNTER, help="Jobs.")
    m = counter.metric.add()
    m.counter.value = 12
    m.counter.exemplar.value = 0.5
    m.counter.exemplar.label.add(name="trace_id", value="t1")
    m.counter.exemplar.timestamp.seconds = stamp_ms // 1000
    m.counter.exemplar.timestamp.nanos = (stamp_ms % 1000) * 1_000_000
    return pb.delimited([*families(0), counter])


def _book(raw: bytes, into: Counter[bytes]) -> None:
    """Count each ``TimeSeries`` of a 1.0 body, re-serialized from its decoded fields."""
    message = prompb.WriteRequest()
    message.ParseFromString(raw)
    for series in message.timeseries:
        into[series.SerializeToString(deterministic=True)] += 1


async def test_native_histograms_and_exemplars_relayed_through_2_0_equal_direct_1_0(
    tmp_path: Path,
) -> None:
    """collector -> (2.0) collector's receiver -> (1.0) receiver gets exactly the ``TimeSeries``
    collector -> (1.0) receiver gets: floats, integer/float/gauge native histograms (every
    field and timestamp) and exemplars; the 2.0 leg reports them all written."""
    target = Target(body=_proto_body(int(time.time() * 1000) + 3000), content_type=PROTO)
    books: dict[str, Counter[bytes]] = defaultdict(Counter)

    async def write(request: web.Request) -> web.Response:
        _book(decompress(await request.read()), books[request.match_info["name"]])
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/write/{name}", write)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    sink = f"http://127.0.0.1:{port}/write"
    extra = "    send_native_histograms: true\n    send_exemplars: true\n"
    try:
        async with serve_target(target), contextlib.AsyncExitStack() as stack:
            relay = await stack.enter_async_context(
                running_agent(
                    "global: {}\nremote_write:\n" + _destination("out", f"{sink}/relayed") + extra,
                    _dir(tmp_path, "relay"),
                    remote_write_receiver=True,
                )
            )
            relay_url = f"http://{relay.options.listen_address}/api/v1/write"
            config = (
                _scrape(target).replace(
                    "static_configs:", "scrape_native_histograms: true\n    static_configs:"
                )
                + _destination("direct", f"{sink}/direct")
                + extra
                + _destination("next", relay_url, V2)
                + extra
            )
            scraper = await stack.enter_async_context(
                running_agent(config, _dir(tmp_path, "scraper"))
            )
            await eventually(lambda: target.scrapes >= 6, timeout=30)
            status = await _status(scraper)
            assert status["next"]["protocol"] == "2.0"
            assert (
                _metric(scraper, "collector_remote_write_partial_writes_total", remote_name="next")
                == 0
            )
            await stack.aclose()  # the scraper flushed and stopped, then the relay
            rejected = _metric(
                relay, "collector_remote_write_receiver_rejected_requests_total",
                reason="unsupported_histograms",
            )  # fmt: skip
            assert rejected == 0
    finally:
        await runner.cleanup()
    direct, relayed = books["direct"], books["relayed"]
    assert relayed == direct
    print(f"relayed == direct: {sum(direct.values())} TimeSeries")
    decoded = []
    for raw in direct:
        series = prompb.TimeSeries()
        series.ParseFromString(raw)
        decoded.append(series)
    histograms = [h for s in decoded for h in s.histograms]
    kinds = {(h.WhichOneof("count"), h.reset_hint) for h in histograms}
    assert kinds == {("count_int", 0), ("count_int", 3), ("count_float", 0)}
    assert sum(len(s.histograms) for s in decoded) >= 3 * 6
    exemplars = [e for s in decoded for e in s.exemplars]
    assert [(e.value, [(x.name, x.value) for x in e.labels]) for e in exemplars] == [
        (0.5, [("trace_id", "t1")])
    ]


async def test_real_1_0_receivers_get_1_0_after_their_2xx_without_headers(
    tmp_path: Path,
) -> None:
    """Prometheus 2.42 and VictoriaMetrics, configured as 2.0 destinations, end up with every
    sample a 1.0 destination got, the first batch included: the fallback loses nothing, and
    the status API says why 1.0 is sent."""
    target = Target(body=BODY)
    with (
        victoria_metrics(_dir(tmp_path, "ref")) as reference,
        victoria_metrics(_dir(tmp_path, "vm2")) as vm2,
        prometheus_receiver(tmp_path) as prom,
    ):
        async with serve_target(target):
            config = (
                _scrape(target)
                + _destination("ref", f"{reference.url}/api/v1/write")
                + _destination("vm2", f"{vm2.url}/api/v1/write", V2)
                + _destination("prom2", f"{prom.url}/api/v1/write", V2)
            )
            async with running_agent(config, _dir(tmp_path, "agent")) as agent:
                await eventually(lambda: target.scrapes >= 6, timeout=30)
                status = await _status(agent)
        for name in ("vm2", "prom2"):
            assert status[name]["protocol"] == "1.0"
            assert status[name]["protocolConfigured"] == "2.0"
            assert "no X-Prometheus-Remote-Write-*-Written header" in str(
                status[name]["fallbackReason"]
            )
            assert _metric(agent, "collector_remote_write_v1_fallback", remote_name=name) == 1
        assert status["ref"]["protocol"] == "1.0"
        assert status["ref"]["fallbackReason"] == ""

        sent = {
            name: _metric(
                agent, "prometheus_remote_storage_samples_total", remote_name=name, url=url
            )
            for name, url in (
                ("ref", f"{reference.url}/api/v1/write"),
                ("vm2", f"{vm2.url}/api/v1/write"),
                ("prom2", f"{prom.url}/api/v1/write"),
            )
        }
        assert sent["ref"] == sent["vm2"] == sent["prom2"] > 0
        await eventually(lambda: _holds(reference, sent["ref"], vm2), timeout=30)
        expected = _raw(reference)
        # Prometheus: per series, the number of non-stale samples and the first timestamp.
        for key, samples in expected.items():
            labels = dict(key)
            selector = "{" + ",".join(f'{k}="{v}"' for k, v in sorted(labels.items())) + "}"
            real = [(ts, v) for ts, v in samples if not math.isnan(float(v))]
            (result,) = prom.query(f"count_over_time({selector}[1h])", time=str(real[-1][0] / 1000))
            value = result["value"]
            assert isinstance(value, list)
            assert int(float(value[1])) == len(real), labels
            (first,) = prom.query(f"timestamp({selector})", time=str(real[0][0] / 1000))
            first_value = first["value"]
            assert isinstance(first_value, list)
            assert round(float(first_value[1]) * 1000) == real[0][0], labels
