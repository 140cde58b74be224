"""A faithful in-process fake of kube-apiserver's list/watch surface (kubernetes-api.md §B.10).

What it reproduces, each checked against the v1.20.2 captures in ``tests/fixtures/k8s/wire-v1.20``
by ``test_fake_apiserver.py``:

- routes of §B.1 (list and watch on one path, namespaced and all-namespace forms; 404 Status for
  anything else, including ``/api/v1/namespaces/x/nodes``);
- one global resourceVersion counter shared by every resource; every write stamps the object;
- list: compact JSON, items without ``kind``/``apiVersion``, ``items: []`` never null,
  ``limit``/``continue`` with Go-shaped opaque tokens, ``remainingItemCount`` only without
  selectors, consistent pages from a snapshot, 410 for a continue token older than the last
  compaction (with the "inconsistent" token), 410 for ``Exact`` on a compacted RV, 504 for future
  RVs, 422 ListOptions validation, and ``resourceVersion=0`` served "from the cache" with the
  limit ignored (v1.20) unless ``paginate_from_cache`` is set;
- watch: headers flushed at once, ND-JSON events with ``kind``/``apiVersion``, replay from an RV,
  synthetic ADDED without one, selector transitions (DELETED with the old content and the new RV,
  ADDED), ``ERROR`` 410 *event* for an RV older than the window, RV-gated bookmarks,
  ``timeoutSeconds`` honoured exactly (server default when absent or 0);
- auth: bearer tokens, 401 before 403, RBAC grants per (user, verb, resource, namespace) with
  the exact Forbidden messages;
- label selectors (``=, ==, !=, in, notin, exists, !, >, <``) and field selectors (``=, ==, !=``
  on the keys each resource supports) with the real error messages;
- booleans parsed like Go's ``strconv.ParseBool`` (``watch=True`` works, ``watch=yes`` is 400).

Fault knobs (``fail_next_list``, ``fail_next_watch``) inject HTTP errors, hangs, abrupt closes,
ERROR events and raw lines, so the informer's failure paths are testable without a cluster.

The fake is an aiohttp app on a loopback port; tests get its ``url`` and a bearer ``token`` so the
same informer tests could target a real kube-apiserver (kubernetes-api.md §A) by swapping the
fixture.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import re
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import web

__all__ = ["RESOURCES", "FakeAPIServer", "Fault", "Recorded", "Resource"]

Obj = dict[str, Any]


@dataclass(frozen=True)
class Resource:
    """One served resource type."""

    name: str
    kind: str
    group: str
    version: str
    namespaced: bool
    fields: tuple[str, ...]
    """Supported field selector keys."""
    field_error_generic: bool
    """True: ``"x" is not a known field selector`` style; False: ``field label not supported``."""

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def list_kind(self) -> str:
        return self.kind + "List"


_GENERIC = ("metadata.name", "metadata.namespace")
RESOURCES: dict[str, Resource] = {
    r.name: r
    for r in [
        Resource("nodes", "Node", "", "v1", False, ("metadata.name", "spec.unschedulable"), False),
        Resource(
            "namespaces", "Namespace", "", "v1", False, ("metadata.name", "status.phase"), False
        ),
        Resource(
            "pods",
            "Pod",
            "",
            "v1",
            True,
            (
                "metadata.name",
                "metadata.namespace",
                "spec.nodeName",
                "spec.restartPolicy",
                "spec.schedulerName",
                "spec.serviceAccountName",
                "status.phase",
                "status.podIP",
                "status.nominatedNodeName",
            ),
            False,
        ),
        Resource("services", "Service", "", "v1", True, _GENERIC, True),
        Resource("endpoints", "Endpoints", "", "v1", True, _GENERIC, True),
        Resource("endpointslices", "EndpointSlice", "discovery.k8s.io", "v1", True, _GENERIC, True),
        Resource("ingresses", "Ingress", "networking.k8s.io", "v1", True, _GENERIC, True),
    ]
}

_BOOKMARK_BODY: dict[str, Obj] = {
    "Pod": {"spec": {"containers": None}, "status": {}},
    "Node": {"spec": {}, "status": {"daemonEndpoints": {"kubeletEndpoint": {"Port": 0}}}},
    "Namespace": {"spec": {}, "status": {}},
    "Service": {"spec": {}, "status": {"loadBalancer": {}}},
    "Endpoints": {},
    "EndpointSlice": {"addressType": "", "endpoints": None},
    "Ingress": {"spec": {}, "status": {"loadBalancer": {}}},
}


# ------------------------------------------------------------------------------------ statuses


def status_body(
    code: int, reason: str, message: str, *, details: Obj | None = None, metadata: Obj | None = None
) -> Obj:
    """A ``metav1.Status`` in the server's key order."""
    body: Obj = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": metadata or {},
        "status": "Failure",
        "message": message,
        "reason": reason,
    }
    if details is not None:
        body["details"] = details
    body["code"] = code
    return body


