"""The informer: list + watch one resource into a local store of slim objects (spec §2.3).

One `Informer` per (API server, resource, namespace, label selector, field selector), shared by
every discoverer that asks for the same thing through an `InformerPool`. It keeps a dict of
slim objects (`objects.SLIM`) and tells its handlers what changed: ``add``, ``update`` (with
the previous value) and ``delete``.

The cycle is client-go's reflector, done by hand on raw aiohttp (kubernetes-api.md §D lists what
kubernetes_asyncio's ``Watch`` gets wrong):

1. LIST, paginated (``limit``/``continue``). The first LIST asks for ``resourceVersion=0``
   (cache); after a 410 the next one is a consistent read. A 410 on a ``continue`` token restarts
   the LIST from the beginning. The result *replaces* the store: vanished objects become
   ``delete`` events, changed ones ``update``, new ones ``add``. Then ``synced`` is set.
2. WATCH from the LIST's resourceVersion with ``allowWatchBookmarks`` and ``timeoutSeconds``
   drawn from [300, 600]. Lines are split here (no line length limit; a 1 MB object is one line)
   and decoded with orjson. Every event and bookmark advances the stored RV. ``ADDED`` for a key
   already held is an update (replays after reconnects do that).
3. The server ends the watch at its timeout -> watch again from the last RV, at once.
4. 410 Gone, as an ``ERROR`` event or as the HTTP status -> relist (one info line).
5. Anything else -> ``prometheus_sd_kubernetes_failures_total``, jittered exponential backoff
   (0.8 s doubling to 30 s, reset after 2 minutes of health), then watch again from the last RV:
   transport errors and truncated streams, a stream silent for longer than ``timeoutSeconds``
   plus a margin (stall), a line that is not JSON, 5xx and 429 (``Retry-After`` honoured).
   A 401 or 403 reloads credentials before the retry; a 403 is logged once with the missing
   RBAC rule, unless /readyz says the API server is still starting (`faults`). An error of our
   own (a bug) is logged with its traceback and relists.

Errors are logged once per change of cause, in words that name it (`faults.Diagnosis`), never
raised: only cancellation stops `run`. That matters beyond this informer: it is a task of the
pool's TaskGroup, and a failing child would cancel every informer of the agent.

What it costs the API server is counted per resource: list requests (pages), open watches,
body bytes and objects received, relists and watch restarts by reason (`KubernetesMetrics`).

Prometheus counterpart: client-go ``tools/cache/reflector.go`` + ``shared_informer.go`` as used
by ``discovery/kubernetes/kubernetes.go``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Literal, NoReturn

import aiohttp
import orjson

from collector.discovery.kubernetes.faults import (
    Diagnosis,
    answer_error,
    connection_lost,
    error_event,
    readyz,
    stalled,
)
from collector.discovery.kubernetes.metrics import KubernetesMetrics
from collector.discovery.kubernetes.objects import SLIM, SlimObject, object_key
from collector.discovery.kubernetes.retry import Backoff, Gone, Restart
from collector.discovery.kubernetes.wire import (
    RESOURCE_PATHS,
    RawEvent,
    RawList,
    list_problem,
    peek_continue,
)
from collector.errors import DiscoveryError
from collector.gcpause import gc_paused
from collector.kubernetes.connection import Connection, ConnectionSpec

__all__ = [
    "EventKind",
    "Handler",
    "Informer",
    "InformerKey",
    "InformerOptions",
]

log = logging.getLogger(__name__)

EventKind = Literal["add", "update", "delete"]
Handler = Callable[[EventKind, str, SlimObject | None, SlimObject | None], None]
"""``handler(kind, key, old, new)``: called synchronously after the store changed."""


@dataclass(frozen=True, slots=True, kw_only=True)
class InformerKey:
    """What makes two informers the same: shared by every discoverer asking for it."""

    connection: ConnectionSpec
    resource: str
    namespace: str = ""
    label_selector: str = ""
    field_selector: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class InformerOptions:
    """Knobs; the defaults are client-go's. Tests shorten them or inject time."""

    page_size: int = 500
    watch_timeout_min: float = 300.0
    watch_timeout_max: float = 600.0
    read_margin: float = 30.0
    """The client read deadline is ``timeoutSeconds`` plus this (bookmarks may never come)."""
    read_deadline: float | None = None
    """Override the read deadline outright (tests of stalls)."""
    backoff_initial: float = 0.8
    backoff_max: float = 30.0
    backoff_reset: float = 120.0
    forbidden_grace: float = 30.0
    """How long (backoff waited) a 403 may be blamed on a starting API server (`faults`)."""
    sleep: Callable[[float], Awaitable[None]] = field(default=asyncio.sleep)
    """Backoff waits (inject a fake to test on virtual time)."""
    rng: random.Random = field(default_factory=random.Random, compare=False)


