"""Fetching one target's exposition: the HTTP GET and the Content-Type decision.

`Scraper` is the seam the scrape loop depends on; `HttpScraper` is the aiohttp implementation
(one per target, sharing the pool's ``ClientSession``), and tests use canned bytes instead. A
scrape returns the *uncompressed* body and the raw Content-Type; `parser_for` then decides the
parser (P3 rules, spec §4.3) after the loop has short-circuited empty bodies. A body above the
streaming threshold comes back as a stream over the open response instead, so that it is never
held whole (`collector.scrape.stream`).

Exact behaviours (spec §4.2): the P3 ``Accept`` header built from ``scrape_protocols``,
``Accept-Encoding: gzip`` (or ``identity``), ``X-Prometheus-Scrape-Timeout-Seconds`` as the
shortest decimal, one deadline for connect + headers + body, status exactly 200, and
``body_size_limit`` applied to the uncompressed size (a body of exactly ``limit`` bytes fails).
aiohttp's own decompression is off: we gunzip ourselves, capped by the same limit.

Prometheus counterpart: ``targetScraper`` in ``scrape/scrape.go``, ``acceptHeader``,
``config.ScrapeProtocolsHeaders``, ``textparse.extractMediaType``.
"""

from __future__ import annotations

import asyncio
import base64
import ssl
import urllib.request
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Literal, Protocol
from urllib.parse import urlsplit

import aiohttp
from multidict import CIMultiDict
from yarl import URL

import collector
from collector.config import HTTPClientConfig, ScrapeConfig, ScrapeProtocol
from collector.errors import (
    ScrapeBodyTooLarge,
    ScrapeContentTypeError,
    ScrapeError,
    ScrapeHTTPError,
    ScrapeTimeout,
)
from collector.httpclient import build_ssl_context, read_secret
from collector.scrape.stream import STREAM_THRESHOLD, BodyReader, BodyStream, read_head

__all__ = [
    "DEFAULT_PROTOCOLS",
    "DEFAULT_PROTO_FIRST_PROTOCOLS",
    "PROTOCOL_MEDIA_TYPES",
    "USER_AGENT",
    "Format",
    "HttpScraper",
    "ScrapeResponse",
    "Scraper",
    "accept_header",
    "build_ssl_context",
    "finish_body",
    "new_session",
    "parser_for",
    "timeout_header",
]

USER_AGENT = f"collector/{collector.__version__}"

PROTOCOL_MEDIA_TYPES: dict[str, str] = {
    "PrometheusProto": (
        "application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited"
    ),
    "PrometheusText0.0.4": "text/plain;version=0.0.4",
    "PrometheusText1.0.0": "text/plain;version=1.0.0",
    "OpenMetricsText0.0.1": "application/openmetrics-text;version=0.0.1",
    "OpenMetricsText1.0.0": "application/openmetrics-text;version=1.0.0",
}
"""``config.ScrapeProtocolsHeaders``."""

DEFAULT_PROTOCOLS: tuple[ScrapeProtocol, ...] = (
    "OpenMetricsText1.0.0",
    "OpenMetricsText0.0.1",
    "PrometheusText1.0.0",
    "PrometheusText0.0.4",
)
DEFAULT_PROTO_FIRST_PROTOCOLS: tuple[ScrapeProtocol, ...] = ("PrometheusProto", *DEFAULT_PROTOCOLS)

_ESCAPED_PROTOCOLS = frozenset({"PrometheusText1.0.0", "OpenMetricsText1.0.0"})
# RFC 2045 token characters (what Go's mime.ParseMediaType accepts in type and parameter names).
_TSPECIALS = frozenset('()<>@,;:\\"/[]?= ')

Format = Literal["text", "openmetrics", "protobuf"]
"""Which parser a body goes to (``protobuf``: `collector.model.textparse.protobuf`)."""

_NO_CLIENT_TIMEOUT = aiohttp.ClientTimeout()
"""aiohttp's own timers off: the scrape's one ``asyncio.timeout`` covers connect, headers, body
(and aiohttp would otherwise arm its 5-minute session default per request)."""


@dataclass(frozen=True, slots=True)
class ScrapeResponse:
    """A successful fetch: the uncompressed body and the Content-Type (``""`` if none)."""

    body: bytes
    content_type: str
    stream: BodyReader | None = None
    """A body too large to hold (`collector.scrape.stream`): read it from here, not ``body``
    (which is then empty); whoever gets the response closes it."""


