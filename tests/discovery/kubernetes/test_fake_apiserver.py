"""The fake API server answers like the real v1.20.2 captures in tests/fixtures/k8s/wire-v1.20."""

from __future__ import annotations

import base64
import json
import re
from typing import Any

import aiohttp
import orjson
import pytest

from tests.discovery.kubernetes.conftest import FIXTURES, sample
from tests.discovery.kubernetes.fake_apiserver import (
    FakeAPIServer,
    label_matches,
    parse_label_selector,
)

pytestmark = pytest.mark.looptime  # watch timeouts pass in virtual time

WIRE = FIXTURES / "wire-v1.20"


def transcript(name: str) -> dict[str, tuple[int, dict[str, str], bytes]]:
    """Parse a capture transcript: title -> (status, headers, body)."""
    out: dict[str, tuple[int, dict[str, str], bytes]] = {}
    for section in (WIRE / name).read_text().split("### ")[1:]:
        title, _, rest = section.partition("\n")
        lines = rest.split("\n")
        start = next((i for i, line in enumerate(lines) if line.startswith("HTTP/1.1 ")), None)
        if start is None:
            continue
        status = int(lines[start].split()[1])
        headers: dict[str, str] = {}
        i = start + 1
        while i < len(lines) and lines[i].strip():
            k, _, v = lines[i].partition(": ")
            headers[k] = v
            i += 1
        body = next((line for line in lines[i:] if line.startswith("{")), "")
        out[title.strip()] = (status, headers, body.encode())
    return out


ERRORS = transcript("errors-transcript.txt")
CONTINUE = transcript("watch-410-continue-transcript.txt")


async def get(
    api: FakeAPIServer, path: str, *, token: str | None = None, **params: str
) -> tuple[int, dict[str, str], bytes]:
    """One GET against the fake."""
    headers = {"Authorization": f"Bearer {token or api.token}"}
    async with (
        aiohttp.ClientSession() as s,
        s.get(api.url + path, params=params, headers=headers) as r,
    ):
        return r.status, dict(r.headers), await r.read()


def wire_items(name: str) -> list[dict[str, Any]]:
    """Items of a captured list body."""
    items: list[dict[str, Any]] = json.loads((WIRE / name).read_text())["items"]
    return items


async def test_list_shape_matches_capture(api: FakeAPIServer) -> None:
    """A list body has the capture's key order, no item kind/apiVersion, list RV >= item RVs."""
    for item in wire_items("podlist-shop.raw.json"):
        api.put("pods", item)
    status, headers, body = await get(api, "/api/v1/namespaces/shop/pods")
    captured = orjson.loads((WIRE / "podlist-shop.raw.json").read_bytes())
    ours = orjson.loads(body)
    assert status == 200
    assert headers["Content-Type"] == "application/json"
    assert headers["Cache-Control"] == "no-cache, private"
    assert list(ours) == list(captured) == ["kind", "apiVersion", "metadata", "items"]
    assert ours["kind"] == captured["kind"]
    assert ours["apiVersion"] == captured["apiVersion"]
    assert list(ours["metadata"]) == list(captured["metadata"]) == ["resourceVersion"]
    assert len(ours["items"]) == len(captured["items"])
    for mine, theirs in zip(ours["items"], captured["items"], strict=True):
        assert "kind" not in mine
        assert "apiVersion" not in mine
        assert list(mine) == list(theirs)
        mine["metadata"].pop("resourceVersion")
        theirs["metadata"].pop("resourceVersion")
        assert mine == theirs
    list_rv = int(ours["metadata"]["resourceVersion"])
    assert all(
        int(i["metadata"]["resourceVersion"]) <= list_rv for i in orjson.loads(body)["items"]
    )
    assert b"\n" not in body


async def test_empty_namespace_list_matches_capture(api: FakeAPIServer) -> None:
    """An unknown namespace lists as 200 with ``items: []`` exactly like the capture."""
    api.rv = 220
    status, _h, body = await get(api, "/api/v1/namespaces/nope/pods")
    cap_status, _ch, cap_body = ERRORS["404 unknown namespace list (empty list expected)"]
    assert (status, body) == (cap_status, cap_body)


