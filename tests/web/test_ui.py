"""The UI's server side (collector.web.ui): assets, playground, flags, build info, history."""

from __future__ import annotations

import asyncio
import dataclasses
import re
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from collector import __version__
from collector.cli import build_parser
from collector.config import AgentOptions
from collector.model.relabel import compile_rules, parse_rule
from collector.model.relabel_steps import steps_json, trace_rules
from collector.web.ui import RemoteWriteHistory, add_routes, flags_of


class Options:
    """A `UiView` with options only (the other methods are not called here)."""

    options = AgentOptions(config_file="/etc/c.yml", flush_deadline=12.5)

    async def cardinality(
        self, *, scrape_pool: str, scrape_url: str, top: int
    ) -> Mapping[str, object]:
        raise AssertionError("not called")

    def scrape_pools(self) -> Sequence[Mapping[str, object]]:
        raise AssertionError("not called")


@pytest.fixture
async def client() -> AsyncIterator[TestClient[Any, Any]]:
    app = web.Application()
    add_routes(app, Options())
    async with TestClient(TestServer(app)) as test_client:
        yield test_client


async def test_assets_are_served_with_their_types(client: TestClient[Any, Any]) -> None:
    """Modules as JavaScript (browsers refuse modules of another type), styles as CSS, and
    every module the entry point imports, directly or not, exists."""
    app = await client.get("/static/app.js")
    assert app.headers["Content-Type"].startswith("text/javascript")
    css = await client.get("/static/ui.css")
    assert css.headers["Content-Type"].startswith("text/css")
    assert (await client.get("/static/missing.js")).status == 404
    assert (await client.get("/static/..%2Fui.py")).status == 404
    pending, seen = ["app.js"], set()
    while pending:
        name = pending.pop()
        seen.add(name)
        response = await client.get(f"/static/{name}")
        assert response.status == 200, name
        imports = re.findall(r'from "\./([\w-]+\.js)"', await response.text())
        pending.extend(name for name in imports if name not in seen)
    assert seen >= {
        "app.js",
        "util.js",
        "targets.js",
        "discovery.js",
        "remote.js",
        "relabel.js",
        "status.js",
    }


async def _steps(client: TestClient[Any, Any], labels: object, rules: object) -> Any:
    response = await client.post("/api/v1/relabel_steps", json={"labels": labels, "rules": rules})
    return response.status, await response.json()


RULES = """
- source_labels: [__meta_role]
  regex: node
  action: keep
- source_labels: [__address__]
  regex: '(.*):\\d+'
  target_label: host
"""


@pytest.mark.parametrize(
    "labels",
    [
        {"__address__": "h:9100", "__meta_role": "node"},
        '{"__address__": "h:9100", "__meta_role": "node"}',
        '{__address__="h:9100", __meta_role="node"}',
        "__address__: h:9100\n__meta_role: node\n",
    ],
    ids=["object", "json", "series", "yaml"],
)
async def test_playground_runs_the_agents_relabel_code(
    client: TestClient[Any, Any], labels: object
) -> None:
    """Labels in any of the accepted forms give the steps `relabel_steps` computes for the
    API, in its JSON shape, plus the verdict."""
    status, body = await _steps(client, labels, RULES)
    assert status == 200
    data = body["data"]
    expected = trace_rules(
        {"__address__": "h:9100", "__meta_role": "node"},
        compile_rules(
            [
                parse_rule(r)
                for r in (
                    {"source_labels": ["__meta_role"], "regex": "node", "action": "keep"},
                    {
                        "source_labels": ["__address__"],
                        "regex": "(.*):\\d+",
                        "target_label": "host",
                    },
                )
            ]
        ),
    )
    assert data["steps"] == steps_json(expected)
    assert data["kept"] is True
    assert data["droppedBy"] == -1
    assert data["output"] == {"__address__": "h:9100", "__meta_role": "node", "host": "h"}


@pytest.mark.parametrize(
    "rules",
    [
        "relabel_configs:\n- {source_labels: [__meta_role], regex: gpu, action: keep}\n",
        "{source_labels: [__meta_role], regex: gpu, action: keep}",
        [{"source_labels": ["__meta_role"], "regex": "gpu", "action": "keep"}],
    ],
    ids=["scrape-config", "one-rule", "list"],
)
async def test_playground_reports_the_dropping_rule(
    client: TestClient[Any, Any], rules: object
) -> None:
    """Rules pasted as a relabel_configs block, a single rule or a JSON list all work; a drop
    names the rule."""
    status, body = await _steps(client, {"__meta_role": "node"}, rules)
    assert status == 200
    assert body["data"]["kept"] is False
    assert body["data"]["droppedBy"] == 0
    assert body["data"]["output"] == {}


@pytest.mark.parametrize(
    ("labels", "rules", "error"),
    [
        ({"a": "b"}, "- {action: repalce}", 'rules[0].action: unknown relabel action "repalce"'),
        ({"a": "b"}, "- {regex: '('}\n", "rules[0].regex"),
        ({"a": "b"}, "- [unclosed", "rules:2:1: yaml: line 1: did not find expected ',' or ']'"),
        ({"a": "b"}, "- {action: keep}\n- action: repalce\n", "2:3: rules[1].action: unknown"),
        ({"a": "b"}, "42", "rules: expected a list of relabel rules"),
        ("{a=}", "[]", "labels: not a label mapping nor a series"),
        ("", "[]", "labels: give a JSON object"),
    ],
)
async def test_playground_errors_say_where(
    client: TestClient[Any, Any], labels: object, rules: str, error: str
) -> None:
    """Bad input is a 400 bad_data whose message names the rule and key, or the labels."""
    status, body = await _steps(client, labels, rules)
    assert status == 400
    assert body["errorType"] == "bad_data"
    assert error in body["error"]


