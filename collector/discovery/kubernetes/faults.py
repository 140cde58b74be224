"""Why a list or watch failed, said once and in words that name the cause (issue 13 §2).

Place in the pipeline: `collector.discovery.kubernetes.informer` turns every answer it cannot
use into a `retry.Gone` or `retry.Restart` (`answer_error` words the HTTP statuses,
`connection_lost` and `stalled` the broken streams) and hands each failure to its `Diagnosis`,
which writes the log line and picks the ``reason`` of
``collector_kubernetes_watch_restarts_total``. What happens next (relist, or back off and watch
again) is `retry`'s business, not this module's.

One failure cannot be named from the answer alone: a 403. kube-apiserver serves requests as
soon as its port opens, before the informers behind its RBAC authorizer have synced, so for a
second or three after every start it denies everyone outside ``system:masters`` with the very
message a missing RoleBinding gives (``pods is forbidden: User "prom" cannot watch resource
"pods" ...``; observed on v1.20.2 by ``tests/integration/test_kube_faults.py``). Logged as it
stands, an API-server restart reads as an RBAC misconfiguration. So a 403 asks ``/readyz``,
which every user may read once RBAC is up (the ``system:public-info-viewer`` binding):

- 200: the server is ready, the 403 is a real missing permission: an error naming the rule to
  grant, once per rule;
- a 5xx (start-up hooks not finished), a 401/403 (the authorizer does not even let us read
  /readyz yet) or no answer: the server is starting: a warning says so and the restart counts as
  ``not_ready``;
- 404 (no /readyz, e.g. a proxy that does not forward it): no evidence, the 403 is taken at its
  word.

A 403 that lasts ``grace`` seconds of backoff is a missing permission whatever /readyz says (a
cluster that hides /readyz from us must not hide its RBAC errors for ever).

Prometheus counterpart: none; client-go's reflector logs ``failed to list *v1.Pod: pods is
forbidden: ...`` in both cases.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Awaitable, Callable

import aiohttp

from collector.discovery.kubernetes.retry import Gone, Restart
from collector.discovery.kubernetes.wire import GROUPS, status_error
from collector.kubernetes.connection import Connection

__all__ = [
    "Diagnosis",
    "Forbidden",
    "answer_error",
    "connection_lost",
    "error_event",
    "readyz",
    "stalled",
]

READYZ_TIMEOUT = 5.0
"""Seconds the /readyz probe may take (it answers in milliseconds when the server is up)."""


class Forbidden(Restart):
    """403: RBAC denies ``verb``, or the server is starting; `Diagnosis` tells which."""

    def __init__(self, verb: str, server_said: str) -> None:
        super().__init__("forbidden", f"{verb}: {server_said}")
        self.verb = verb
        self.server_said = server_said
        """The status and the server's message (``403 Forbidden: pods is forbidden: ...``)."""


def answer_error(status: int, body: bytes, *, retry_after: str | None, verb: str) -> Gone | Restart:
    """What a non-200 answer to a list or watch stands for: `Gone`, `Forbidden` or `Restart`.

    ``retry_after`` is the ``Retry-After`` header: the wait after a 429 or 5xx is at least that.
    """
    err = status_error(status, body)
    if status == 410:
        return Gone(f"{verb}: {err}")
    if status == 401:
        return Restart(
            "unauthorized",
            f"{verb}: {err} (the API server rejected our credentials: expired or rotated?);"
            " re-reading them",
        )
    if status == 403:
        return Forbidden(verb, str(err))
    wait = 0.0
    if status == 429 or status >= 500:
        with contextlib.suppress(ValueError):
            wait = max(0.0, float(retry_after or 0))
    if status == 429:
        cause = "the API server is overloaded and throttles us"
    elif status >= 500:
        cause = "the API server (or a proxy in front of it) failed"
    else:
        cause = "the API server refused the request"
    asked = f", Retry-After {retry_after}s" if wait else ""
    return Restart(f"http_{status}", f"{verb}: {err} ({cause}{asked})", retry_after=wait)


def error_event(code: object, reason: object, message: object) -> Gone | Restart:
    """A watch ``ERROR`` event: 410 is `Gone`, any other code a `Restart`.

    Fields of another JSON type than a Status has are dropped: formatting a deeply nested
    value overflows repr, and any code would be a new restart-counter label (fuzzing).
    """
    if not (type(code) is int and 100 <= code <= 599):
        code = 0
    reason = reason if isinstance(reason, str) else ""
    message = message if isinstance(message, str) else ""
    if code == 410:
        return Gone(f"watch: 410 {reason}: {message}")
    return Restart(f"http_{code}", f"watch: error event: {code} {reason}: {message}")


