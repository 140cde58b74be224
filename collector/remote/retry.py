"""What to do after a failed POST, and how to say so without flooding the log.

Pipeline position: used by the shard senders of `collector.remote.delivery` between
`collector.remote.client.WriteClient.send` (which classifies an answer into the error tree) and
the next attempt.

`retry_wait` is the whole retry policy as one pure function, tested by table:

==========================================  =================================================
outcome                                     what happens
==========================================  =================================================
5xx, connection refused/reset, timeout      retry after the backoff (exponential, jittered)
429 (``retry_on_http_429``, default true)   retry after max(``Retry-After``, backoff)
5xx with ``Retry-After``                    retry after max(``Retry-After``, backoff)
any other status (400, 401, 403, 404, 413)  not retried: the batch is dropped and counted
==========================================  =================================================

The backoff starts at ``min_backoff`` and doubles per attempt up to ``max_backoff``; each wait is
scaled by a random factor in ``[1 - jitter, 1 + jitter]`` so that many agents that lost the same
receiver do not come back in lockstep (Prometheus has no jitter; vmagent does). ``Retry-After``
is a floor, never shortened by jitter: the receiver asked for it.

`FailureLog` logs a destination's failures once per state change: the first failure (with the
error), then one summary per ``summary_interval`` while it lasts (attempts, samples dropped, the
last error), then the recovery. Shards share one, so a 60 s outage is a handful of lines, not one
per shard per retry.

Prometheus counterpart: ``storage/remote/queue_manager.go`` (``sendWriteRequestWithBackoff``),
``storage/remote/client.go`` (``RecoverableError``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from collector.errors import NonRecoverableWriteError, RecoverableWriteError

__all__ = ["FailureLog", "next_backoff", "retry_wait"]


def next_backoff(backoff: float, *, min_backoff: float, max_backoff: float) -> float:
    """The backoff after one more failure: doubled, within ``[min_backoff, max_backoff]``."""
    return max(min_backoff, min(backoff * 2, max_backoff))


def retry_wait(
    error: BaseException,
    *,
    backoff: float,
    max_backoff: float,
    jitter: float,
    rand: Callable[[], float],
) -> float | None:
    """Seconds to wait before the next attempt, or None when the batch must not be retried.

    ``backoff`` is the current (un-jittered) backoff; ``rand()`` returns a float in [0, 1).
    Errors outside the write-error tree are bugs; they are retried like transport errors so a
    bug never loses data silently (STYLE rule 3: errors are data inside a loop).
    """
    if isinstance(error, NonRecoverableWriteError):
        return None
    wait = min(backoff, max_backoff)
    if jitter:
        wait *= 1.0 + jitter * (2.0 * rand() - 1.0)
    if isinstance(error, RecoverableWriteError) and error.retry_after > 0:
        wait = max(wait, error.retry_after)
    return wait


class FailureLog:
    """Per-destination failure logging: first failure, periodic summary, recovery."""

    __slots__ = (
        "_attempts",
        "_clock",
        "_dropped",
        "_interval",
        "_last_error",
        "_last_summary",
        "_log",
        "_name",
        "_since",
    )

    def __init__(
        self,
        name: str,
        *,
        clock: Callable[[], float],
        logger: logging.Logger,
        summary_interval: float = 60.0,
    ) -> None:
        self._name = name
        self._clock = clock
        self._log = logger
        self._interval = summary_interval
        self._since: float | None = None
        self._last_summary = 0.0
        self._attempts = 0
        self._dropped = 0
        self._last_error = ""

    @property
    def failing(self) -> bool:
        """True between a failure and the next success."""
        return self._since is not None

    def failed(self, error: BaseException, *, dropped: int = 0, wait: float | None = None) -> None:
        """One failed attempt; ``dropped`` samples were given up on, ``wait`` s until retry."""
        now = self._clock()
        self._attempts += 1
        self._dropped += dropped
        self._last_error = _describe(error)
        if self._since is None:
            self._since = self._last_summary = now
            if dropped:
                self._log.error(
                    "remote_write %s: non-recoverable error, dropping %d samples: %s "
                    "(further failures are summarised every %.0fs)",
                    self._name,
                    dropped,
                    self._last_error,
                    self._interval,
                )
            else:
                self._log.warning(
                    "remote_write %s: failed to send, retrying in %.2fs: %s "
                    "(further failures are summarised every %.0fs)",
                    self._name,
                    wait or 0.0,
                    self._last_error,
                    self._interval,
                )
                # A bug outside the error tree deserves its traceback, once.
                if not isinstance(error, (RecoverableWriteError, NonRecoverableWriteError)):
                    self._log.error("remote_write %s: unexpected error", self._name, exc_info=error)
            return
        if now - self._last_summary >= self._interval:
            self._last_summary = now
            self._log.warning(
                "remote_write %s: still failing after %.0fs: %d failed attempts, %d samples "
                "dropped; last error: %s",
                self._name,
                now - self._since,
                self._attempts,
                self._dropped,
                self._last_error,
            )

    def succeeded(self) -> None:
        """A request was acknowledged: log the recovery if we were failing."""
        if self._since is None:
            return
        self._log.info(
            "remote_write %s: sending again after %.1fs: %d failed attempts, %d samples dropped",
            self._name,
            self._clock() - self._since,
            self._attempts,
            self._dropped,
        )
        self._since = None
        self._attempts = 0
        self._dropped = 0


def _describe(error: BaseException) -> str:
    text = str(error)
    return text if text else type(error).__name__