async def test_playground_needs_a_json_object(client: TestClient[Any, Any]) -> None:
    """A body that is not a JSON object is refused."""
    response = await client.post("/api/v1/relabel_steps", data=b"[1, 2]")
    assert response.status == 400
    response = await client.post("/api/v1/relabel_steps", data=b"{nope")
    assert response.status == 400


def test_flags_use_the_command_line_names() -> None:
    """Options appear under the CLI's flag names (held to its parser), never under a made-up
    one; an option the page does not know yet keeps its field name."""
    parser_flags = {
        action.dest: action.option_strings[0].removeprefix("--")
        for action in build_parser()._actions
        if action.option_strings and action.dest not in ("help", "version")
    }
    fields = {field.name for field in dataclasses.fields(AgentOptions)}
    shown = flags_of(AgentOptions())
    assert len(shown) == len(fields)
    for name in shown:
        assert name in parser_flags.values() or name in fields, name
    for dest in (
        "config_file",
        "listen_address",
        "storage_path",
        "flush_deadline",
        "enable_lifecycle",
        "max_disk_bytes",
    ):
        assert parser_flags[dest] in shown, dest


async def test_flags_and_build_info(client: TestClient[Any, Any]) -> None:
    """Prometheus's status endpoints: flags as strings, durations as durations."""
    flags = (await (await client.get("/api/v1/status/flags")).json())["data"]
    assert flags["config.file"] == "/etc/c.yml"
    assert flags["storage.remote.flush-deadline"] == "12s500ms"
    assert flags["web.enable-lifecycle"] == "false"
    build = (await (await client.get("/api/v1/status/buildinfo")).json())["data"]
    assert build["version"] == __version__
    assert build["python"].startswith("CPython 3.")


async def test_without_a_view_only_the_app_and_playground() -> None:
    """An app built without a `UiView` serves the assets and the playground; the status
    endpoints are absent (the pages say "not available")."""
    app = web.Application()
    add_routes(app, None)
    async with TestClient(TestServer(app)) as client:
        assert (await client.get("/static/app.js")).status == 200
        assert (await client.get("/api/v1/status/cardinality")).status == 404
        status, _ = await _steps(client, {"a": "b"}, [])
        assert status == 200


class Queues:
    """Remote-write numbers that tests move by hand."""

    def __init__(self) -> None:
        self.rows: list[dict[str, object]] = [
            {
                "name": "q",
                "samplesSent": 0,
                "samplesFailed": 0,
                "samplesRetried": 0,
                "samplesPending": 0,
            }
        ]

    def __call__(self) -> Sequence[Mapping[str, object]]:
        return [dict(row) for row in self.rows]


@pytest.mark.looptime
async def test_history_samples_every_interval_and_keeps_fifteen_minutes() -> None:
    """One point every 10 s (drift-free), rates per second between points, and no more than
    15 minutes of them."""
    queues = Queues()
    history = RemoteWriteHistory(queues, interval=10.0, span=900.0)
    task = asyncio.create_task(history.run())
    for second in range(1, 1001):
        queues.rows[0]["samplesSent"] = 100 * second  # 100 samples/s
        queues.rows[0]["samplesRetried"] = 5 * second if second > 950 else 0
        await asyncio.sleep(1)
    (status,) = history.annotate(queues())
    task.cancel()
    points = status["history"]["points"]  # type: ignore[index]
    assert len(points) == 90  # 91 samples in 900 s, rates between neighbours
    assert points[-1] == {"ago": 0.0, "sent": 100.0, "failed": 0.0, "retried": 5.0, "pending": 0.0}
    assert points[0]["ago"] == 890.0
    assert status["samplesPerSecond"] == 100.0
    assert status["history"]["span"] == 900.0  # type: ignore[index]


def test_history_rates_survive_counter_resets_and_forget_gone_queues() -> None:
    """A counter that went down restarted from zero (a new writer); a queue that is no longer
    configured has no history."""
    queues = Queues()
    history = RemoteWriteHistory(queues, interval=10.0)
    for now, sent in ((0.0, 1000), (10.0, 2000), (20.0, 300)):
        queues.rows[0]["samplesSent"] = sent
        history.record(now)
    (status,) = history.annotate(queues())
    rates = [p["sent"] for p in status["history"]["points"]]  # type: ignore[index]
    assert rates == [100.0, 30.0]
    queues.rows[0]["name"] = "renamed"
    history.record(30.0)
    (old,) = history.annotate([{"name": "q"}])
    assert old["history"]["points"] == []  # type: ignore[index]
    assert old["samplesPerSecond"] is None


async def test_playground_reads_yaml_as_the_config_loader_does(
    client: TestClient[Any, Any],
) -> None:
    """``regex: true`` and ``replacement: 0080`` are the strings written, as in a config file
    (Go's YAML decoding), not YAML's boolean and integer; label values keep their text too."""
    status, body = await _steps(
        client,
        "flag: true\nport: 0080\n",
        "- {source_labels: [flag], regex: true, action: keep}\n"
        "- {target_label: port, replacement: 0080}\n",
    )
    assert status == 200
    assert body["data"]["input"] == {"flag": "true", "port": "0080"}
    assert body["data"]["kept"] is True
    assert body["data"]["steps"][0]["rule"]["regex"] == "true"
    assert body["data"]["output"] == {"flag": "true", "port": "0080"}
