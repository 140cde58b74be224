"""The agent's HTTP endpoints (INTERFACES.md), as one aiohttp application.

The web layer never imports discovery, scrape or remote write: it reads the running agent through
the small `AgentView` protocol that ``collector.agent`` implements, so the pipeline stages stay
independent (import-linter checks this).

Prometheus counterpart: ``web/web.go`` and ``web/api/v1/api.go`` (the subset an agent serves).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from importlib import resources
from typing import TYPE_CHECKING, Any, Protocol

import orjson
from aiohttp import web
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

from collector.errors import CollectorError, ParseError
from collector.model.relabel_steps import parse_series
from collector.web.ui import UiView, add_routes

if TYPE_CHECKING:
    from aiohttp.typedefs import Middleware

__all__ = ["AgentView", "ClusterView", "make_app"]

log = logging.getLogger(__name__)

JSON = dict[str, Any]

_INDEX = (resources.files("collector.web") / "static" / "index.html").read_bytes()
"""The web UI's entry page; its styles and ES modules (no build step) come from `add_routes`."""


class AgentView(Protocol):
    """What the web layer needs from the running agent."""

    def is_ready(self) -> bool:
        """True once the config is loaded and every discovery provider has synced once."""
        ...

    async def reload(self) -> None:
        """Reload the config file; raise `CollectorError` and keep the old config on failure."""
        ...

    def request_quit(self) -> None:
        """Begin the same ordered shutdown as SIGTERM (``POST /-/quit``)."""
        ...

    def active_targets(self) -> Sequence[JSON]:
        """Prometheus ``/api/v1/targets`` ``activeTargets`` entries."""
        ...

    def dropped_targets(self) -> Sequence[JSON]:
        """Prometheus ``/api/v1/targets`` ``droppedTargets`` entries."""
        ...

    def dropped_target_counts(self) -> Mapping[str, int]:
        """Dropped targets per pool, those beyond ``keep_dropped_targets`` included."""
        ...

    def target_relabel_steps(self, pool: str, labels: Mapping[str, str]) -> Mapping[str, object]:
        """``data`` of ``/api/v1/targets/relabel_steps``: each rule of the pool's
        ``relabel_configs`` applied to the discovered ``labels`` (Prometheus 3.8's ``steps``,
        plus where the target ends up). Raises `CollectorError` for an unknown pool."""
        ...

    def series_relabel_steps(
        self, pool: str, series: Mapping[str, str], *, target: Mapping[str, str] | None
    ) -> Mapping[str, object]:
        """``data`` of ``/api/v1/series_relabel_steps``: ``series`` through the pool's
        ``metric_relabel_configs`` (with the labels of ``target``, discovered labels, attached
        when given), then each remote-write destination's external labels and
        ``write_relabel_configs``. Raises `CollectorError` for an unknown pool or a target
        that is not active."""
        ...

    def config_yaml(self) -> str:
        """The loaded config as YAML, secrets redacted."""
        ...

    def remote_write_status(self) -> Sequence[JSON]:
        """One entry per remote-write queue: name, url, samplesSent, samplesFailed,
        samplesPending, shards, diskQueueBytes, protocol (``2.0``/``1.0`` now),
        protocolConfigured, fallbackReason (collector extension for the UI)."""
        ...


class ClusterView(Protocol):
    """What ``GET /api/v1/cluster`` reads (the agent; `collector.cluster` builds the data)."""

    def cluster_status(self) -> Mapping[str, object]:
        """``enabled``, ``self``, ``members`` (``name``, ``self``, ``targets``), ..."""
        ...


def _json(data: object, *, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(data), status=status, content_type="application/json")


def _api_error(kind: str, message: str, *, status: int) -> web.Response:
    return _json({"status": "error", "errorType": kind, "error": message}, status=status)


def _label_object(text: str) -> dict[str, str]:
    """A JSON object of label names to string values (Prometheus's ``labels.Labels`` JSON)."""
    try:
        data = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise ValueError(str(exc)) from exc
    if not isinstance(data, dict):
        raise ValueError("expected a JSON object of label names to values")
    for name, value in data.items():
        if not isinstance(value, str):
            raise ValueError(f"the value of label {name!r} is not a string")
    return data


def _lifecycle_disabled() -> web.Response:
    return web.Response(text="Lifecycle API is not enabled.\n", status=403)


