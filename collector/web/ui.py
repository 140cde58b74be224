"""The web UI's server side: its static app, the endpoints only it needs, a rate history.

Place in the pipeline: the web layer, beside `collector.web.app`. Like the rest of the web
layer it reads the running agent through a protocol (`UiView`, which ``collector.agent``
implements) and never imports scrape, discovery or remote write.

The UI is one static app in ``collector/web/static/`` (``index.html``, ``ui.css`` and a few
ES modules, flat, served as they are): no build step at run time, no CDN; the browser renders
the JSON APIs. `add_routes` mounts the assets and these endpoints:

* ``GET /api/v1/status/cardinality`` (``scrapePool=``, ``scrapeUrl=``, ``limit=``): series per
  target, pool and in total, churn, top metric names and label names, what each limit cost
  (`collector.scrape.cardinality`, computed from the scrape caches when asked).
* ``GET /api/v1/scrape_pools``: Prometheus's list of pool names, plus per pool discovered,
  active, dropped and failed targets and series (``pools``, collector's extension).
* ``GET /api/v1/status/flags`` and ``/api/v1/status/buildinfo``: as Prometheus's.
* ``POST /api/v1/relabel_steps``: the relabel playground. Labels and rules in, every step
  out, from the code and in the JSON shape of ``/api/v1/targets/relabel_steps``
  (`collector.model.relabel_steps`).

`RemoteWriteHistory` keeps the last 15 minutes of each remote-write queue's counters in a
ring buffer (one point every 10 s), sampled by a task the agent owns; the remote-write page
draws it as inline SVG.

Prometheus counterpart: ``web/web.go`` (UI assets) and ``web/api/v1/api.go``
(``scrapePools``, ``serveFlags``, ``serveBuildInfo``, ``serveTSDBStatus``).
"""

from __future__ import annotations

import asyncio
import dataclasses
import mimetypes
import os
import platform
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from importlib import resources
from typing import NoReturn, Protocol, cast

import orjson
from aiohttp import web

from collector import __version__
from collector.config import AgentOptions
from collector.config.yaml_tree import Location, Tree, compose, idx, join, relabel_plain, to_plain
from collector.errors import ConfigError, ParseError
from collector.model.duration import format_duration
from collector.model.relabel import RelabelConfig, compile_rules, parse_rule
from collector.model.relabel_steps import parse_series, sorted_labels, steps_json, trace_rules

__all__ = ["RemoteWriteHistory", "UiView", "add_routes", "flags_of"]

Status = Mapping[str, object]


def _load_assets() -> dict[str, tuple[bytes, str]]:
    """Every file of ``static/`` by name, with its content type (read once, at import)."""
    assets: dict[str, tuple[bytes, str]] = {}
    for entry in (resources.files("collector.web") / "static").iterdir():
        if entry.is_file():
            kind = mimetypes.guess_type(entry.name)[0] or "application/octet-stream"
            # ES modules must be served as JavaScript or the browser refuses to run them.
            if entry.name.endswith(".js"):
                kind = "text/javascript"
            assets[entry.name] = (entry.read_bytes(), kind)
    return assets


_ASSETS = _load_assets()

