"""The remote-write HTTP client: one POST per attempt, outcome mapped to the error tree.

`WriteClient.send` POSTs a compressed body with the exact headers of spec §6.1 (remote write
1.0) or of the 2.0 spec (``v2=True``), configured headers and auth, and turns the answer into
`Written` (2xx: the ``X-Prometheus-Remote-Write-*-Written`` counts a 2.0 receiver reports),
`RecoverableWriteError` (5xx, 429 when ``retry_on_http_429``, transport errors and timeouts;
with the parsed ``Retry-After``) or `RefusedWrite` (any other status, with the written counts).
Retrying, and falling back from 2.0 to 1.0, is the caller's job (`collector.remote.sender`).

Credential files (``password_file``, ``credentials_file``) are re-read on every request, so a
rotated token is picked up without a reload, as Prometheus does.

Prometheus counterpart: ``storage/remote/client.go`` (``Client.Store``), ``config/http_config.go``
in prometheus/common.
"""

from __future__ import annotations

import base64
import email.utils
import ssl
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import aiohttp
from yarl import URL

from collector import __version__
from collector.config import HTTPClientConfig, RemoteWriteConfig
from collector.errors import NonRecoverableWriteError, RecoverableWriteError
from collector.httpclient import build_ssl_context, read_secret
from collector.remote.codec2 import CONTENT_TYPE_V1, CONTENT_TYPE_V2

__all__ = [
    "USER_AGENT",
    "WRITTEN_HEADERS",
    "RefusedWrite",
    "WriteClient",
    "Written",
    "build_ssl_context",
    "parse_retry_after",
    "parse_written",
]

USER_AGENT = f"collector/{__version__}"

_ERROR_BODY_LIMIT = 1024
"""Bytes of an error response quoted in the error message (spec §6.1)."""


def parse_retry_after(value: str | None, *, now: float) -> float:
    """Seconds to wait from a ``Retry-After`` value (delta-seconds or HTTP-date); 0 if unusable.

    ``now`` is wall-clock seconds since the epoch, for the HTTP-date form.
    """
    if not value:
        return 0.0
    value = value.strip()
    if value.isdigit():
        return float(int(value))
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return 0.0
    if when.tzinfo is None:
        return 0.0
    return max(when.timestamp() - now, 0.0)


WRITTEN_HEADERS = (
    "X-Prometheus-Remote-Write-Samples-Written",
    "X-Prometheus-Remote-Write-Histograms-Written",
    "X-Prometheus-Remote-Write-Exemplars-Written",
)
"""The 2.0 response headers a receiver MUST send (spec §Required Written Response Headers)."""


@dataclass(frozen=True, slots=True)
class Written:
    """What a receiver says it wrote of one request (2.0 response headers)."""

    samples: int = 0
    histograms: int = 0
    exemplars: int = 0
    confirmed: bool = False
    """At least one of the headers was there: only then can the counts be trusted (a 1.0
    receiver sends none, and a missing header otherwise means 0), as Prometheus reads them."""

    @property
    def all_samples(self) -> int:
        """Float and histogram samples written (what a batch's sample count counts)."""
        return self.samples + self.histograms


def parse_written(headers: Mapping[str, str]) -> Written:
    """The written counts of a response; an empty or unparsable value counts as 0."""
    counts = [0, 0, 0]
    confirmed = False
    for i, name in enumerate(WRITTEN_HEADERS):
        value = headers.get(name, "").strip()
        if value:
            confirmed = True
            try:
                counts[i] = max(int(value), 0)
            except ValueError:
                counts[i] = 0
    return Written(counts[0], counts[1], counts[2], confirmed)


class RefusedWrite(NonRecoverableWriteError):
    """A status that must not be retried (4xx but 429), with what the receiver says it wrote."""

    def __init__(self, message: str, *, status: int, written: Written) -> None:
        super().__init__(message, status=status)
        self.written = written