UNAUTHORIZED = status_body(401, "Unauthorized", "Unauthorized")
NOT_FOUND = status_body(
    404, "NotFound", "the server could not find the requested resource", details={}
)
_REASONS = {
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    410: "Gone",
    422: "Unprocessable Entity",
    429: "Too Many Requests",
    500: "Internal Server Error",
    503: "Service Unavailable",
    504: "Gateway Timeout",
}


def _json_response(status: int, body: Obj | bytes, headers: Mapping[str, str] = {}) -> web.Response:
    data = body if isinstance(body, bytes) else orjson.dumps(body)
    return web.Response(
        status=status,
        body=data,
        headers={
            "Cache-Control": "no-cache, private",
            "Content-Type": "application/json",
            **headers,
        },
    )


class _StatusError(Exception):
    def __init__(self, code: int, body: Obj, headers: Mapping[str, str] = {}) -> None:
        self.code = code
        self.body = body
        self.headers = dict(headers)


def _bad_request(message: str) -> _StatusError:
    return _StatusError(400, status_body(400, "BadRequest", message))


def _invalid_list_options(message: str, field_name: str) -> _StatusError:
    return _StatusError(
        422,
        status_body(
            422,
            "Invalid",
            f'ListOptions.meta.k8s.io "" is invalid: {field_name}: Forbidden: {message}',
            details={
                "group": "meta.k8s.io",
                "kind": "ListOptions",
                "causes": [
                    {
                        "reason": "FieldValueForbidden",
                        "message": f"Forbidden: {message}",
                        "field": field_name,
                    }
                ],
            },
        ),
    )


def parse_bool(value: str) -> bool:
    """Go's ``strconv.ParseBool``."""
    if value in ("1", "t", "T", "TRUE", "true", "True"):
        return True
    if value in ("0", "f", "F", "FALSE", "false", "False"):
        return False
    raise _bad_request(f'strconv.ParseBool: parsing "{value}": invalid syntax')


# ----------------------------------------------------------------------------- label selectors

_SPECIAL = ("!=", "==", "=", "!", "(", ")", ",", ">", "<")


def _lex(text: str) -> list[str]:
    tokens: list[str] = []
    i = 0
    while i < len(text):
        ch = text[i]
        if ch.isspace():
            i += 1
            continue
        for sym in _SPECIAL:
            if text.startswith(sym, i):
                tokens.append(sym)
                i += len(sym)
                break
        else:
            j = i
            while j < len(text) and not text[j].isspace() and text[j] not in "!=(),<>":
                j += 1
            tokens.append(text[i:j])
            i = j
    return tokens


Requirement = tuple[str, str, tuple[str, ...]]
"""``(key, op, values)``; op in exists, !, =, !=, in, notin, >, <."""

_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")