_FLAG_NAMES: Mapping[str, str] = {
    "config_file": "config.file",
    "listen_address": "web.listen-address",
    "web_config_file": "web.config.file",
    "enable_remote_write_receiver": "web.enable-remote-write-receiver",
    "enable_lifecycle": "web.enable-lifecycle",
    "storage_path": "storage.path",
    "flush_deadline": "storage.remote.flush-deadline",
    "wal_sync_interval": "storage.remote.wal-sync-interval",
    "wal_fsync": "storage.remote.wal-fsync",
    "max_disk_bytes": "storage.remote.max-disk-bytes",
    "kubeconfig": "kubeconfig",
    "log_level": "log.level",
    "log_format": "log.format",
    "receiver_max_body_bytes": "web.remote-write-receiver.max-body-bytes",
    "receiver_max_decompressed_bytes": "web.remote-write-receiver.max-decompressed-bytes",
    "receiver_max_series_per_request": "web.remote-write-receiver.max-series-per-request",
    "receiver_max_samples_per_request": "web.remote-write-receiver.max-samples-per-request",
    "receiver_max_labels_per_series": "web.remote-write-receiver.max-labels-per-series",
    "receiver_max_label_name_length": "web.remote-write-receiver.max-label-name-length",
    "receiver_max_label_value_length": "web.remote-write-receiver.max-label-value-length",
    "scrape_workers": "scrape.workers",
}
"""`AgentOptions` field -> command-line flag (a test holds this to ``cli.build_parser``)."""
_DURATION_OPTIONS = frozenset({"flush_deadline", "wal_sync_interval"})


class UiView(Protocol):
    """What the UI's endpoints need from the running agent, beyond `AgentView`."""

    @property
    def options(self) -> AgentOptions:
        """The command-line options (the flags page)."""
        ...

    async def cardinality(self, *, scrape_pool: str, scrape_url: str, top: int) -> Status:
        """``data`` of ``/api/v1/status/cardinality`` for the selected targets (it may pause
        for the event loop while it walks the caches)."""
        ...

    def scrape_pools(self) -> Sequence[Status]:
        """Per pool: ``scrapePool``, ``discovered``, ``active``, ``dropped``, ``failed``,
        ``series``."""
        ...


def flags_of(options: AgentOptions) -> dict[str, str]:
    """``/api/v1/status/flags``: every option under its flag name, values as strings.

    Options without a flag of their own (set by the demo or tests) keep their field name.
    """
    out: dict[str, str] = {}
    for field in dataclasses.fields(options):
        value = getattr(options, field.name)
        if isinstance(value, bool):
            text = str(value).lower()
        elif field.name in _DURATION_OPTIONS and isinstance(value, float):
            text = format_duration(value)
        else:
            text = str(value)
        out[_FLAG_NAMES.get(field.name, field.name)] = text
    return dict(sorted(out.items()))


def _success(data: object) -> web.Response:
    return web.Response(
        body=orjson.dumps({"status": "success", "data": data}), content_type="application/json"
    )


def _bad_data(message: str) -> web.Response:
    body = {"status": "error", "errorType": "bad_data", "error": message}
    return web.Response(body=orjson.dumps(body), status=400, content_type="application/json")


