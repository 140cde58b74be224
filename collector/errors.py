"""The one exception tree of `collector`.

Every error the project raises on purpose is a subclass of `CollectorError`. Third-party errors
(aiohttp, yaml, kubernetes_asyncio) are converted at the boundary where they happen, with
``raise Ours(...) from exc`` so the cause stays visible. The classes say what the caller does
next, not where the error came from::

    CollectorError
    ├── ConfigError            the config is refused; ``path`` names the YAML node and
    │   │                      ``problems`` lists every problem found in the file
    │   └── ConfigFileError        the config file itself could not be read
    ├── ParseError             an exposition body is refused; the whole scrape fails
    ├── ScrapeError            one scrape attempt failed; the loop reports ``up 0`` and goes on
    │   ├── ScrapeTimeout
    │   ├── ScrapeHTTPError        non-200 status
    │   ├── ScrapeBodyTooLarge     body_size_limit reached
    │   ├── ScrapeContentTypeError unusable Content-Type and no fallback protocol
    │   └── ScrapeLimitError       sample_limit, label limits, target_limit
    ├── WriteError             one remote-write attempt failed
    │   ├── RecoverableWriteError      retry (5xx, transport, 429 when allowed); ``retry_after``
    │   └── NonRecoverableWriteError   drop the batch and count it (4xx)
    ├── DiscoveryError         a discovery provider could not refresh; it retries
    │   └── KubernetesAPIError     a list/watch answer; ``status`` and ``reason`` from the server
    └── DiskQueueError         the disk queue is unusable (corrupt segment, disk full)

Inside long-running loops these are data: they become ``up 0``, ``lastError`` and counters.
Only cancellation stops a loop.
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = [
    "CollectorError",
    "ConfigError",
    "ConfigFileError",
    "DiscoveryError",
    "DiskQueueError",
    "KubernetesAPIError",
    "NonRecoverableWriteError",
    "ParseError",
    "RecoverableWriteError",
    "ScrapeBodyTooLarge",
    "ScrapeContentTypeError",
    "ScrapeError",
    "ScrapeHTTPError",
    "ScrapeLimitError",
    "ScrapeTimeout",
    "WriteError",
]


class CollectorError(Exception):
    """Base of every error `collector` raises on purpose."""


class ConfigError(CollectorError):
    """A configuration was refused.

    ``path`` names the YAML node, e.g. ``scrape_configs[2].relabel_configs[0].regex``; ``line``
    and ``column`` (1-based, 0 when unknown) say where that node is written in ``file``.
    ``str()`` renders ``<file>:<line>:<column>: <path>: <message>`` so one line says where and
    what (parts that are unknown are left out).

    A loader that found several problems raises one `ConfigError` made by `collect`: its
    ``problems`` hold all of them in file order, its own attributes are those of the first, and
    ``str()`` shows every problem, one per line. A single error's ``problems`` is ``(self,)``.
    """

    def __init__(
        self,
        message: str,
        *,
        path: str = "",
        file: str = "",
        line: int = 0,
        column: int = 0,
        problems: Sequence[ConfigError] = (),
    ) -> None:
        self.message = message
        self.path = path
        self.file = file
        self.line = line
        self.column = column
        self._problems = tuple(problems)
        super().__init__(self.render())

    @classmethod
    def collect(cls, problems: Sequence[ConfigError]) -> ConfigError:
        """One error standing for ``problems`` (at least one): the first's attributes, all lines.

        A single problem is returned as it is.
        """
        if not problems:
            raise ValueError("ConfigError.collect needs at least one problem")
        if len(problems) == 1:
            return problems[0]
        first = problems[0]
        return cls(
            first.message,
            path=first.path,
            file=first.file,
            line=first.line,
            column=first.column,
            problems=[p for problem in problems for p in problem.problems],
        )

    @property
    def problems(self) -> tuple[ConfigError, ...]:
        """Every problem this error stands for, in file order; ``(self,)`` for a single one."""
        return self._problems or (self,)

    def location(self) -> str:
        """``file:line:column`` with the unknown parts left out (``""`` when nothing is known)."""
        where = [self.file] if self.file else []
        if self.line:
            where.append(str(self.line))
            if self.column:
                where.append(str(self.column))
        return ":".join(where)

    def render(self) -> str:
        """``[file:line:column: ][path: ]message``, one line per problem."""
        if self._problems:
            return "\n".join(problem.render() for problem in self._problems)
        where = ": ".join(part for part in (self.location(), self.path) if part)
        return f"{where}: {self.message}" if where else self.message


class ConfigFileError(ConfigError):
    """The config file could not be read at all (missing, unreadable, not UTF-8).

    Nothing in it was checked; ``collector check config`` exits 2 for it, 1 for a file it could
    read and refused.
    """


class ParseError(CollectorError):
    """An exposition body was refused; the whole scrape fails (spec §7).

    ``line`` is 1-based; ``0`` when the error is not tied to one line (missing ``# EOF``).
    """

    def __init__(self, message: str, *, line: int = 0) -> None:
        self.message = message
        self.line = line
        super().__init__(f"line {line}: {message}" if line else message)


class ScrapeError(CollectorError):
    """One scrape attempt failed; becomes the target's ``lastError`` and ``up 0``."""


class ScrapeTimeout(ScrapeError):
    """The scrape did not finish within ``scrape_timeout``."""


class ScrapeHTTPError(ScrapeError):
    """The target answered with a status other than 200."""

    def __init__(self, status: int, reason: str) -> None:
        self.status = status
        super().__init__(f"server returned HTTP status {status} {reason}".rstrip())


class ScrapeBodyTooLarge(ScrapeError):
    """The uncompressed body reached ``body_size_limit``."""

    def __init__(self) -> None:
        super().__init__("body size limit exceeded")


class ScrapeContentTypeError(ScrapeError):
    """The Content-Type is missing or unsupported and no ``fallback_scrape_protocol`` is set."""


class ScrapeLimitError(ScrapeError):
    """``sample_limit``, a label limit or ``target_limit`` was exceeded."""


class WriteError(CollectorError):
    """One remote-write attempt failed."""


class RecoverableWriteError(WriteError):
    """Retry the same payload; ``retry_after`` (seconds) overrides the backoff when > 0."""

    def __init__(self, message: str, *, retry_after: float = 0.0) -> None:
        self.retry_after = retry_after
        super().__init__(message)


class NonRecoverableWriteError(WriteError):
    """Drop the batch and count its samples as failed (``status``: the HTTP status, if any)."""

    def __init__(self, message: str, *, status: int = 0) -> None:
        super().__init__(message)
        self.status = status


class DiscoveryError(CollectorError):
    """A discovery provider could not refresh; it backs off and retries."""


class KubernetesAPIError(DiscoveryError):
    """The Kubernetes API server answered a list or watch with an error status."""

    def __init__(self, message: str, *, status: int, reason: str = "") -> None:
        self.status = status
        self.reason = reason
        super().__init__(f"{status} {reason}: {message}" if reason else f"{status}: {message}")


class DiskQueueError(CollectorError):
    """The disk queue cannot be used (corrupt segment, disk full, bad directory)."""