def parse_label_selector(text: str) -> list[Requirement]:
    """``labels.Parse``: comma-separated requirements; raises a 400 with the real message."""
    tokens = _lex(text)
    reqs: list[Requirement] = []
    pos = 0

    def peek() -> str:
        return tokens[pos] if pos < len(tokens) else ""

    def fail(found: str, expected: str) -> _StatusError:
        return _bad_request(f"unable to parse requirement: found '{found}', expected: {expected}")

    def ident(tok: str) -> bool:
        return tok not in _SPECIAL and tok != ""

    while pos < len(tokens):
        negate = False
        if peek() == "!":
            negate = True
            pos += 1
        key = peek()
        if not ident(key):
            raise fail(key, "identifier")
        pos += 1
        if negate:
            reqs.append((key, "!", ()))
        else:
            op = peek()
            if op in ("", ","):
                reqs.append((key, "exists", ()))
            elif op in ("=", "==", "!="):
                pos += 1
                value = peek()
                if ident(value) and value not in ("in", "notin"):
                    pos += 1
                elif value in ("", ","):
                    value = ""
                else:
                    raise fail(value, "identifier")
                if not _LABEL_VALUE.match(value):
                    raise _bad_request(
                        f'unable to parse requirement: invalid label value: "{value}"'
                    )
                reqs.append((key, "!=" if op == "!=" else "=", (value,)))
            elif op in ("in", "notin"):
                pos += 1
                if peek() != "(":
                    raise fail(peek(), "'('")
                pos += 1
                values: list[str] = []
                while True:
                    tok = peek()
                    if tok == ")":
                        pos += 1
                        break
                    if ident(tok):
                        values.append(tok)
                        pos += 1
                        tok = peek()
                    elif tok == ",":
                        values.append("")
                    else:
                        raise fail(tok, "',' or ')'")
                    if tok == ",":
                        pos += 1
                        continue
                    if tok == ")":
                        continue
                    raise fail(tok, "',' or ')'")
                reqs.append((key, op, tuple(values)))
            elif op in (">", "<"):
                pos += 1
                value = peek()
                if not value.isdigit():
                    raise _bad_request(
                        "unable to parse requirement: for 'Gt', 'Lt' operators, the value must "
                        "be an integer"
                    )
                pos += 1
                reqs.append((key, op, (value,)))
            else:
                raise fail(op, "'=', '!=', '==', 'in', notin'")
        if pos < len(tokens):
            if peek() != ",":
                raise fail(peek(), "','")
            pos += 1
            if pos == len(tokens):
                raise fail("", "identifier")
    return reqs


def label_matches(reqs: Iterable[Requirement], labels: Mapping[str, str]) -> bool:
    """Whether a label map satisfies every requirement."""
    for key, op, values in reqs:
        has = key in labels
        value = labels.get(key, "")
        if op == "exists":
            ok = has
        elif op == "!":
            ok = not has
        elif op == "=":
            ok = has and value == values[0]
        elif op == "!=":
            ok = not has or value != values[0]
        elif op == "in":
            ok = has and value in values
        elif op == "notin":
            ok = not has or value not in values
        else:
            n = int(values[0])
            ok = (
                has
                and value.lstrip("-").isdigit()
                and (int(value) > n if op == ">" else int(value) < n)
            )
        if not ok:
            return False
    return True


# ----------------------------------------------------------------------------- field selectors

FieldReq = tuple[str, bool, str]
"""``(key, equal, value)``."""


def _split_unescaped(text: str, sep: str) -> list[str]:
    parts, cur, i = [], [], 0
    while i < len(text):
        ch = text[i]
        if ch == "\\" and i + 1 < len(text):
            cur.append(text[i : i + 2])
            i += 2
            continue
        if ch == sep:
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
        i += 1
    parts.append("".join(cur))
    return parts


def _unescape(value: str) -> str:
    return re.sub(r"\\(.)", r"\1", value)


def parse_field_selector(text: str, resource: Resource) -> list[FieldReq]:
    """``fields.ParseSelector`` plus the resource's supported-key check."""
    if not text:
        return []
    reqs: list[FieldReq] = []
    for term in _split_unescaped(text, ","):
        for op in ("!=", "==", "="):
            idx = term.find(op)
            if idx > 0:
                reqs.append((term[:idx], op != "!=", _unescape(term[idx + len(op) :])))
                break
        else:
            raise _bad_request(f"invalid selector: '{text}'; can't understand '{term}'")
    for key, _eq, _v in reqs:
        if key not in resource.fields:
            if resource.field_error_generic:
                only = ", ".join(f'"{f}"' for f in resource.fields)
                raise _bad_request(f'"{key}" is not a known field selector: only {only}')
            raise _bad_request(f"field label not supported: {key}")
    return reqs


def field_value(obj: Obj, key: str) -> str:
    """The value a field selector compares, ``""`` when the field is missing."""
    if key == "status.podIP":
        ips = (obj.get("status") or {}).get("podIPs") or []
        if ips:
            return str(ips[0].get("ip", ""))
        return str((obj.get("status") or {}).get("podIP", ""))
    if key == "spec.unschedulable":
        return "true" if (obj.get("spec") or {}).get("unschedulable") else "false"
    cur: Any = obj
    for part in key.split("."):
        cur = cur.get(part) if isinstance(cur, dict) else None
    return cur if isinstance(cur, str) else ""


def field_matches(reqs: Iterable[FieldReq], obj: Obj) -> bool:
    """Whether an object satisfies every field requirement."""
    return all((field_value(obj, k) == v) == eq for k, eq, v in reqs)


