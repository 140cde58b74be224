"""Fuzz target of Kubernetes watch streams: line splitting, events, slim objects, roles.

``k8s_watch``: an input is ``@<resource>\\n`` and a watch body (JSON lines). The body is fed,
in chunks that cut lines anywhere, to the informer's stream reader (`Informer._stream`, with a
response whose ``content.readany`` hands out the chunks): it splits lines, decodes each with
orjson, applies ADDED/MODIFIED/DELETED/BOOKMARK/ERROR events and converts every object with
the resource's slim converter (`objects.SLIM`). A handler turns every stored object into its
role's target group (`roles`, `endpoints`). What the informer documents as the outcome of a
bad stream is `Restart` (reconnect: a line that is not JSON, an unknown event type, an error
event) or `Gone` (410: relist); anything else escaping is a crash. A handler's exception would
be swallowed and logged by the informer, so the handler here re-raises it after the stream.
Also run on every body: `wire.peek_continue` and `wire.status_error` (they must not raise),
and, when the body is one JSON document, what the informer does with a LIST page: either
`wire.list_problem` names what is wrong with it (the informer restarts) or every item gets
its store key and slim object.

Crashes found (objects or sections of another JSON type, a nested event type or Status
field) are fixed in ``collector.discovery.kubernetes``; each has its minimal input in
``tests/fixtures/fuzz/crashers/k8s_watch/``.

Edits: tree edits of one event (an object field of another type, a subtree elsewhere, a key
of another kind of object, a huge or deeply nested value), then the byte edits of `Mutator`
(partial lines, huge lines, odd unicode), and now and then another resource.

Prometheus counterpart: none (client-go's reflector has no fuzzer).
"""

from __future__ import annotations

import asyncio
import random
import zlib
from pathlib import Path
from typing import Any, cast

import aiohttp
import orjson
from prometheus_client import CollectorRegistry

from benchmarks.fuzzing.harness import Target
from benchmarks.fuzzing.mutate import Mutator
from benchmarks.fuzzing.trees import collect_keys, dump_json, expanded_size, mutate_tree
from collector.discovery.kubernetes.endpoints import endpoints_group, endpointslice_group
from collector.discovery.kubernetes.informer import Informer, InformerKey
from collector.discovery.kubernetes.metrics import KubernetesMetrics
from collector.discovery.kubernetes.objects import (
    SLIM,
    Endpoints,
    EndpointSlice,
    Ingress,
    Namespace,
    Node,
    Pod,
    Service,
    SlimObject,
    object_key,
)
from collector.discovery.kubernetes.retry import Gone, Restart
from collector.discovery.kubernetes.roles import (
    ingress_group,
    namespace_meta,
    node_group,
    pod_group,
    service_group,
)
from collector.discovery.kubernetes.wire import (
    RESOURCE_PATHS,
    list_problem,
    peek_continue,
    status_error,
)
from collector.kubernetes.connection import Connection, ConnectionSpec

__all__ = ["targets", "watch_seeds"]

FIXTURES = Path(__file__).resolve().parents[2] / "tests" / "fixtures" / "k8s"

_KIND_TO_RESOURCE = {
    "Node": "nodes",
    "Pod": "pods",
    "Service": "services",
    "Endpoints": "endpoints",
    "EndpointSlice": "endpointslices",
    "Ingress": "ingresses",
    "Namespace": "namespaces",
}


def _header(resource: str) -> bytes:
    return b"@" + resource.encode() + b"\n"


def split_input(data: bytes) -> tuple[str, bytes]:
    """(resource, watch body) of an input; ``pods`` when the header names no resource."""
    if data.startswith(b"@"):
        head, _, body = data.partition(b"\n")
        name = head[1:].decode("ascii", "replace")
        if name in RESOURCE_PATHS:
            return name, body
    return "pods", data


def _line(kind: str, obj: object) -> bytes:
    return orjson.dumps({"type": kind, "object": obj}) + b"\n"


def watch_seeds() -> list[bytes]:
    """One stream per fixture object (ADDED, MODIFIED, BOOKMARK, DELETED, an ERROR), the
    recorded pod watch, a namespace stream and three recorded LIST pages."""
    seeds: list[bytes] = []
    for path in sorted(FIXTURES.glob("*.json")):
        obj = orjson.loads(path.read_bytes())
        resource = _KIND_TO_RESOURCE[obj["kind"]]
        bookmark = {"kind": obj["kind"], "metadata": {"resourceVersion": "999"}}
        body = _line("ADDED", obj) + _line("MODIFIED", obj) + _line("BOOKMARK", bookmark)
        body += _line("DELETED", obj)
        seeds.append(_header(resource) + body)
    gone = {"kind": "Status", "code": 410, "message": "too old resource version"}
    seeds.append(
        _header("pods")
        + (FIXTURES / "wire-v1.20" / "watch-pods-shop-labelselector.raw.jsonl").read_bytes()
    )
    seeds.append(_header("pods") + _line("ERROR", gone))
    ns = {"metadata": {"name": "shop", "labels": {"team": "a"}, "annotations": {"x": ""}}}
    seeds.append(_header("namespaces") + _line("ADDED", ns))
    # LIST pages recorded from kube-apiserver v1.20 (one JSON document: `_check_list`).
    for resource, name in (
        ("pods", "podlist-shop"),
        ("nodes", "nodelist"),
        ("endpoints", "endpointslist-shop"),
    ):
        page = orjson.loads((FIXTURES / "wire-v1.20" / f"{name}.raw.json").read_bytes())
        seeds.append(_header(resource) + orjson.dumps(page))
    return seeds


