"""``/api/v1/targets/relabel_steps`` and ``/api/v1/series_relabel_steps`` served by the agent."""

from __future__ import annotations

import io
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient, TestServer

from collector.agent import Agent, new_registry
from collector.config import AgentOptions
from collector.explain.command import main as explain_main
from tests.integration.running import eventually, running_agent

CONFIG = r"""
global:
  external_labels: {cluster: eu-1}
scrape_configs:
  # Prometheus's api_test.go pool: a constant replace, then a drop of its result.
  - job_name: testpool
    static_configs: [{targets: ["127.0.0.1:1"]}]
    relabel_configs:
      - {action: replace, replacement: "example.com:443", target_label: __address__, regex: ""}
      - {source_labels: [__address__], regex: 'example\.com:.*', action: drop}
  - job_name: pods
    keep_dropped_targets: 1
    static_configs:
      - targets: ["127.0.0.1:1"]
        labels: {__meta_scrape: "true", team: a}
      - targets: ["127.0.0.1:2", "127.0.0.1:3"]
        labels: {__meta_scrape: "false"}
    relabel_configs:
      - {source_labels: [__meta_scrape], regex: "true", action: keep}
      - {source_labels: [team], target_label: owner}
    metric_relabel_configs:
      - {source_labels: [__name__], regex: "go_.*", action: drop}
remote_write:
  - name: main
    url: http://127.0.0.1:1/api/v1/write
    write_relabel_configs:
      - {regex: team, action: labeldrop}
"""


@pytest.fixture
async def client(tmp_path: Path) -> AsyncIterator[TestClient[Any, Any]]:
    """The agent's HTTP app on its loaded config; the pipeline itself is not started."""
    config = tmp_path / "collector.yml"
    config.write_text(CONFIG)
    options = AgentOptions(config_file=str(config), storage_path=str(tmp_path / "queue"))
    agent = Agent(options, registry=new_registry())
    async with TestClient(TestServer(agent.make_web_app())) as test_client:
        yield test_client


async def get(client: TestClient[Any, Any], path: str, **params: str) -> tuple[int, Any]:
    """Status and decoded JSON body of a GET."""
    response = await client.get(path, params=params)
    return response.status, await response.json()


async def test_target_steps_have_prometheus_shape(client: TestClient[Any, Any]) -> None:
    """Byte for byte the answer of Prometheus's api_test.go for that pool and those labels."""
    status, body = await get(
        client,
        "/api/v1/targets/relabel_steps",
        scrapePool="testpool",
        labels='{"job":"test","__address__":"localhost:9090"}',
    )
    assert status == 200
    assert body["status"] == "success"
    assert body["data"]["steps"] == [
        {
            "rule": {
                "separator": ";",
                "regex": "",
                "target_label": "__address__",
                "replacement": "example.com:443",
                "action": "replace",
            },
            "output": {"__address__": "example.com:443", "job": "test"},
            "keep": True,
        },
        {
            "rule": {
                "source_labels": ["__address__"],
                "separator": ";",
                "regex": r"example\.com:.*",
                "replacement": "$1",
                "action": "drop",
            },
            "output": {},
            "keep": False,
        },
    ]
    assert body["data"]["result"] == {
        "state": "dropped",
        "labels": {},
        "scrapeUrl": "",
        "error": "",
    }


@pytest.mark.parametrize(
    ("params", "error"),
    [
        ({}, "no scrapePool parameter provided"),
        ({"scrapePool": "pods"}, "no labels parameter provided"),
        ({"scrapePool": "pods", "labels": "{"}, "error parsing labels: "),
        ({"scrapePool": "pods", "labels": "[]"}, "error parsing labels: expected a JSON object"),
        (
            {"scrapePool": "pods", "labels": '{"a": 1}'},
            "error parsing labels: the value of label 'a' is not a string",
        ),
        (
            {"scrapePool": "nope", "labels": "{}"},
            'error retrieving scrape config: scrape pool "nope" not found',
        ),
    ],
)
async def test_target_steps_errors(
    client: TestClient[Any, Any], params: dict[str, str], error: str
) -> None:
    """Prometheus's messages, as bad_data with status 400."""
    status, body = await get(client, "/api/v1/targets/relabel_steps", **params)
    assert status == 400
    assert body["status"] == "error"
    assert body["errorType"] == "bad_data"
    assert body["error"].startswith(error)