def make_app(
    agent: AgentView,
    *,
    registry: CollectorRegistry,
    remote_write_handler: Callable[[web.Request], Awaitable[web.StreamResponse]] | None = None,
    extra_routes: Mapping[str, Callable[[web.Request], Awaitable[web.StreamResponse]]]
    | None = None,
    enable_lifecycle: bool = False,
    middlewares: Sequence[Middleware] = (),
    ui: UiView | None = None,
    cluster: ClusterView | None = None,
) -> web.Application:
    """Build the application.

    ``enable_lifecycle`` (``--web.enable-lifecycle``) allows ``POST /-/reload`` and
    ``POST /-/quit``; without it both answer 403, as in Prometheus, so that anyone who can reach
    the port cannot restart or stop the agent.

    ``remote_write_handler`` is mounted at ``POST /api/v1/write`` only when given (the agent
    passes it for ``--web.enable-remote-write-receiver``). ``extra_routes`` adds ``GET`` pages
    (the web UI) without this module knowing about them. ``middlewares`` run around every
    route, the receiver and 404s included: the agent passes `collector.web.security`'s (TLS
    client SANs, basic auth, rate limit, headers of ``--web.config.file``).

    ``ui`` (the agent) adds the UI's own endpoints (`collector.web.ui`: cardinality, pools,
    flags, build info); without it the UI shows those pages as unavailable.

    ``cluster`` answers ``GET /api/v1/cluster`` (sharding members and their target counts);
    without it the endpoint says sharding is off.
    """

    async def metrics(_: web.Request) -> web.Response:
        body = generate_latest(registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def healthy(_: web.Request) -> web.Response:
        return web.Response(text="collector is Healthy.\n")

    async def ready(_: web.Request) -> web.Response:
        if agent.is_ready():
            return web.Response(text="collector is Ready.\n")
        return web.Response(text="Service Unavailable\n", status=503)

    async def reload(request: web.Request) -> web.Response:
        if request.method not in ("POST", "PUT"):
            return web.Response(text="Only POST or PUT requests allowed\n", status=405)
        if not enable_lifecycle:
            return _lifecycle_disabled()
        try:
            await agent.reload()
        except CollectorError as exc:
            return web.Response(text=f"failed to reload config: {exc}\n", status=500)
        return web.Response(text="")

    async def quit_(_: web.Request) -> web.Response:
        if not enable_lifecycle:
            return _lifecycle_disabled()
        agent.request_quit()
        return web.Response(text="Requesting termination... Goodbye!\n")

    async def targets(request: web.Request) -> web.Response:
        state = request.query.get("state", "any").lower()
        pool = request.query.get("scrapePool", "")
        if state not in ("any", "active", "dropped"):
            return _api_error("bad_data", f"invalid state {state!r}", status=400)
        active: Sequence[JSON] = []
        dropped: Sequence[JSON] = []
        if state in ("any", "active"):
            active = [t for t in agent.active_targets() if not pool or t["scrapePool"] == pool]
        if state in ("any", "dropped"):
            dropped = agent.dropped_targets()
            if pool:
                dropped = [t for t in dropped if t.get("scrapePool") == pool]
        counts: dict[str, int] = {}
        if state in ("any", "dropped"):
            # As Prometheus: every pool, unfiltered by scrapePool, and every dropped target,
            # also those beyond keep_dropped_targets.
            counts = dict(sorted(agent.dropped_target_counts().items()))
        return _json(
            {
                "status": "success",
                "data": {
                    "activeTargets": active,
                    "droppedTargets": dropped,
                    "droppedTargetCounts": counts,
                },
            }
        )

    async def target_relabel_steps(request: web.Request) -> web.Response:
        # Prometheus 3.8's endpoint, with its error messages (web/api/v1/api.go).
        pool = request.query.get("scrapePool", "")
        if not pool:
            return _api_error("bad_data", "no scrapePool parameter provided", status=400)
        text = request.query.get("labels", "")
        if not text:
            return _api_error("bad_data", "no labels parameter provided", status=400)
        try:
            labels = _label_object(text)
        except ValueError as exc:
            return _api_error("bad_data", f"error parsing labels: {exc}", status=400)
        try:
            data = agent.target_relabel_steps(pool, labels)
        except CollectorError as exc:
            return _api_error("bad_data", f"error retrieving scrape config: {exc}", status=400)
        return _json({"status": "success", "data": data})

    async def series_relabel_steps(request: web.Request) -> web.Response:
        pool = request.query.get("scrapePool", "")
        if not pool:
            return _api_error("bad_data", "no scrapePool parameter provided", status=400)
        text = request.query.get("series", "")
        if not text:
            return _api_error("bad_data", "no series parameter provided", status=400)
        try:
            series = parse_series(text)
        except ParseError as exc:
            return _api_error("bad_data", f"error parsing series: {exc}", status=400)
        target = None
        if "target" in request.query:
            try:
                target = _label_object(request.query["target"])
            except ValueError as exc:
                return _api_error("bad_data", f"error parsing target: {exc}", status=400)
        try:
            data = agent.series_relabel_steps(pool, series, target=target)
        except CollectorError as exc:
            return _api_error("bad_data", str(exc), status=400)
        return _json({"status": "success", "data": data})

    async def status_config(_: web.Request) -> web.Response:
        return _json({"status": "success", "data": {"yaml": agent.config_yaml()}})

    async def remote_write_status(_: web.Request) -> web.Response:
        return _json({"status": "success", "data": agent.remote_write_status()})

    async def cluster_status(_: web.Request) -> web.Response:
        data = cluster.cluster_status() if cluster is not None else {"enabled": False}
        return _json({"status": "success", "data": data})

    async def index(_: web.Request) -> web.Response:
        return web.Response(body=_INDEX, content_type="text/html", charset="utf-8")

    async def method_not_allowed(_: web.Request) -> web.Response:
        return web.Response(text="Only POST or PUT requests allowed\n", status=405)

    app = web.Application(middlewares=middlewares)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/-/healthy", healthy)
    app.router.add_get("/-/ready", ready)
    app.router.add_post("/-/reload", reload)
    app.router.add_put("/-/reload", reload)
    app.router.add_get("/-/reload", method_not_allowed, allow_head=False)
    app.router.add_post("/-/quit", quit_)
    app.router.add_put("/-/quit", quit_)
    app.router.add_get("/-/quit", method_not_allowed, allow_head=False)
    app.router.add_get("/api/v1/targets", targets)
    app.router.add_get("/api/v1/targets/relabel_steps", target_relabel_steps)
    app.router.add_get("/api/v1/series_relabel_steps", series_relabel_steps)
    app.router.add_get("/api/v1/status/config", status_config)
    app.router.add_get("/api/v1/status/remote_write", remote_write_status)
    app.router.add_get("/api/v1/cluster", cluster_status)
    app.router.add_get("/", index)
    # The UI's assets and playground always; its status endpoints when the agent has them.
    add_routes(app, ui)
    if remote_write_handler is not None:
        app.router.add_post("/api/v1/write", remote_write_handler)
    for path, handler in (extra_routes or {}).items():
        app.router.add_get(path, handler)
    return app