class Informer:
    """List/watch one resource into a store of slim objects; see the module docstring."""

    def __init__(
        self,
        key: InformerKey,
        connection: Connection,
        *,
        metrics: KubernetesMetrics,
        options: InformerOptions | None = None,
    ) -> None:
        self.key = key
        self.connection = connection
        self.options = options or InformerOptions()
        self.metrics = metrics
        self.store: dict[str, SlimObject] = {}
        """Key (``ns/name`` or ``name``) -> slim object. Read it; never write it."""
        self.synced = asyncio.Event()
        """Set once the first LIST completed."""
        self.resource_version = ""
        self._handlers: list[Handler] = []
        self._slim = SLIM[key.resource]
        self._consistent_list = False
        self._diagnosis = Diagnosis(
            logger=log,
            where=self._where,
            resource=key.resource,
            namespace=key.namespace,
            probe=lambda: readyz(connection),
            grace=self.options.forbidden_grace,
        )
        # Children bound once: the watch path counts every chunk and event.
        res = key.resource
        self._list_requests = metrics.list_requests.labels(res)
        self._received_bytes = metrics.received_bytes.labels(res)
        self._received_objects = metrics.received_objects.labels(res)
        self._watches_open = metrics.watches_open.labels(res)
        prefix, namespaced = RESOURCE_PATHS[key.resource]
        ns = f"/namespaces/{key.namespace}" if key.namespace and namespaced else ""
        self._path = f"{prefix}{ns}/{key.resource}"

    def add_handler(self, handler: Handler) -> None:
        """Subscribe to changes (``handler(kind, key, old, new)``)."""
        self._handlers.append(handler)

    def remove_handler(self, handler: Handler) -> None:
        """Unsubscribe."""
        with contextlib.suppress(ValueError):
            self._handlers.remove(handler)

    def get(self, key: str) -> SlimObject | None:
        """The stored object under ``key``."""
        return self.store.get(key)

    # ----------------------------------------------------------------- loop

    async def run(self) -> NoReturn:
        """List, then watch, forever; only cancellation stops it."""
        res = self.key.resource
        o = self.options
        backoff = Backoff(
            initial=o.backoff_initial,
            maximum=o.backoff_max,
            reset_after=o.backoff_reset,
            rng=o.rng,
        )
        need_list = True
        relist_reason = ""
        while True:
            try:
                await self.connection.ensure_loaded()
                if need_list:
                    await self._list()
                    if relist_reason:
                        self.metrics.relists.labels(res, relist_reason).inc()
                    need_list, relist_reason = False, ""
                    self._diagnosis.recovered()
                await self._watch()
                self.metrics.watch_restarts.labels(res, "closed").inc()
            except Gone as gone:
                self.metrics.watch_restarts.labels(res, "expired").inc()
                self._diagnosis.expired(gone)
                need_list, relist_reason, self._consistent_list = True, "expired", True
            except Restart as restart:
                wait = max(backoff.next(), restart.retry_after)
                reason = await self._diagnosis.failed(restart, wait=wait)
                self.metrics.failures.inc()
                self.metrics.watch_restarts.labels(res, reason).inc()
                await self.options.sleep(wait)
                if restart.reason in ("unauthorized", "forbidden"):
                    # After the wait, so a token rotated meanwhile is picked up. A 403 too:
                    # the token file may have held another identity's token (Prometheus
                    # re-reads ``credentials_file`` on every request).
                    await self.connection.reload_credentials()
            except DiscoveryError as exc:
                self.metrics.failures.inc()
                self._diagnosis.report("config", str(exc))
                await self.options.sleep(backoff.next())
            except Exception:
                # A bug (an object shape nobody expected, say): say so loudly, then start over
                # from a fresh LIST rather than trust a store that saw half an event.
                log.exception("kubernetes %s: unexpected error, relisting", self._where())
                self.metrics.failures.inc()
                self.metrics.watch_restarts.labels(res, "internal").inc()
                self._diagnosis.state = "internal"
                need_list, relist_reason = True, "internal"
                await self.options.sleep(backoff.next())

    def _where(self) -> str:
        k = self.key
        sel = ",".join(s for s in (k.label_selector, k.field_selector) if s)
        where = f" in namespace {k.namespace!r}" if k.namespace else ""
        return f"{k.resource}{where}{f' ({sel})' if sel else ''} at {self.connection.base_url}"

    # ----------------------------------------------------------------- HTTP

    def _params(self, **extra: str) -> dict[str, str]:
        params = dict(extra)
        if self.key.label_selector:
            params["labelSelector"] = self.key.label_selector
        if self.key.field_selector:
            params["fieldSelector"] = self.key.field_selector
        return params

    @contextlib.asynccontextmanager
    async def _request(
        self, params: dict[str, str], *, verb: str
    ) -> AsyncIterator[aiohttp.ClientResponse]:
        try:
            async with self.connection.get(
                self._path,
                params=params,
                client_timeout=aiohttp.ClientTimeout(total=None, sock_connect=10.0),
            ) as resp:
                if resp.status != 200:
                    body = await resp.read()
                    retry_after = resp.headers.get("Retry-After")
                    raise answer_error(resp.status, body, retry_after=retry_after, verb=verb)
                yield resp
        except (aiohttp.ClientError, OSError) as exc:
            raise connection_lost(verb, exc) from exc

    # ----------------------------------------------------------------- list

    async def _fetch_page(self, token: str, rv_param: str) -> bytes:
        params = self._params(limit=str(self.options.page_size))
        if token:
            params["continue"] = token
        elif rv_param:
            params["resourceVersion"] = rv_param
        self._list_requests.inc()
        async with self._request(params, verb="list") as resp:
            try:
                raw = await resp.read()
            except aiohttp.ClientError as exc:
                raise Restart("bad_list", f"list: unreadable response: {exc}") from exc
        self._received_bytes.inc(len(raw))
        return raw

    async def _fetch_outcome(self, token: str, rv_param: str) -> bytes | Exception:
        """`_fetch_page` with its error as a value: a prefetch task that never fails its group."""
        try:
            return await self._fetch_page(token, rv_param)
        except Exception as exc:
            return exc

    async def _list(self) -> None:
        """Paginated LIST into a new store.

        The next page is requested before this one is decoded (its ``continue`` token is read
        from the list metadata, which precedes ``items``), so the server encodes page n+1 while
        we decode page n. Each page is decoded once, by orjson. The request ahead is a task of
        a TaskGroup scoped to this LIST; errors travel as values (`_fetch_outcome`,
        `_list_pages`) so that group only ever sees cancellation, and are raised out here.
        """
        async with asyncio.TaskGroup() as ahead:
            outcome = await self._list_pages(ahead)
        if isinstance(outcome, Exception):
            raise outcome
        items, list_rv = outcome
        self._replace(items, list_rv)

    async def _list_pages(
        self, ahead: asyncio.TaskGroup
    ) -> tuple[dict[str, SlimObject], str] | Exception:
        items: dict[str, SlimObject] = {}
        token = ""
        list_rv = ""
        rv_param = "" if self._consistent_list else "0"
        pending: asyncio.Task[bytes | Exception] | None = None
        pending_token = ""
        try:
            while True:
                if pending is not None and pending_token == token:
                    got = await pending
                else:
                    if pending is not None:
                        pending.cancel()  # asked ahead for a page of a LIST given up
                    got = await self._fetch_outcome(token, rv_param)
                pending = None
                if isinstance(got, Gone) and token:
                    # The snapshot behind the continue token was compacted: start over with a
                    # consistent read (never the "inconsistent" token the 410 offers).
                    self.metrics.relists.labels(self.key.resource, "expired_continue").inc()
                    items.clear()
                    token, rv_param = "", ""
                    continue
                if isinstance(got, Exception):
                    return got
                raw = got
                next_token = peek_continue(raw)
                if next_token:
                    pending_token = next_token
                    pending = ahead.create_task(self._fetch_outcome(next_token, rv_param))
                    # Let it send its request before the loop is busy decoding.
                    for _ in range(8):
                        await asyncio.sleep(0)
                with gc_paused():  # a page is ~60,000 new containers, none garbage
                    try:
                        body: RawList = orjson.loads(raw)
                    except orjson.JSONDecodeError as exc:
                        restart = Restart("bad_list", f"list: unreadable response: {exc}")
                        restart.__cause__ = exc
                        return restart
                    del raw
                    problem = list_problem(body)
                    if problem:
                        return Restart("bad_list", f"list: {problem}")
                    meta = body.get("metadata") or {}
                    if not token:
                        list_rv = str(meta.get("resourceVersion", ""))
                    slim = self._slim
                    page = body.get("items") or ()
                    for obj in page:
                        items[object_key(obj)] = slim(obj)
                    self._received_objects.inc(len(page))
                    del body
                token = str(meta.get("continue") or "")
                if not token:
                    return items, list_rv
        finally:
            # A page still in flight (an error above, or cancellation): the group awaits it.
            if pending is not None:
                pending.cancel()

    def _replace(self, items: dict[str, SlimObject], rv: str) -> None:
        old = self.store
        self.store = items
        self.resource_version = rv
        self._consistent_list = False
        res = self.key.resource
        self.metrics.objects.labels(res).set(len(items))
        self.metrics.last_sync.labels(res).set(time.time())
        for key, obj in items.items():
            prev = old.get(key)
            if prev is None:
                self._emit("add", key, None, obj)
            elif prev != obj:
                self._emit("update", key, prev, obj)
        for key in old.keys() - items.keys():
            self._emit("delete", key, old[key], None)
        self.synced.set()

    def _emit(
        self, kind: EventKind, key: str, old: SlimObject | None, new: SlimObject | None
    ) -> None:
        for handler in list(self._handlers):
            try:
                handler(kind, key, old, new)
            except Exception:
                log.exception("kubernetes %s: event handler failed", self._where())

    # ----------------------------------------------------------------- watch

    async def _watch(self) -> None:
        o = self.options
        timeout = int(o.rng.uniform(o.watch_timeout_min, o.watch_timeout_max))
        params = self._params(
            watch="true",
            resourceVersion=self.resource_version,
            allowWatchBookmarks="true",
            timeoutSeconds=str(timeout),
        )
        deadline = o.read_deadline if o.read_deadline is not None else timeout + o.read_margin
        async with self._request(params, verb="watch") as resp:
            self._watches_open.inc()
            try:
                await self._stream(resp, deadline)
            finally:
                self._watches_open.dec()

    async def _stream(self, resp: aiohttp.ClientResponse, deadline: float) -> None:
        """Split a watch body into lines and apply each; return when the server ends it."""
        buf = bytearray()
        while True:
            try:
                async with asyncio.timeout(deadline):
                    chunk = await resp.content.readany()
            except TimeoutError as exc:
                raise stalled(deadline) from exc
            except (aiohttp.ClientError, OSError) as exc:
                raise connection_lost("watch", exc, pending=len(buf)) from exc
            if not chunk:
                return
            self._received_bytes.inc(len(chunk))
            start = len(buf)
            buf += chunk
            nl = buf.find(b"\n", start)
            if nl < 0:
                continue
            pos = 0
            while nl >= 0:
                line = bytes(buf[pos:nl])
                pos = nl + 1
                if line.strip():
                    self._event(line)
                nl = buf.find(b"\n", pos)
            del buf[:pos]

    def _event(self, line: bytes) -> None:
        try:
            event: RawEvent = orjson.loads(line)
        except orjson.JSONDecodeError as exc:
            raise Restart(
                "bad_line", f"watch: not a JSON line (a proxy in the way?): {line[:80]!r}"
            ) from exc
        if not isinstance(event, dict):
            raise Restart("bad_line", f"watch: not an event: {line[:80]!r}")
        kind = event.get("type")
        obj: Any = event.get("object") or {}
        if kind == "ERROR":
            if not isinstance(obj, dict):
                raise Restart("bad_line", f"watch: error event without a Status: {line[:80]!r}")
            raise error_event(obj.get("code"), obj.get("reason"), obj.get("message"))
        if kind not in ("ADDED", "MODIFIED", "DELETED", "BOOKMARK"):
            # Not {kind!r} of any JSON: a type nested 1,000 deep overflows repr (fuzzing).
            shown = repr(kind[:80]) if isinstance(kind, str) else f"of JSON {type(kind).__name__}"
            raise Restart("bad_line", f"watch: unknown event type {shown}: {line[:80]!r}")
        # client-go cannot decode such an event either: its watch ends and starts over.
        if not isinstance(obj, dict):
            raise Restart("bad_line", f"watch: {kind} object is not a JSON object: {line[:80]!r}")
        meta = obj.get("metadata") or {}
        if not isinstance(meta, dict):
            raise Restart(
                "bad_line", f"watch: {kind} object's metadata is not a JSON object: {line[:80]!r}"
            )
        rv = meta.get("resourceVersion")
        if not isinstance(rv, str):
            rv = None  # a string on the wire; str() of a deeply nested value overflows
        if kind == "BOOKMARK":
            if rv:
                self.resource_version = str(rv)
            return
        self._received_objects.inc()
        key = object_key(obj)
        if kind == "DELETED":
            prev = self.store.pop(key, None)
            if prev is not None:
                self._emit("delete", key, prev, None)
        else:
            new = self._slim(obj)
            prev = self.store.get(key)
            self.store[key] = new
            self._emit("add" if prev is None else "update", key, prev, new)
        if rv:
            self.resource_version = str(rv)
        self.metrics.objects.labels(self.key.resource).set(len(self.store))
        self._diagnosis.recovered()