async def test_series_steps_to_each_destination(client: TestClient[Any, Any]) -> None:
    """The target's labels attached, metric relabeling, then external labels and write rules."""
    status, body = await get(
        client,
        "/api/v1/series_relabel_steps",
        scrapePool="pods",
        series='http_requests_total{code="200"} 5',
        target='{"__address__": "10.0.0.1:80", "__meta_scrape": "true", "team": "a"}',
    )
    assert status == 200
    data = body["data"]
    assert data["targetLabels"] == {
        "instance": "10.0.0.1:80",
        "job": "pods",
        "owner": "a",
        "team": "a",
    }
    assert data["state"] == "kept"
    assert [step["keep"] for step in data["steps"]] == [True]
    (main,) = data["destinations"]
    assert main["name"] == "main"
    assert main["externalLabelsAdded"] == {"cluster": "eu-1"}
    assert main["steps"][0]["rule"]["action"] == "labeldrop"
    assert main["receives"] == {
        "__name__": "http_requests_total",
        "cluster": "eu-1",
        "code": "200",
        "instance": "10.0.0.1:80",
        "job": "pods",
        "owner": "a",
    }
    status, body = await get(
        client, "/api/v1/series_relabel_steps", scrapePool="pods", series="go_goroutines 8"
    )
    assert status == 200
    assert body["data"]["state"] == "dropped"
    assert body["data"]["destinations"] == []


@pytest.mark.parametrize(
    ("params", "error"),
    [
        ({"series": "up"}, "no scrapePool parameter provided"),
        ({"scrapePool": "pods"}, "no series parameter provided"),
        ({"scrapePool": "pods", "series": 'up{a=~"x"}'}, "error parsing series: column 5: only"),
        ({"scrapePool": "pods", "series": "up", "target": "1"}, "error parsing target: expected"),
        ({"scrapePool": "nope", "series": "up"}, 'scrape pool "nope" not found'),
        (
            {"scrapePool": "pods", "series": "up", "target": '{"__address__": "h:1"}'},
            "the target is dropped by rule 1 of relabel_configs: no series",
        ),
    ],
)
async def test_series_steps_errors(
    client: TestClient[Any, Any], params: dict[str, str], error: str
) -> None:
    """Missing or bad parameters and targets without series are bad_data."""
    status, body = await get(client, "/api/v1/series_relabel_steps", **params)
    assert status == 400
    assert body["errorType"] == "bad_data"
    assert body["error"].startswith(error)


async def test_dropped_and_active_targets_explained_end_to_end(tmp_path: Path) -> None:
    """From the running agent's target lists to the steps: the verdict matches the lists.

    keep_dropped_targets: 1 keeps one of the two dropped targets; the count says two. The
    CLI's JSON for the same labels (``--no-defaults``) has the same steps as the API.
    """
    async with running_agent(CONFIG, tmp_path) as agent, aiohttp.ClientSession() as session:
        base = f"http://{agent.options.listen_address}"

        async def fetch(path: str, **params: str) -> Any:
            async with session.get(base + path, params=params) as response:
                assert response.status == 200
                return (await response.json())["data"]

        async def synced() -> bool:
            return bool((await fetch("/api/v1/targets", scrapePool="pods"))["activeTargets"])

        await eventually(synced)
        data = await fetch("/api/v1/targets", scrapePool="pods")
        assert data["droppedTargetCounts"] == {"pods": 2, "testpool": 1}
        (dropped,) = data["droppedTargets"]
        (active,) = data["activeTargets"]

        labels = json.dumps(dropped["discoveredLabels"])
        answer = await fetch("/api/v1/targets/relabel_steps", scrapePool="pods", labels=labels)
        assert [step["keep"] for step in answer["steps"]] == [False, False]
        assert answer["result"]["state"] == "dropped"

        out = io.StringIO()
        code = explain_main(
            "explain",
            ["target", "--job=pods", f"--labels={labels}", "--no-defaults", "-o", "json"],
            config_file=agent.options.config_file,
            out=out,
            err=io.StringIO(),
        )
        assert code == 0
        assert json.loads(out.getvalue()) == answer

        answer = await fetch(
            "/api/v1/targets/relabel_steps",
            scrapePool="pods",
            labels=json.dumps(active["discoveredLabels"]),
        )
        assert answer["result"]["state"] == "active"
        assert answer["result"]["labels"] == active["labels"]
        assert answer["result"]["scrapeUrl"] == active["scrapeUrl"]