class Scraper(Protocol):
    """Fetches one target's body; raises `ScrapeError` (a subclass) on any failure."""

    async def scrape(self) -> ScrapeResponse:
        """One GET within the target's timeout."""
        ...


def accept_header(protocols: Sequence[ScrapeProtocol], *, escaping: str = "allow-utf-8") -> str:
    """The ``Accept`` value for ``scrape_protocols``: ``q=0.6``, ``0.5``, ... then ``*/*``."""
    values: list[str] = []
    weight = len(PROTOCOL_MEDIA_TYPES) + 1
    for protocol in protocols:
        value = PROTOCOL_MEDIA_TYPES[protocol]
        if protocol in _ESCAPED_PROTOCOLS:
            value += f";escaping={escaping}"
        values.append(f"{value};q=0.{weight}")
        weight -= 1
    values.append(f"*/*;q=0.{weight}")
    return ",".join(values)


def scrape_protocols(cfg: ScrapeConfig) -> tuple[ScrapeProtocol, ...]:
    """The configured protocols, or P3's dynamic default (protobuf first with native histograms)."""
    if cfg.scrape_protocols:
        return cfg.scrape_protocols
    return DEFAULT_PROTO_FIRST_PROTOCOLS if cfg.scrape_native_histograms else DEFAULT_PROTOCOLS


