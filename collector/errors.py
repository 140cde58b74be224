"""The one exception tree of `collector`.

Every error the project raises on purpose is a subclass of `CollectorError`. Third-party errors
(aiohttp, yaml, kubernetes_asyncio) are converted at the boundary where they happen, with
``raise Ours(...) from exc`` so the cause stays visible. The classes say what the caller does
next, not where the error came from::

    CollectorError
    ├── ConfigError            the config is refused; ``path`` names the YAML node
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

__all__ = [
    "CollectorError",
    "ConfigError",
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

    ``path`` names the YAML node, e.g. ``scrape_configs[2].relabel_configs[0].regex``; ``str()``
    renders ``<path>: <message>`` so one line says where and what.
    """

    def __init__(self, message: str, *, path: str = "", file: str = "") -> None:
        self.message = message
        self.path = path
        self.file = file
        super().__init__(self.render())

    def render(self) -> str:
        """The one-line form: ``[file: ]path: message``."""
        where = ": ".join(part for part in (self.file, self.path) if part)
        return f"{where}: {self.message}" if where else self.message


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
    """Drop the batch and count its samples as failed."""


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