class WriteClient:
    """Sends compressed ``WriteRequest`` bodies to one ``remote_write`` URL."""

    __slots__ = (
        "_config",
        "_http",
        "_retry_429",
        "_session",
        "_ssl",
        "_static_headers",
        "_static_headers_v2",
        "_timeout",
        "_url",
        "_wall",
    )

    def __init__(
        self,
        session: aiohttp.ClientSession,
        config: RemoteWriteConfig,
        *,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        """Use ``session`` (owned by the caller) for ``config.url``."""
        self._session = session
        self._config = config
        self._http: HTTPClientConfig = config.http_client
        self._retry_429 = config.queue_config.retry_on_http_429
        self._timeout = aiohttp.ClientTimeout(total=config.remote_timeout)
        self._url = URL(config.url)  # parsed once, not by aiohttp on every POST
        self._wall = wall_clock
        self._ssl: ssl.SSLContext | None = None
        if config.url.startswith("https:"):
            self._ssl = build_ssl_context(self._http.tls_config)
        headers: dict[str, str] = {}
        for name, values in self._http.http_headers:
            if values:
                headers[name] = ", ".join(values)
        headers.update(config.headers)
        # The protocol headers come last: the config loader refuses overriding them (spec §6.1).
        headers.update(
            {
                "Content-Encoding": "snappy",
                "Content-Type": CONTENT_TYPE_V1,
                "X-Prometheus-Remote-Write-Version": "0.1.0",
                "User-Agent": USER_AGENT,
            }
        )
        self._static_headers = headers
        self._static_headers_v2 = {
            **headers,
            "Content-Type": CONTENT_TYPE_V2,
            "X-Prometheus-Remote-Write-Version": "2.0.0",
        }

    def _headers(self, attempt: int, v2: bool) -> dict[str, str]:
        headers = dict(self._static_headers_v2 if v2 else self._static_headers)
        if attempt > 0:
            headers["Retry-Attempt"] = str(attempt)
        basic = self._http.basic_auth
        if basic is not None:
            user = read_secret(basic.username, basic.username_file)
            password = read_secret(basic.password, basic.password_file)
            token = base64.b64encode(f"{user}:{password}".encode()).decode("ascii")
            headers["Authorization"] = f"Basic {token}"
        auth = self._http.authorization
        if auth is not None:
            credentials = read_secret(auth.credentials, auth.credentials_file)
            headers["Authorization"] = f"{auth.type or 'Bearer'} {credentials}"
        return headers

    async def send(self, body: bytes, *, attempt: int = 0, v2: bool = False) -> Written:
        """POST ``body`` once; ``attempt`` > 0 adds ``Retry-Attempt`` (Prometheus 3.x); ``v2``
        labels it a 2.0 ``Request`` (``Content-Type``, ``X-Prometheus-Remote-Write-Version``).

        Raises `RecoverableWriteError` or `RefusedWrite`; returns the written counts on 2xx.
        """
        try:
            headers = self._headers(attempt, v2)
        except OSError as exc:
            raise RecoverableWriteError(f"cannot read credentials: {exc}") from exc
        try:
            async with self._session.post(
                self._url,
                data=body,
                headers=headers,
                timeout=self._timeout,
                ssl=self._ssl if self._ssl is not None else True,
                server_hostname=self._http.tls_config.server_name or None,
                proxy=self._http.proxy_url or None,
                allow_redirects=self._http.follow_redirects,
            ) as response:
                status = response.status
                if 200 <= status < 300:
                    await response.read()
                    return parse_written(response.headers)
                text = (await response.content.read(_ERROR_BODY_LIMIT)).decode("utf-8", "replace")
                message = f"server returned HTTP status {status} {response.reason or ''}".rstrip()
                if text:
                    message += f": {text.strip()}"
                if status >= 500 or (status == 429 and self._retry_429):
                    retry_after = parse_retry_after(
                        response.headers.get("Retry-After"), now=self._wall()
                    )
                    raise RecoverableWriteError(message, retry_after=retry_after)
                raise RefusedWrite(message, status=status, written=parse_written(response.headers))
        except aiohttp.ClientConnectorError as exc:
            # aiohttp's own text says "ssl:default" even for http:// URLs; say what happened.
            raise RecoverableWriteError(
                f"cannot connect to {exc.host}:{exc.port}: {exc.os_error.strerror or exc.os_error}"
            ) from exc
        except TimeoutError as exc:
            raise RecoverableWriteError(
                f"no answer within remote_timeout ({self._config.remote_timeout:g}s)"
            ) from exc
        except (aiohttp.ClientError, OSError) as exc:
            raise RecoverableWriteError(
                f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            ) from exc