@pytest.mark.parametrize(
    ("title", "path", "params", "token"),
    [
        ("401 bad token", "/api/v1/pods", {}, "wrong"),
        ("403 prom user cluster-scope list pods", "/api/v1/pods", {}, "promtoken"),
        (
            "403 prom user namespaced watch endpoints",
            "/api/v1/namespaces/shop/endpoints",
            {"watch": "1"},
            "promtoken",
        ),
        (
            "403 prom user discovery group",
            "/apis/networking.k8s.io/v1/ingresses",
            {},
            "promtoken",
        ),
        (
            "400 unsupported field selector on pods",
            "/api/v1/pods",
            {"fieldSelector": "spec.foo=x"},
            None,
        ),
        (
            "400 unsupported field selector on services",
            "/api/v1/services",
            {"fieldSelector": "spec.clusterIP=None"},
            None,
        ),
        ("400 bad label selector", "/api/v1/pods", {"labelSelector": "app in (a"}, None),
        (
            "400 bad field selector syntax",
            "/api/v1/pods",
            {"fieldSelector": "spec.nodeName"},
            None,
        ),
        (
            "422 resourceVersionMatch w/o resourceVersion",
            "/api/v1/pods",
            {"resourceVersionMatch": "NotOlderThan"},
            None,
        ),
        (
            "422 resourceVersionMatch with watch",
            "/api/v1/pods",
            {"watch": "true", "resourceVersion": "1", "resourceVersionMatch": "NotOlderThan"},
            None,
        ),
        ("404 unknown resource", "/api/v1/foos", {}, None),
        (
            "404 unknown group version (discovery v1 not in 1.20)",
            "/apis/discovery.k8s.io/v2/endpointslices",
            {},
            None,
        ),
    ],
)
async def test_error_bodies_match_capture(
    api: FakeAPIServer, title: str, path: str, params: dict[str, str], token: str | None
) -> None:
    """Error statuses and bodies are byte-identical to the real server's."""
    api.tokens["promtoken"] = "prom"
    status, headers, body = await get(api, path, token=token, **params)
    cap_status, cap_headers, cap_body = ERRORS[title]
    assert status == cap_status
    assert body == cap_body
    assert headers["Content-Type"] == cap_headers["Content-Type"]
    assert headers.get("X-Content-Type-Options") == cap_headers.get("X-Content-Type-Options")


async def test_nodes_under_namespace_is_404(api: FakeAPIServer) -> None:
    """Cluster-scoped nodes are not served under /namespaces/x/."""
    status, _h, body = await get(api, "/api/v1/namespaces/x/nodes")
    assert (status, body) == ERRORS["404 unknown resource"][::2]


async def test_pagination_tokens_are_go_shaped(api: FakeAPIServer) -> None:
    """limit/continue: Go-shaped base64 token, remainingItemCount only without selectors."""
    api.put("pods", sample("pod-node-exporter-daemonset.json"))
    for item in wire_items("podlist-shop.raw.json"):
        api.put("pods", item)
    status, _h, body = await get(api, "/api/v1/pods", limit="1")
    page = orjson.loads(body)
    rv = int(page["metadata"]["resourceVersion"])
    token = page["metadata"]["continue"]
    assert status == 200
    assert len(page["items"]) == 1
    assert page["metadata"]["remainingItemCount"] == 2
    decoded = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    assert decoded == (
        b'{"v":"meta.k8s.io/v1","rv":%d,"start":"monitoring/node-exporter-8fz4q\\u0000"}' % rv
    )
    _s, _h, body2 = await get(api, "/api/v1/pods", limit="1", labelSelector="pod-template-hash")
    assert "remainingItemCount" not in orjson.loads(body2)["metadata"]
    names = [page["items"][0]["metadata"]["name"]]
    while token:
        _s, _h, more = await get(api, "/api/v1/pods", limit="1", **{"continue": token})
        chunk = orjson.loads(more)
        assert chunk["metadata"]["resourceVersion"] == str(rv)
        names += [i["metadata"]["name"] for i in chunk["items"]]
        token = chunk["metadata"].get("continue", "")
    assert len(names) == 3