def add_routes(app: web.Application, view: UiView | None) -> None:
    """Mount the static app (always) and, given a `UiView`, the UI's endpoints."""

    async def asset(request: web.Request) -> web.Response:
        found = _ASSETS.get(request.match_info["name"])
        if found is None:
            raise web.HTTPNotFound()
        body, kind = found
        return web.Response(body=body, content_type=kind, headers={"Cache-Control": "no-cache"})

    async def relabel_steps(request: web.Request) -> web.Response:
        try:
            payload = await request.json(loads=orjson.loads)
        except ValueError as exc:
            return _bad_data(f"the body must be a JSON object: {exc}")
        if not isinstance(payload, dict):
            return _bad_data('the body must be a JSON object {"labels": ..., "rules": ...}')
        try:
            labels = _playground_labels(payload.get("labels"))
            rules = _playground_rules(payload.get("rules"))
        except (ConfigError, ParseError) as exc:
            return _bad_data(str(exc))
        trace = trace_rules(labels, compile_rules(rules))
        return _success(
            {
                "input": sorted_labels(trace.input),
                "steps": steps_json(trace),
                "kept": trace.kept,
                "droppedBy": trace.dropped_by,
                "output": sorted_labels(trace.output) if trace.kept else {},
            }
        )

    app.router.add_get("/static/{name}", asset)
    app.router.add_post("/api/v1/relabel_steps", relabel_steps)
    if view is None:
        return
    started = time.time()

    async def cardinality(request: web.Request) -> web.Response:
        query = request.query
        try:
            top = int(query.get("limit", "10"))
        except ValueError:
            top = -1
        if not 0 <= top <= 10_000:
            return _bad_data(f"limit must be an integer from 0 to 10000, got {query['limit']!r}")
        data = await view.cardinality(
            scrape_pool=query.get("scrapePool", ""),
            scrape_url=query.get("scrapeUrl", ""),
            top=top,
        )
        return _success(data)

    async def scrape_pools(_: web.Request) -> web.Response:
        pools = view.scrape_pools()
        return _success({"scrapePools": [p["scrapePool"] for p in pools], "pools": pools})

    async def flags(_: web.Request) -> web.Response:
        return _success(flags_of(view.options))

    async def build_info(_: web.Request) -> web.Response:
        return _success(
            {
                "version": __version__,
                "python": f"{platform.python_implementation()} {platform.python_version()}",
                "platform": platform.platform(terse=True),
                "eventLoop": type(asyncio.get_running_loop()).__module__.split(".")[0],
                "pid": os.getpid(),
                "startTime": started,
            }
        )

    app.router.add_get("/api/v1/status/cardinality", cardinality)
    app.router.add_get("/api/v1/scrape_pools", scrape_pools)
    app.router.add_get("/api/v1/status/flags", flags)
    app.router.add_get("/api/v1/status/buildinfo", build_info)


def _playground_labels(raw: object) -> dict[str, str]:
    """Labels as a JSON object, a series (``{a="b"}``, ``up{job="x"}``) or ``name: value`` lines
    (values as written: ``port: 0080`` is ``"0080"``)."""
    if isinstance(raw, dict):
        return {str(k): _scalar(v) for k, v in raw.items()}
    if not isinstance(raw, str) or not raw.strip():
        raise ParseError('labels: give a JSON object, a series {a="b"} or name: value lines')
    composed = compose(raw, file="labels")
    tree = composed.tree
    # JSON and "name: value" lines compose to a mapping. A series such as {a="b"} does too, as
    # keys with '=' in them: it goes to the series parser, with everything else.
    if not composed.problems and isinstance(tree, dict) and not any("=" in k for k in tree):
        return {
            k: _scalar(v) for k, v in cast("dict[str, object]", to_plain(tree, text=True)).items()
        }
    try:
        return parse_series(raw)
    except ParseError as exc:
        raise ParseError(f"labels: not a label mapping nor a series ({exc})") from None