def connection_lost(verb: str, exc: BaseException, *, pending: int = 0) -> Restart:
    """The connection broke; ``pending`` bytes of an unfinished watch line were in hand."""
    if pending:
        where = f"connection lost mid-event ({pending} bytes of an unfinished line dropped)"
    else:
        where = "connection lost"
    return Restart("disconnected", f"{verb}: {where}: {exc!r}")


def stalled(deadline: float) -> Restart:
    """No byte for ``deadline`` seconds on a watch whose connection stayed open."""
    return Restart(
        "stalled",
        f"watch stalled: no data for {deadline:g}s while the connection stayed open (the"
        " server ends a watch at its timeoutSeconds; something between us holds it);"
        " reconnecting",
    )


async def readyz(connection: Connection) -> int | None:
    """``GET /readyz`` with our credentials: its status, or None when nothing answered."""
    if connection.session is None:
        return None
    try:
        async with connection.get(
            "/readyz", client_timeout=aiohttp.ClientTimeout(total=READYZ_TIMEOUT)
        ) as resp:
            await resp.read()
            return resp.status
    except (aiohttp.ClientError, OSError, TimeoutError):
        return None


class Diagnosis:
    """One informer's failures put into words: each change of cause is logged once.

    ``state`` is the cause of the current failure streak ("" while healthy); `recovered` ends
    the streak (and says so when there was one).
    """

    def __init__(
        self,
        *,
        logger: logging.Logger,
        where: Callable[[], str],
        resource: str,
        namespace: str,
        probe: Callable[[], Awaitable[int | None]],
        grace: float,
    ) -> None:
        self._log = logger
        self._where = where
        self._resource = resource
        self._namespace = namespace
        self._probe = probe
        self._grace = grace
        self.state = ""
        self._reported_rules: set[str] = set()
        self._denied_for = 0.0
        """Backoff waited since the first 403 of this streak (deterministic, unlike a clock)."""
        self._denied_for_real = False
        """A 403 of this streak was taken as a missing permission: later ones are too."""

    def report(self, state: str, message: str) -> None:
        """Warn with ``message`` unless the streak already has this cause."""
        if state != self.state:
            self._log.warning("kubernetes %s: %s", self._where(), message)
            self.state = state

    def recovered(self) -> None:
        """A list or watch worked: the streak is over."""
        self._denied_for = 0.0
        self._denied_for_real = False
        if self.state:
            self._log.info("kubernetes %s: recovered", self._where())
            self.state = ""

    def expired(self, gone: Gone) -> None:
        """410: not a failure, but a relist costs the API server a full LIST: say why."""
        self._log.info(
            "kubernetes %s: %s: resource version expired, relisting", self._where(), gone
        )

    async def failed(self, restart: Restart, *, wait: float) -> str:
        """Log ``restart`` (once per change of cause); the reason label to count it under.

        ``wait`` is the backoff about to be slept: a 403 streak's age is the sum of them.
        """
        if isinstance(restart, Forbidden):
            return await self._forbidden(restart, wait)
        self.report(restart.reason, str(restart))
        return restart.reason

    async def _forbidden(self, denied: Forbidden, wait: float) -> str:
        waited = self._denied_for
        self._denied_for += wait
        if not self._denied_for_real and waited < self._grace:
            ready = await self._probe()
            if ready not in (200, 404):
                answer = f"answers {ready}" if ready is not None else "does not answer"
                self.report(
                    "not_ready",
                    f"API server not ready: {denied} while /readyz {answer} (a starting API"
                    " server denies requests until its RBAC authorizer has synced; retrying,"
                    f" reported as a missing RBAC permission if it lasts {self._grace:g}s)",
                )
                return "not_ready"
        self._denied_for_real = True
        rule = self._rule(denied.verb)
        if rule not in self._reported_rules:
            self._reported_rules.add(rule)
            self._log.error(
                "kubernetes SD is missing an RBAC permission: %s (server said: %s)",
                rule,
                denied.server_said,
            )
        self.report("forbidden", str(denied))
        return "forbidden"

    def _rule(self, verb: str) -> str:
        group = GROUPS.get(self._resource, "")
        scope = f'the namespace "{self._namespace}"' if self._namespace else "the cluster scope"
        return f"{verb} {self._resource}{f'.{group}' if group else ''} in {scope}"