def timeout_header(timeout: float) -> str:
    """Seconds as the shortest decimal (Go ``FormatFloat(s, 'f', -1, 64)``): ``10``, ``0.5``."""
    text = format(Decimal(repr(float(timeout))), "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text


def _parse_media_type(content_type: str) -> str | None:
    """The lower-cased ``type/subtype`` of a Content-Type, or None when it does not parse."""
    head, *params = content_type.split(";")
    media = head.strip().lower()
    kind, slash, sub = media.partition("/")
    if not slash or not _is_token(kind) or not _is_token(sub):
        return None
    for param in params:
        param = param.strip()
        if not param:
            continue
        name, eq, _value = param.partition("=")
        if not eq or not _is_token(name.strip()):
            return None
    return media


def _is_token(s: str) -> bool:
    return bool(s) and all(0x20 < ord(c) < 0x7F and c not in _TSPECIALS for c in s)


def _format_of(media: str) -> Format | None:
    if media == "application/openmetrics-text":
        return "openmetrics"
    if media == "text/plain":
        return "text"
    if media == "application/vnd.google.protobuf":
        # Like Prometheus, the media type alone decides: proto=/encoding= are not checked.
        return "protobuf"
    return None


_CHOSEN: dict[tuple[str, ScrapeProtocol | None], Format] = {}
"""`parser_for`'s answers: a target sends the same Content-Type every scrape, and parsing it
(media type, parameters, token checks) was 2 % of W1's CPU. Emptied past `_CHOSEN_MAX`."""
_CHOSEN_MAX = 1024


def parser_for(content_type: str, fallback: ScrapeProtocol | None) -> Format:
    """Choose the parser from the Content-Type (P3 rules), else ``fallback_scrape_protocol``.

    Raises `ScrapeContentTypeError` with Prometheus's exact messages when neither works.
    """
    key = (content_type, fallback)
    chosen = _CHOSEN.get(key)
    if chosen is None:
        if len(_CHOSEN) >= _CHOSEN_MAX:
            _CHOSEN.clear()
        chosen = _CHOSEN[key] = _choose_parser(content_type, fallback)
    return chosen


def _choose_parser(content_type: str, fallback: ScrapeProtocol | None) -> Format:
    if content_type:
        media = _parse_media_type(content_type)
        if media is None:
            if fallback is None:
                raise ScrapeContentTypeError(
                    f"cannot parse Content-Type {_quote(content_type)} "
                    "and no fallback_scrape_protocol for target"
                )
        else:
            chosen = _format_of(media)
            if chosen is not None:
                return chosen
            if fallback is None:
                raise ScrapeContentTypeError(
                    f"received unsupported Content-Type {_quote(content_type)} "
                    "and no fallback_scrape_protocol specified for target"
                )
    elif fallback is None:
        raise ScrapeContentTypeError(
            "non-compliant scrape target sending blank Content-Type and no "
            "fallback_scrape_protocol specified for target"
        )
    assert fallback is not None
    chosen = _format_of(PROTOCOL_MEDIA_TYPES[fallback].split(";", 1)[0])
    assert chosen is not None  # every protocol's media type has a parser
    return chosen


def _quote(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def new_session() -> aiohttp.ClientSession:
    """The pool's session: no auto-decompression, no cookies, no connection cap.

    Everything per-target (TLS, proxy, auth, headers, redirects) is passed per request, so a
    pool reload does not need a new session.
    """
    return aiohttp.ClientSession(
        auto_decompress=False,
        cookie_jar=aiohttp.DummyCookieJar(),
        connector=aiohttp.TCPConnector(limit=0),
        skip_auto_headers=("User-Agent", "Accept-Encoding", "Accept"),
    )


def _proxy_for(url: str, http: HTTPClientConfig) -> str | None:
    """The proxy for ``url``: ``proxy_url`` (minus ``no_proxy`` hosts) or the environment's."""
    host = urlsplit(url).hostname or ""
    if http.proxy_url:
        for entry in http.no_proxy.split(","):
            entry = entry.strip().lower()
            if entry and (host == entry or host.endswith("." + entry.lstrip("."))):
                return None
        return http.proxy_url
    if http.proxy_from_environment:
        if urllib.request.proxy_bypass(host):
            return None
        scheme = urlsplit(url).scheme
        return urllib.request.getproxies().get(scheme)
    return None


class HttpScraper:
    """`Scraper` over aiohttp for one target (Prometheus ``targetScraper``)."""

    __slots__ = (
        "_body_limit",
        "_gzip",
        "_headers",
        "_http",
        "_proxy",
        "_proxy_headers",
        "_redirects",
        "_server_name",
        "_session",
        "_ssl",
        "_stream_threshold",
        "_timeout",
        "_url",
        "url",
    )

    def __init__(
        self,
        *,
        session: aiohttp.ClientSession,
        url: str,
        timeout: float,
        cfg: ScrapeConfig,
        ssl_context: ssl.SSLContext | None = None,
        stream_threshold: int = STREAM_THRESHOLD,
    ) -> None:
        self._session = session
        self._stream_threshold = stream_threshold
        self.url = url
        # Parsed once: a str would be parsed into a yarl URL by aiohttp on every request.
        self._url = URL(url)
        self._timeout = timeout
        self._redirects = cfg.http_client.follow_redirects
        self._http = cfg.http_client
        self._body_limit = cfg.body_size_limit
        self._gzip = cfg.enable_compression
        escaping = "underscores" if cfg.metric_name_validation_scheme == "legacy" else "allow-utf-8"
        headers: CIMultiDict[str] = CIMultiDict()
        for name, values in cfg.http_client.http_headers:
            for value in values:
                headers.add(name, value)
        headers["Accept"] = accept_header(scrape_protocols(cfg), escaping=escaping)
        headers["Accept-Encoding"] = "gzip" if cfg.enable_compression else "identity"
        headers["User-Agent"] = USER_AGENT
        headers["X-Prometheus-Scrape-Timeout-Seconds"] = timeout_header(timeout)
        self._headers = headers
        self._ssl: ssl.SSLContext | bool = ssl_context if ssl_context is not None else True
        self._server_name = cfg.http_client.tls_config.server_name or None
        self._proxy = _proxy_for(url, cfg.http_client)
        self._proxy_headers: CIMultiDict[str] | None = None
        if cfg.http_client.proxy_connect_header:
            self._proxy_headers = CIMultiDict(
                (name, value)
                for name, values in cfg.http_client.proxy_connect_header
                for value in values
            )

    # What `collector.scrape.fasthttp` sends and decides by, read from here.
    @property
    def timeout(self) -> float:
        """The scrape's one deadline, seconds."""
        return self._timeout

    @property
    def follows_redirects(self) -> bool:
        return self._redirects

    @property
    def body_limit(self) -> int:
        """``body_size_limit`` (0: none)."""
        return self._body_limit

    @property
    def parsed_url(self) -> URL:
        """The target URL as aiohttp requests it (parsed once)."""
        return self._url

    @property
    def stream_threshold(self) -> int:
        """Bodies above this many bytes are parsed as a stream."""
        return self._stream_threshold

    @property
    def has_proxy(self) -> bool:
        return self._proxy is not None or self._proxy_headers is not None

    @property
    def headers(self) -> CIMultiDict[str]:
        """The static request headers (auth is `authorization`, per request)."""
        return self._headers

    def authorization(self) -> str | None:
        """The ``Authorization`` value, secrets re-read from their files; None without auth."""
        http = self._http
        if http.basic_auth is not None:
            ba = http.basic_auth
            user = read_secret(ba.username, ba.username_file)
            password = read_secret(ba.password, ba.password_file)
            token = base64.b64encode(f"{user}:{password}".encode()).decode("ascii")
            return f"Basic {token}"
        if http.authorization is not None:
            auth = http.authorization
            credentials = read_secret(auth.credentials, auth.credentials_file)
            return f"{auth.type} {credentials}"
        return None

    def _request_headers(self) -> CIMultiDict[str]:
        """Static headers plus auth, whose secrets are re-read from files each time."""
        value = self.authorization()
        if value is None:
            return self._headers
        headers = self._headers.copy()
        headers["Authorization"] = value
        return headers

    async def scrape(self) -> ScrapeResponse:
        """GET the target within one deadline; the body is returned uncompressed.

        A body above the streaming threshold comes back as ``stream`` over the open response.
        """
        try:
            headers = self._request_headers()
        except OSError as exc:
            raise ScrapeError(f"unable to read credentials: {exc}") from exc
        threshold = self._stream_threshold
        stream: BodyStream | None = None
        try:
            async with asyncio.timeout(self._timeout) as deadline:
                # Not "async with session.get()": a streamed body outlives this block.
                resp = await self._session.get(
                    self._url,
                    headers=headers,
                    allow_redirects=self._redirects,
                    proxy=self._proxy,
                    proxy_headers=self._proxy_headers,
                    ssl=self._ssl,
                    server_hostname=self._server_name,
                    timeout=_NO_CLIENT_TIMEOUT,
                )
                try:
                    if resp.status != 200:
                        raise ScrapeHTTPError(resp.status, resp.reason or "")
                    content_type = resp.headers.get("Content-Type", "")
                    gzipped = resp.headers.get("Content-Encoding", "").lower() == "gzip"
                    limit = 0 if gzipped else self._body_limit
                    head, complete = await read_head(resp, limit=limit, threshold=threshold)
                    if not complete:
                        when = deadline.when()
                        assert when is not None  # asyncio.timeout(float) always has one
                        budget = when - asyncio.get_running_loop().time()
                        stream = BodyStream(
                            response=resp,
                            head=head,
                            gzipped=gzipped,
                            limit=self._body_limit,
                            budget=budget,
                            url=self.url,
                        )
                finally:
                    if stream is None:
                        resp.release()
        except TimeoutError as exc:
            raise ScrapeTimeout(f'Get "{self.url}": context deadline exceeded') from exc
        except aiohttp.ClientError as exc:
            raise ScrapeError(f'Get "{self.url}": {str(exc) or type(exc).__name__}') from exc
        if stream is not None:
            return ScrapeResponse(body=b"", content_type=content_type, stream=stream)
        return finish_body(
            head[0] if len(head) == 1 else b"".join(head),
            gzipped=gzipped,
            content_type=content_type,
            limit=self._body_limit,
            threshold=threshold,
            url=self.url,
        )


def finish_body(
    raw: bytes, *, gzipped: bool, content_type: str, limit: int, threshold: int, url: str
) -> ScrapeResponse:
    """A whole body as read off the wire -> the response: gunzipped within ``limit``
    (``body_size_limit``), or streamed from memory when it gunzips past ``threshold``."""
    if not gzipped:
        return ScrapeResponse(body=raw, content_type=content_type)
    if 0 < limit <= threshold:
        return ScrapeResponse(body=_gunzip(raw, limit), content_type=content_type)
    try:
        body = _gunzip(raw, threshold + 1)
    except ScrapeBodyTooLarge:  # above the threshold once gunzipped: stream it from memory
        stream = BodyStream(
            response=None, head=[raw], gzipped=True, limit=limit, budget=0.0, url=url
        )
        return ScrapeResponse(body=b"", content_type=content_type, stream=stream)
    return ScrapeResponse(body=body, content_type=content_type)


def _gunzip(data: bytes, limit: int) -> bytes:
    """Decompress (multi-member) gzip, failing once ``limit`` output bytes are reached."""
    out: list[bytes] = []
    size = 0
    while data:
        d = zlib.decompressobj(16 + zlib.MAX_WBITS)
        try:
            chunk = d.decompress(data, limit - size if limit > 0 else 0)
        except zlib.error as exc:
            raise ScrapeError(f"gzip: {exc}") from exc
        size += len(chunk)
        out.append(chunk)
        if limit > 0 and (size >= limit or d.unconsumed_tail):
            raise ScrapeBodyTooLarge()
        if not d.eof:
            raise ScrapeError("gzip: unexpected EOF")
        data = d.unused_data
    return b"".join(out)