async def test_expired_continue_matches_capture(api: FakeAPIServer) -> None:
    """A continue token older than the compaction gets the captured 410 with rv -1 token."""
    api.put("pods", sample("pod-node-exporter-daemonset.json"))
    for item in wire_items("podlist-shop.raw.json"):
        api.put("pods", item)
    _s, _h, body = await get(api, "/api/v1/pods", limit="1")
    token = orjson.loads(body)["metadata"]["continue"]
    api.put("services", sample("service-web.json"))
    api.compact()
    status, _h, body = await get(api, "/api/v1/pods", limit="1", **{"continue": token})
    cap_status, _ch, cap_body = CONTINUE["list limit=1 then compact then continue"]
    assert status == cap_status == 410
    assert body == cap_body


async def test_exact_rv_after_compaction_and_future_rv(api: FakeAPIServer) -> None:
    """Exact on a compacted RV is the captured 410; a future RV is the captured 504."""
    api.put("pods", sample("pod-web-running.json"))
    old = api.rv
    api.put("pods", sample("pod-report-worker-pending.json"))
    api.compact()
    status, _h, body = await get(
        api, "/api/v1/pods", resourceVersion=str(old), resourceVersionMatch="Exact"
    )
    assert (status, body) == CONTINUE[
        "list RV=<listRV> resourceVersionMatch=Exact after compaction"
    ][::2]
    status, _h, body = await get(api, "/api/v1/pods", resourceVersion=str(old))
    assert status == 200
    api.rv = 235
    status, headers, body = await get(api, "/api/v1/pods", resourceVersion="999999")
    cap = CONTINUE["list RV=999999 (future, legacy semantics)"]
    assert (status, body) == (cap[0], cap[2])
    assert headers["Retry-After"] == "1"


async def test_rv0_list_ignores_limit_like_v120(api: FakeAPIServer) -> None:
    """resourceVersion=0 with a limit is served whole, without continue (v1.20 cache)."""
    for item in wire_items("podlist-shop.raw.json"):
        api.put("pods", item)
    _s, _h, body = await get(api, "/api/v1/pods", limit="1", resourceVersion="0")
    page = orjson.loads(body)
    assert len(page["items"]) == 2
    assert "continue" not in page["metadata"]


async def test_watch_too_old_rv_is_error_event_like_capture(api: FakeAPIServer) -> None:
    """Watching from an RV before the window gives 200 + the captured ERROR 410 line."""
    api.rv = 202
    api.put("pods", sample("pod-web-running.json"))
    api.compact()
    status, headers, body = await get(
        api, "/api/v1/pods", watch="true", resourceVersion="1", timeoutSeconds="1"
    )
    cap_status, cap_headers, cap_body = CONTINUE["watch RV=1 (older than watch cache window)"]
    assert status == cap_status == 200
    assert headers["Transfer-Encoding"] == cap_headers["Transfer-Encoding"] == "chunked"
    assert body == cap_body + b"\n"


async def test_watch_selector_transitions_like_capture(api: FakeAPIServer) -> None:
    """A label-selected watch sees the captured MODIFIED/DELETED/ADDED/MODIFIED/DELETED/BOOKMARK."""
    captured = [
        json.loads(line)
        for line in (WIRE / "watch-pods-shop-labelselector.raw.jsonl").read_text().splitlines()
    ]
    pod = sample("pod-web-running.json")
    pod["metadata"]["labels"]["tier"] = "frontend"
    api.put("pods", pod)
    since = api.rv

    def mutate(change: Any) -> None:
        change(pod)
        api.put("pods", pod)

    mutate(lambda p: p["metadata"]["annotations"].update({"x": "1"}))
    mutate(lambda p: p["metadata"]["labels"].update({"tier": "backend"}))
    mutate(lambda p: p["metadata"]["labels"].update({"tier": "frontend"}))
    mutate(lambda p: p["metadata"].update({"deletionTimestamp": "2026-11-26T17:16:30Z"}))
    api.delete("pods", "web-7d4b9c8f6d-x2k9p", "shop")
    api.put("services", sample("service-web.json"))  # moves the global RV for the bookmark
    status, _h, body = await get(
        api,
        "/api/v1/namespaces/shop/pods",
        watch="True",
        resourceVersion=str(since),
        allowWatchBookmarks="True",
        labelSelector="tier=frontend",
        timeoutSeconds="5",
    )
    events = [orjson.loads(line) for line in body.splitlines()]
    assert status == 200
    assert [e["type"] for e in events] == [e["type"] for e in captured]
    assert all(list(e) == ["type", "object"] for e in events)
    assert all(list(e["object"])[:2] == ["kind", "apiVersion"] for e in events)
    left = events[1]["object"]
    assert left["metadata"]["labels"]["tier"] == "frontend"  # previous content ...
    assert left["metadata"]["resourceVersion"] == str(since + 2)  # ... with the new RV
    bookmark, cap_bookmark = events[-1]["object"], captured[-1]["object"]
    bookmark["metadata"]["resourceVersion"] = cap_bookmark["metadata"]["resourceVersion"]
    assert bookmark == cap_bookmark