# ------------------------------------------------------------------------------------ faults


@dataclass
class Fault:
    """One injected misbehaviour for the next matching request.

    ``kind``:
    - ``status``: answer HTTP ``code`` with ``body`` (a Status by default) and ``headers``.
    - ``hang``: (watch) flush headers, then send nothing until the client goes away.
    - ``close``: (watch) send ``after`` events (replay or live), then abort the connection.
    - ``error_event``: (watch) send an ERROR event with ``code`` and end the stream.
    - ``lines``: (watch) write the raw ``lines`` first, then behave normally.
    """

    kind: str
    code: int = 500
    body: Obj | None = None
    headers: dict[str, str] = field(default_factory=dict)
    after: int = 0
    lines: tuple[bytes, ...] = ()


@dataclass(frozen=True)
class Recorded:
    """One request the fake served."""

    method: str
    path: str
    query: dict[str, str]
    user: str

    @property
    def watch(self) -> bool:
        return self.query.get("watch", "") in ("1", "t", "T", "TRUE", "true", "True")


@dataclass
class _Event:
    rv: int
    type: str
    old: Obj | None
    new: Obj | None


@dataclass(eq=False)
class _Watcher:
    resource: Resource
    namespace: str
    labels: list[Requirement]
    fields: list[FieldReq]
    queue: asyncio.Queue[_Event]
    request: web.Request | None = None


# ------------------------------------------------------------------------------------ server