def _scalar(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return str(value).lower()
    return str(value)


_RULE_LISTS = ("relabel_configs", "metric_relabel_configs", "write_relabel_configs")


def _playground_rules(raw: object) -> list[RelabelConfig]:
    """Rules as YAML text, read as the config loader reads ``relabel_configs`` (`compose`,
    `relabel_plain`: ``regex: true`` is the string ``"true"``, as in Prometheus), or as a JSON
    list. A list of rules, one rule, or a mapping with ``relabel_configs`` (or the metric or
    write ones) as pasted from a config. Errors name the rule, the key and the line."""
    locations: Mapping[str, Location] = {}
    plain: Callable[[Tree], object] = relabel_plain
    tree: object = raw
    if isinstance(raw, str):
        composed = compose(raw, file="rules")
        if composed.problems:
            raise composed.problems[0]
        tree, locations = composed.tree, composed.locations
    else:
        plain = _unchanged  # JSON: the types are what they say
    base, single = "", False
    if isinstance(tree, dict):
        listed = next((key for key in _RULE_LISTS if key in tree), None)
        if listed is None:
            tree, single = [tree], True
        else:
            tree, base = tree[listed], listed
    if tree is None:
        tree = []
    if not isinstance(tree, list):
        raise ConfigError("expected a list of relabel rules", path="rules")
    rules = []
    for i, item in enumerate(tree):
        where = base if single else idx(base, i)
        try:
            rules.append(parse_rule(plain(item), context="target"))
        except ConfigError as exc:
            line, column = locations.get(join(where, exc.path), locations.get(where, (0, 0)))
            path = join(idx("rules", i), exc.path) if exc.path else idx("rules", i)
            raise ConfigError(exc.message, path=path, line=line, column=column) from None
    return rules


def _unchanged(item: Tree) -> object:
    return item


class RemoteWriteHistory:
    """The last ``span`` seconds of each remote-write queue, one point every ``interval``.

    `run` (owned by the agent's TaskGroup) samples ``source`` (the queues' current numbers:
    ``name``, ``samplesSent``, ``samplesFailed``, ``samplesRetried``, ``samplesPending``);
    `annotate` adds a ``history`` to each queue's status: per-second rates between points,
    which the remote-write page draws. A ring buffer per queue bounds the memory.
    """

    def __init__(
        self,
        source: Callable[[], Sequence[Status]],
        *,
        interval: float = 10.0,
        span: float = 900.0,
    ) -> None:
        self._source = source
        self.interval = interval
        self._size = int(span / interval) + 1
        self._points: dict[str, deque[tuple[float, float, float, float, float]]] = {}
        self._clock: Callable[[], float] | None = None

    async def run(self) -> NoReturn:
        """Sample now and then every ``interval`` (drift-free) until cancelled."""
        loop = asyncio.get_running_loop()
        self._clock = loop.time
        tick = loop.time()
        while True:
            self.record(tick)
            tick += self.interval
            await asyncio.sleep(max(tick - loop.time(), 0.0))

    def record(self, now: float) -> None:
        """Append one point per queue; queues that are gone are forgotten."""
        seen: set[str] = set()
        for status in self._source():
            name = str(status["name"])
            seen.add(name)
            ring = self._points.get(name)
            if ring is None:
                ring = self._points[name] = deque(maxlen=self._size)
            ring.append(
                (
                    now,
                    _number(status.get("samplesSent")),
                    _number(status.get("samplesFailed")),
                    _number(status.get("samplesRetried")),
                    _number(status.get("samplesPending")),
                )
            )
        for name in [n for n in self._points if n not in seen]:
            del self._points[name]

    def annotate(self, statuses: Sequence[Status]) -> list[dict[str, object]]:
        """``statuses`` with ``history`` (``interval``, ``span``, ``points``) and
        ``samplesPerSecond`` (the newest rate; None before two points)."""
        now = self._clock() if self._clock is not None else None
        out: list[dict[str, object]] = []
        for status in statuses:
            ring = self._points.get(str(status["name"])) or deque()
            # Ages from now; without a running sampler (tests), from the newest point.
            reference = now if now is not None else ring[-1][0] if ring else 0.0
            points: list[dict[str, float]] = []
            previous = None
            for point in ring:
                if previous is not None:
                    dt = point[0] - previous[0]
                    points.append(
                        {
                            "ago": round(reference - point[0], 3),
                            "sent": _rate(previous[1], point[1], dt),
                            "failed": _rate(previous[2], point[2], dt),
                            "retried": _rate(previous[3], point[3], dt),
                            "pending": point[4],
                        }
                    )
                previous = point
            out.append(
                {
                    **status,
                    "samplesPerSecond": points[-1]["sent"] if points else None,
                    "history": {
                        "interval": self.interval,
                        "span": (self._size - 1) * self.interval,
                        "points": points,
                    },
                }
            )
        return out


def _number(value: object) -> float:
    return float(value) if isinstance(value, int | float) else 0.0


def _rate(before: float, after: float, dt: float) -> float:
    """Per-second increase; a counter that went down was reset (a new writer) and counts
    from zero, as PromQL's ``rate`` assumes."""
    if dt <= 0:
        return 0.0
    delta = after - before if after >= before else after
    return round(delta / dt, 3)