async def test_watch_without_rv_replays_added(api: FakeAPIServer) -> None:
    """A watch without resourceVersion starts with synthetic ADDED for matching objects."""
    api.put("pods", sample("pod-web-running.json"))
    api.put("pods", sample("pod-node-exporter-daemonset.json"))
    _s, _h, body = await get(
        api,
        "/api/v1/pods",
        watch="1",
        timeoutSeconds="1",
        fieldSelector="metadata.namespace=monitoring,status.phase=Running",
    )
    events = [orjson.loads(line) for line in body.splitlines()]
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in events] == [
        ("ADDED", "node-exporter-8fz4q")
    ]


@pytest.mark.parametrize("value", ["1", "t", "T", "TRUE", "true", "True"])
async def test_watch_bool_parse_true(api: FakeAPIServer, value: str) -> None:
    """watch accepts every spelling Go's ParseBool reads as true."""
    status, headers, _b = await get(api, "/api/v1/pods", watch=value, timeoutSeconds="1")
    assert status == 200
    assert headers["Transfer-Encoding"] == "chunked"


async def test_watch_bool_parse_invalid(api: FakeAPIServer) -> None:
    """An invalid boolean is a 400 Status."""
    status, _h, body = await get(api, "/api/v1/pods", watch="yes")
    assert status == 400
    assert orjson.loads(body)["reason"] == "BadRequest"


@pytest.mark.parametrize(
    ("selector", "labels", "expected"),
    [
        ("app=web", {"app": "web"}, True),
        ("app==web", {"app": "db"}, False),
        ("app!=web", {}, True),
        ("tier in (a,b)", {"tier": "b"}, True),
        ("tier notin (a,b)", {}, True),
        ("tier notin (a,b)", {"tier": "a"}, False),
        ("app", {"app": ""}, True),
        ("!app", {"app": "x"}, False),
        ("app=web, tier in (a)", {"app": "web", "tier": "a"}, True),
        ("gen>3", {"gen": "4"}, True),
        ("app=", {"app": ""}, True),
    ],
)
def test_label_selector_semantics(selector: str, labels: dict[str, str], expected: bool) -> None:
    """Label selectors follow labels.Parse semantics (!= and notin match a missing key)."""
    assert label_matches(parse_label_selector(selector), labels) is expected


async def test_field_selector_node_name(api: FakeAPIServer) -> None:
    """spec.nodeName filters pods; a missing field compares as ""."""
    api.put("pods", sample("pod-web-running.json"))
    pending = sample("pod-report-worker-pending.json")
    del pending["spec"]["nodeName"]
    api.put("pods", pending)
    _s, _h, body = await get(api, "/api/v1/pods", fieldSelector="spec.nodeName=")
    names = [i["metadata"]["name"] for i in orjson.loads(body)["items"]]
    assert names == ["report-worker-5f9c7b6d48-qwz7t"]
    _s, _h, body = await get(
        api, "/api/v1/pods", fieldSelector="spec.nodeName!=,metadata.name=web-7d4b9c8f6d-x2k9p"
    )
    assert len(orjson.loads(body)["items"]) == 1
    assert re.fullmatch(r"\d+", orjson.loads(body)["metadata"]["resourceVersion"])