class FakeAPIServer:
    """The fake API server; use ``async with FakeAPIServer() as api``."""

    def __init__(
        self,
        *,
        tokens: Mapping[str, str] | None = None,
        admins: Iterable[str] = ("admin",),
        paginate_from_cache: bool = False,
        watch_window: int = 10_000,
        default_watch_timeout: float = 1800.0,
        bookmarks: bool = True,
        bookmark_interval: float = 60.0,
        future_rv_delay: float = 0.0,
        start_rv: int = 100,
        timeout_scale: float = 1.0,
    ) -> None:
        self.tokens: dict[str, str] = dict(
            tokens if tokens is not None else {"admintoken": "admin"}
        )
        """Bearer token -> user name."""
        self.admins: set[str] = set(admins)
        """Users allowed everything; others need `grant`."""
        self.grants: set[tuple[str, str, str, str]] = set()
        """``(user, verb, resource, namespace)``; ``*`` matches anything, ``""`` = cluster scope."""
        self.paginate_from_cache = paginate_from_cache
        self.watch_window = watch_window
        self.default_watch_timeout = default_watch_timeout
        self.bookmarks = bookmarks
        self.bookmark_interval = bookmark_interval
        self.future_rv_delay = future_rv_delay
        self.rv = start_rv
        self.timeout_scale = timeout_scale
        """Multiplies every watch timeout (a test knob: 0.001 turns 300 s into 0.3 s)."""
        self.compacted_rv = 0
        self.objects: dict[str, dict[str, Obj]] = {name: {} for name in RESOURCES}
        self.history: dict[str, deque[_Event]] = {
            name: deque(maxlen=watch_window) for name in RESOURCES
        }
        self._floor: dict[str, int] = dict.fromkeys(RESOURCES, 0)
        self._snapshots: dict[tuple[str, int], list[tuple[str, Obj]]] = {}
        self._watchers: set[_Watcher] = set()
        self._handlers: set[asyncio.Task[Any]] = set()
        self.list_faults: dict[str, deque[Fault]] = {name: deque() for name in RESOURCES}
        self.watch_faults: dict[str, deque[Fault]] = {name: deque() for name in RESOURCES}
        self.requests: list[Recorded] = []
        self.after_list_page: Callable[[FakeAPIServer], None] | None = None
        """Called after each paginated list page is built (e.g. to compact mid-list)."""
        self.app = web.Application()
        self.app.router.add_route("GET", "/{tail:.*}", self._handle)
        self._runner: web.AppRunner | None = None
        self.url = ""

    @property
    def token(self) -> str:
        """A token of the first admin user."""
        return next(t for t, u in self.tokens.items() if u in self.admins)

    # ------------------------------------------------------------------ lifecycle

    async def __aenter__(self) -> FakeAPIServer:
        self._runner = web.AppRunner(
            self.app, handle_signals=False, access_log=None, shutdown_timeout=0.05
        )
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        host, port = self._runner.addresses[0][:2]
        self.url = f"http://{host}:{port}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        for task in list(self._handlers):
            task.cancel()
        for task in list(self._handlers):
            with contextlib.suppress(BaseException):
                await task
        if self._runner is not None:
            await self._runner.cleanup()

    # ------------------------------------------------------------------ writes

    def _bump(self) -> int:
        self.rv += 1
        return self.rv

    def put(self, resource: str, obj: Obj) -> Obj:
        """Create or replace an object; returns the stored copy (with its new RV)."""
        res = RESOURCES[resource]
        obj = orjson.loads(orjson.dumps(obj))
        obj.pop("kind", None)
        obj.pop("apiVersion", None)
        meta = obj.setdefault("metadata", {})
        if not res.namespaced:
            meta.pop("namespace", None)
        elif not meta.get("namespace"):
            meta["namespace"] = "default"
        key = self._key(res, meta)
        old = self.objects[resource].get(key)
        meta["resourceVersion"] = str(self._bump())
        meta.setdefault("uid", f"uid-{resource}-{key}")
        self.objects[resource][key] = obj
        self._record(res, _Event(self.rv, "MODIFIED" if old else "ADDED", old, obj))
        return obj

    def put_many(self, resource: str, objs: Iterable[Obj]) -> None:
        """`put` each object (bulk setup)."""
        for obj in objs:
            self.put(resource, obj)

    def delete(self, resource: str, name: str, namespace: str = "") -> None:
        """Delete an object; watchers get DELETED with its last state and the delete RV."""
        res = RESOURCES[resource]
        key = f"{namespace}/{name}" if res.namespaced else name
        old = self.objects[resource].pop(key)
        last = orjson.loads(orjson.dumps(old))
        last["metadata"]["resourceVersion"] = str(self._bump())
        self._record(res, _Event(self.rv, "DELETED", old, last))

    def compact(self) -> None:
        """Compact etcd at the current RV: history, continue tokens and old RVs expire."""
        self.compacted_rv = self.rv
        for name in RESOURCES:
            self.history[name].clear()
            self._floor[name] = self.rv
        self._snapshots.clear()

    def drop_watches(self, resource: str) -> int:
        """Abort every live watch connection of ``resource`` (a network cut); returns how many."""
        dropped = 0
        for w in list(self._watchers):
            if w.resource.name == resource and w.request is not None and w.request.transport:
                w.request.transport.abort()
                dropped += 1
        return dropped

    def grant(self, user: str, verb: str, resource: str, namespace: str = "*") -> None:
        """Allow ``user`` to ``verb`` ``resource`` in ``namespace`` (``""`` = cluster scope)."""
        self.grants.add((user, verb, resource, namespace))

    def fail_next_list(self, resource: str, *faults: Fault) -> None:
        """Queue faults for the next list requests of ``resource``."""
        self.list_faults[resource].extend(faults)

    def fail_next_watch(self, resource: str, *faults: Fault) -> None:
        """Queue faults for the next watch requests of ``resource``."""
        self.watch_faults[resource].extend(faults)

    def count(self, resource: str, *, watch: bool | None = None) -> int:
        """How many requests hit ``resource`` (list, watch, or both)."""
        return sum(
            1
            for r in self.requests
            if r.path.rstrip("/").endswith("/" + resource) and (watch is None or r.watch == watch)
        )

    @staticmethod
    def _key(res: Resource, meta: Obj) -> str:
        return f"{meta['namespace']}/{meta['name']}" if res.namespaced else str(meta["name"])

    def _record(self, res: Resource, event: _Event) -> None:
        hist = self.history[res.name]
        if len(hist) == hist.maxlen:
            self._floor[res.name] = hist[0].rv
        hist.append(event)
        for w in self._watchers:
            if w.resource is res:
                w.queue.put_nowait(event)

    # ------------------------------------------------------------------ routing

    def _route(self, path: str) -> tuple[Resource, str]:
        parts = [p for p in path.split("/") if p]
        if parts[:2] == ["api", "v1"]:
            group, version, rest = "", "v1", parts[2:]
        elif len(parts) >= 3 and parts[0] == "apis":
            group, version, rest = parts[1], parts[2], parts[3:]
        else:
            raise _StatusError(404, NOT_FOUND)
        namespace = ""
        if len(rest) == 3 and rest[0] == "namespaces":
            namespace, rest = rest[1], rest[2:]
        if len(rest) != 1:
            raise _StatusError(404, NOT_FOUND)
        res = RESOURCES.get(rest[0])
        if res is None or res.group != group or res.version != version:
            raise _StatusError(404, NOT_FOUND)
        if namespace and not res.namespaced:
            raise _StatusError(404, NOT_FOUND)
        return res, namespace

    def _authenticate(self, request: web.Request) -> str:
        header = request.headers.get("Authorization", "")
        if not header.startswith("Bearer "):
            raise _StatusError(401, UNAUTHORIZED)
        user = self.tokens.get(header[len("Bearer ") :])
        if user is None:
            raise _StatusError(401, UNAUTHORIZED)
        return user

    def _authorize(self, user: str, verb: str, res: Resource, namespace: str) -> None:
        if user in self.admins:
            return
        for u, v, r, ns in self.grants:
            if u == user and v in (verb, "*") and r in (res.name, "*") and ns in (namespace, "*"):
                return
        qualified = f"{res.name}.{res.group}" if res.group else res.name
        scope = f'in the namespace "{namespace}"' if namespace else "at the cluster scope"
        details: Obj = {"group": res.group, "kind": res.name} if res.group else {"kind": res.name}
        raise _StatusError(
            403,
            status_body(
                403,
                "Forbidden",
                f'{qualified} is forbidden: User "{user}" cannot {verb} resource "{res.name}" '
                f'in API group "{res.group}" {scope}',
                details=details,
            ),
            {"X-Content-Type-Options": "nosniff"},
        )

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        try:
            return await self._serve(request)
        except _StatusError as err:
            return _json_response(err.code, err.body, err.headers)
        finally:
            self._handlers.discard(task)

    async def _serve(self, request: web.Request) -> web.StreamResponse:
        query = dict(request.query.items())
        user = ""
        try:
            user = self._authenticate(request)
        finally:
            self.requests.append(Recorded(request.method, request.path, query, user))
        res, namespace = self._route(request.path)
        watch = parse_bool(query["watch"]) if "watch" in query else False
        self._authorize(user, "watch" if watch else "list", res, namespace)
        labels = parse_label_selector(query.get("labelSelector", ""))
        fields = parse_field_selector(query.get("fieldSelector", ""), res)
        rv_match = query.get("resourceVersionMatch", "")
        if rv_match:
            if watch:
                raise _invalid_list_options(
                    "resourceVersionMatch is forbidden for watch", "resourceVersionMatch"
                )
            if "resourceVersion" not in query:
                raise _invalid_list_options(
                    "resourceVersionMatch is forbidden unless resourceVersion is provided",
                    "resourceVersionMatch",
                )
            if "continue" in query:
                raise _invalid_list_options(
                    "resourceVersionMatch is forbidden when continue is provided",
                    "resourceVersionMatch",
                )
        if watch:
            return await self._watch(request, res, namespace, labels, fields, query)
        return await self._list(res, namespace, labels, fields, query)

    # ------------------------------------------------------------------ list

    def _matching(
        self,
        items: Iterable[tuple[str, Obj]],
        res: Resource,
        namespace: str,
        labels: list[Requirement],
        fields: list[FieldReq],
    ) -> list[tuple[str, Obj]]:
        out = []
        for key, obj in items:
            meta = obj["metadata"]
            if namespace and meta.get("namespace") != namespace:
                continue
            if labels and not label_matches(labels, meta.get("labels") or {}):
                continue
            if fields and not field_matches(fields, obj):
                continue
            out.append((key, obj))
        return out

    async def _list(
        self,
        res: Resource,
        namespace: str,
        labels: list[Requirement],
        fields: list[FieldReq],
        query: dict[str, str],
    ) -> web.StreamResponse:
        faults = self.list_faults[res.name]
        if faults:
            fault = faults.popleft()
            return self._fault_response(fault)
        limit = int(query.get("limit", "0") or "0")
        rv_param = query.get("resourceVersion")
        token = query.get("continue", "")
        if token:
            snap_rv, start = self._decode_continue(token)
            if snap_rv != -1 and snap_rv < self.compacted_rv:
                new_token = self._encode_continue(-1, start)
                raise _StatusError(
                    410,
                    status_body(
                        410,
                        "Expired",
                        "The provided continue parameter is too old to display a consistent "
                        "list result. You can start a new list without the continue parameter, "
                        "or use the continue token in this response to retrieve the remainder of "
                        "the results. Continuing with the provided token results in an "
                        "inconsistent list - objects that were created, modified, or deleted "
                        "between the time the first chunk was returned and now may show up in "
                        "the list.",
                        metadata={"continue": new_token},
                    ),
                )
            if snap_rv == -1:
                items = sorted(self.objects[res.name].items())
                list_rv = self.rv
            else:
                items = self._snapshots.get((res.name, snap_rv)) or sorted(
                    self.objects[res.name].items()
                )
                list_rv = snap_rv
            items = [(k, o) for k, o in items if k >= start]
        else:
            if rv_param not in (None, "", "0"):
                want = int(rv_param)
                if want > self.rv:
                    await asyncio.sleep(self.future_rv_delay)
                    raise _StatusError(
                        504,
                        status_body(
                            504,
                            "Timeout",
                            f"Timeout: Too large resource version: {want}, current: {self.rv}",
                            details={
                                "causes": [
                                    {
                                        "reason": "ResourceVersionTooLarge",
                                        "message": "Too large resource version",
                                    }
                                ],
                                "retryAfterSeconds": 1,
                            },
                        ),
                        {"Retry-After": "1"},
                    )
                if query.get("resourceVersionMatch") == "Exact" and want < self.compacted_rv:
                    raise _StatusError(
                        410,
                        status_body(
                            410, "Expired", "The resourceVersion for the provided list is too old."
                        ),
                    )
            items = sorted(self.objects[res.name].items())
            list_rv = self.rv
            if rv_param == "0" and not self.paginate_from_cache:
                limit = 0  # served from the watch cache: v1.20 ignores the limit
            elif limit:
                self._snapshots[(res.name, list_rv)] = items
        matched = self._matching(items, res, namespace, labels, fields)
        meta: Obj = {"resourceVersion": str(list_rv)}
        if limit and len(matched) > limit:
            page = matched[:limit]
            meta["continue"] = self._encode_continue(list_rv, page[-1][0] + "\x00")
            if not labels and not fields:
                meta["remainingItemCount"] = len(matched) - limit
        else:
            page = matched
        if "continue" in meta and self.after_list_page is not None:
            self.after_list_page(self)
        body = (
            b'{"kind":"'
            + res.list_kind.encode()
            + b'","apiVersion":"'
            + res.api_version.encode()
            + b'","metadata":'
            + orjson.dumps(meta)
            + b',"items":['
            + b",".join(orjson.dumps(o) for _k, o in page)
            + b"]}"
        )
        return _json_response(200, body)

    @staticmethod
    def _encode_continue(rv: int, start: str) -> str:
        raw = orjson.dumps({"v": "meta.k8s.io/v1", "rv": rv, "start": start})
        # Go's encoding/json escapes NUL as \u0000 too; orjson does the same.
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()

    @staticmethod
    def _decode_continue(token: str) -> tuple[int, str]:
        try:
            data = orjson.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
            return int(data["rv"]), str(data["start"])
        except (ValueError, KeyError, TypeError) as exc:
            raise _bad_request(f"continue key is not valid: {exc}") from exc

    def _fault_response(self, fault: Fault) -> web.Response:
        body = fault.body
        if body is None:
            reason = {410: "Expired", 429: "TooManyRequests", 500: "InternalError"}.get(
                fault.code, "InternalError"
            )
            body = status_body(fault.code, reason, f"injected {fault.code}")
        return _json_response(fault.code, body, fault.headers)

    # ------------------------------------------------------------------ watch

    def _wire(self, res: Resource, obj: Obj) -> Obj:
        return {"kind": res.kind, "apiVersion": res.api_version, **obj}

    def _translate(self, w: _Watcher, ev: _Event) -> tuple[str, Obj] | None:
        def matches(obj: Obj | None) -> bool:
            if obj is None:
                return False
            return bool(self._matching([("", obj)], w.resource, w.namespace, w.labels, w.fields))

        if ev.type == "ADDED":
            return ("ADDED", ev.new) if ev.new is not None and matches(ev.new) else None
        if ev.type == "DELETED":
            return ("DELETED", ev.new) if ev.new is not None and matches(ev.old) else None
        was, now = matches(ev.old), matches(ev.new)
        if was and now and ev.new is not None:
            return "MODIFIED", ev.new
        if now and ev.new is not None:
            return "ADDED", ev.new
        if was and ev.old is not None:
            # Left the selector: the previous content with the new resourceVersion.
            gone = orjson.loads(orjson.dumps(ev.old))
            gone["metadata"]["resourceVersion"] = str(ev.rv)
            return "DELETED", gone
        return None

    async def _watch(
        self,
        request: web.Request,
        res: Resource,
        namespace: str,
        labels: list[Requirement],
        fields: list[FieldReq],
        query: dict[str, str],
    ) -> web.StreamResponse:
        fault: Fault | None = None
        faults = self.watch_faults[res.name]
        if faults:
            fault = faults.popleft()
            if fault.kind == "status":
                return self._fault_response(fault)
        timeout = float(query.get("timeoutSeconds", "0") or "0") or self.default_watch_timeout
        timeout *= self.timeout_scale
        bookmarks = self.bookmarks and parse_bool(query.get("allowWatchBookmarks", "false"))
        rv_param = query.get("resourceVersion", "")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout

        resp = web.StreamResponse(
            status=200,
            headers={"Cache-Control": "no-cache, private", "Content-Type": "application/json"},
        )
        resp.enable_chunked_encoding()
        await resp.prepare(request)  # headers go out before any event (§B.4)

        if fault is not None and fault.kind == "hang":
            await asyncio.sleep(timeout + 3600)
            return resp
        if fault is not None and fault.kind == "close" and fault.after == 0:
            assert request.transport is not None
            request.transport.abort()
            return resp
        if fault is not None and fault.kind == "lines":
            for line in fault.lines:
                await resp.write(line + b"\n")

        w = _Watcher(res, namespace, labels, fields, asyncio.Queue(), request)
        self._watchers.add(w)
        sent = 0
        last_rv = 0

        async def send(kind: str, obj: Obj) -> bool:
            nonlocal sent
            if fault is not None and fault.kind == "close" and sent >= fault.after:
                assert request.transport is not None
                request.transport.abort()
                return False
            await resp.write(orjson.dumps({"type": kind, "object": self._wire(res, obj)}) + b"\n")
            sent += 1
            return True

        try:
            if fault is not None and fault.kind == "error_event":
                await resp.write(
                    orjson.dumps(
                        {
                            "type": "ERROR",
                            "object": status_body(
                                fault.code, "InternalError", f"injected {fault.code}"
                            ),
                        }
                    )
                    + b"\n"
                )
                await resp.write_eof()
                return resp
            if rv_param in ("", "0"):
                last_rv = self.rv
                for _key, obj in self._matching(
                    sorted(self.objects[res.name].items()), res, namespace, labels, fields
                ):
                    if not await send("ADDED", obj):
                        return resp
            else:
                since = int(rv_param)
                floor = max(self._floor[res.name], self.compacted_rv)
                if since < floor:
                    error = status_body(
                        410, "Expired", f"too old resource version: {since} ({floor})"
                    )
                    await resp.write(orjson.dumps({"type": "ERROR", "object": error}) + b"\n")
                    await resp.write_eof()
                    return resp
                last_rv = since
                for ev in list(self.history[res.name]):
                    if ev.rv <= since:
                        continue
                    last_rv = ev.rv
                    out = self._translate(w, ev)
                    if out is not None and not await send(*out):
                        return resp
            next_bookmark = loop.time() + self.bookmark_interval
            while True:
                now = loop.time()
                if now >= deadline:
                    break
                wake = min(
                    deadline, next_bookmark, deadline - 2 if deadline - 2 > now else deadline
                )
                try:
                    ev = await asyncio.wait_for(w.queue.get(), timeout=max(wake - now, 0))
                except TimeoutError:
                    if bookmarks and self.rv > last_rv and loop.time() < deadline:
                        last_rv = self.rv
                        body = {
                            "kind": res.kind,
                            "apiVersion": res.api_version,
                            "metadata": {
                                "resourceVersion": str(self.rv),
                                "creationTimestamp": None,
                            },
                            **_BOOKMARK_BODY[res.kind],
                        }
                        await resp.write(orjson.dumps({"type": "BOOKMARK", "object": body}) + b"\n")
                    if loop.time() >= next_bookmark:
                        next_bookmark = loop.time() + self.bookmark_interval
                    continue
                if ev.rv <= last_rv:
                    continue
                last_rv = ev.rv
                out = self._translate(w, ev)
                if out is not None and not await send(*out):
                    return resp
            await resp.write_eof()
            return resp
        except ConnectionResetError:
            return resp
        finally:
            self._watchers.discard(w)


def load_items(path: str) -> list[Obj]:
    """The ``items`` of a captured list body."""
    with open(path, "rb") as f:
        body = orjson.loads(f.read())
    items: list[Obj] = body["items"]
    return items