# ----------------------------------------------------------------------------- edits
def _tree_edit(keys: list[str], *, max_size: int) -> Any:
    def edit(rng: random.Random, data: bytes) -> bytes:
        resource, body = split_input(data)
        lines = [line for line in body.split(b"\n") if line.strip()]
        if not lines:
            return data
        k = rng.randrange(len(lines))
        try:
            event = orjson.loads(lines[k])
        except orjson.JSONDecodeError:
            return data
        if expanded_size(event, cap=20_000) >= 20_000:
            return data  # a huge object: the text edits handle those
        event = mutate_tree(rng, event, keys)
        # Not orjson: dump_json writes what orjson refuses to (NaN, integers past 64 bits).
        lines[k] = dump_json(event, ascii_only=rng.random() < 0.1, limit=max_size)
        return _header(resource) + b"\n".join(lines) + b"\n"

    return edit


def _other_resource(rng: random.Random, data: bytes) -> bytes:
    _, body = split_input(data)
    return _header(rng.choice(sorted(RESOURCE_PATHS))) + body


# ----------------------------------------------------------------------------- the check
class _Content:
    """``resp.content`` of a watch: the chunks, then EOF (``b""``)."""

    def __init__(self, chunks: list[bytes]) -> None:
        self._chunks = chunks[::-1]

    async def readany(self) -> bytes:
        """The next chunk, ``b""`` at the end."""
        return self._chunks.pop() if self._chunks else b""


class _Response:
    def __init__(self, chunks: list[bytes]) -> None:
        self.content = _Content(chunks)


def _chunks(body: bytes) -> list[bytes]:
    """Cut points drawn from the body's CRC: the same input always arrives the same way."""
    rng = random.Random(zlib.crc32(body))
    chunks = []
    pos = 0
    while pos < len(body):
        step = rng.choice((1, 7, 100, 4096, 65536))
        chunks.append(body[pos : pos + step])
        pos += step
    return chunks


def _group(obj: SlimObject) -> None:
    """The role's target group of a slim object (what the discoverer would build)."""
    no_pod = lambda _ns, _name: None  # noqa: E731  # a lookup that finds nothing
    if isinstance(obj, Pod):
        pod_group(obj, attach_node=True)
    elif isinstance(obj, Node):
        node_group(obj)
    elif isinstance(obj, Service):
        service_group(obj)
    elif isinstance(obj, Ingress):
        ingress_group(obj)
    elif isinstance(obj, Endpoints):
        endpoints_group(obj, get_pod=no_pod, attach_node=True)
    elif isinstance(obj, EndpointSlice):
        endpointslice_group(obj, get_pod=no_pod, attach_node=True)
    elif isinstance(obj, Namespace):
        namespace_meta({}, obj)


def _check_list(resource: str, body: bytes) -> None:
    """The body as a LIST page: refused by `list_problem`, or every item keyed and slimmed."""
    try:
        page = orjson.loads(body)
    except orjson.JSONDecodeError:
        return
    if list_problem(page):
        return
    for obj in page.get("items") or ():
        object_key(obj)
        _group(SLIM[resource](obj))


def targets(*, max_size: int) -> list[Target]:
    """``k8s_watch``."""
    seeds = watch_seeds()
    trees = [
        orjson.loads(line) for seed in seeds for line in split_input(seed)[1].split(b"\n") if line
    ]
    keys = collect_keys(trees)
    mutator = Mutator(
        seeds,
        tokens=[b'{"type":"ADDED","object":', b'"metadata":', b"null", b"[]", b"{}", b'"', b"\n"],
        nest=[(b"[", b"]"), (b'{"a":', b"}")],
        extra=[
            _tree_edit(keys, max_size=max_size),
            _tree_edit(keys, max_size=max_size),
            _other_resource,
        ],
        extra_weight=6.0,
        max_size=max_size,
    )
    loop = asyncio.new_event_loop()
    connection = Connection(ConnectionSpec(api_server="http://fuzz.invalid"))
    registry = CollectorRegistry(auto_describe=False)
    metrics = KubernetesMetrics.for_registry(registry)

    def check(data: bytes) -> None:
        """The informer's stream reader over the body: only `Restart`/`Gone` may escape."""
        resource, body = split_input(data)
        peek_continue(body)
        status_error(500, body)
        _check_list(resource, body)
        key = InformerKey(connection=connection.spec, resource=resource)
        informer = Informer(key, connection, metrics=metrics)
        failures: list[Exception] = []

        def handler(kind: str, _key: str, _old: object, new: SlimObject | None) -> None:
            if new is not None and not failures:
                try:
                    _group(new)
                except Exception as exc:  # re-raised below: the informer would log it only
                    failures.append(exc)

        informer.add_handler(handler)
        response = cast("aiohttp.ClientResponse", _Response(_chunks(body)))
        try:
            loop.run_until_complete(informer._stream(response, 3600.0))
        except (Restart, Gone):
            pass
        if failures:
            raise failures[0]

    return [
        Target(
            name="k8s_watch",
            summary="informer watch stream + slim objects + role groups; Restart/Gone only",
            check=check,
            mutate=mutator.mutate,
            seeds=seeds,
            memory_factor=64,
            close=loop.close,
        )
    ]
