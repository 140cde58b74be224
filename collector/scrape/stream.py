"""Large scrape bodies: read, gunzip, parse and append chunk by chunk, never held whole.

Place in the pipeline: scrape, between `HttpScraper` and `ScrapeCache`. Normal bodies keep
the steady-state path (read whole, `IncrementalParser`, one `ScrapeCache.append`). When a body
turns out to be large (its Content-Length, the bytes read so far, or its gunzipped size pass
``stream_threshold``), the scraper hands the loop a `BodyStream` over the still-open response
instead of bytes, and the loop calls `append_stream`: chunks go to `textparse.StreamParser`,
and each segment of whole lines it returns goes to `ScrapeCache.append` before more is read.
The body, its gunzipped form and its parse are then bounded by a small multiple of the
segment size (or the longest line), whatever the body's size; what the scrape keeps (its
batch of samples until the commit, the cache's series) is per sample and per series, as for
any body. ``body_size_limit`` applies to the uncompressed bytes as they arrive.

Same outcome as the whole-body path, exactly: the body is always read to its end (or its
limit, or the deadline) before the scrape's outcome is decided, as a whole read would, so a
too-large body is `ScrapeBodyTooLarge` even when it also fails to parse; the counts of
`AppendResult` cover the whole body (``sample_limit`` is counted over the pass, not per
segment); metadata is folded over the body. The scrape timeout counts the time spent waiting
for the network only, as the whole-body read does (parsing a segment does not eat into it).
One difference: when reading fails midway (timeout, connection, limit), the series appended
from the segments before keep their place in this pass's staleness tracking (they get no
staleness marker now), as for a body that fails to parse midway (spec §4.8 quirk).

Protobuf bodies have no streaming decoder: above the threshold the loop reads them whole with
`read_all` (``body_size_limit`` still applies as they arrive) and decodes them at once.

Prometheus counterpart: none (it reads the whole body first); vmagent's stream parsing
(``-promscrape.streamParse``, automatic above ``-promscrape.minResponseSizeForStreamParse``).
"""

from __future__ import annotations

import asyncio
import zlib
from collections import deque
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Protocol

import aiohttp

from collector.errors import ParseError, ScrapeBodyTooLarge, ScrapeError, ScrapeTimeout
from collector.model.textparse import ExpositionError, StreamParser
from collector.model.textparse.stream import SEGMENT_SIZE as _PARSER_SEGMENT
from collector.scrape.cache import AppendOptions, AppendResult, ScrapeCache

if TYPE_CHECKING:
    from collections.abc import Mapping

    from collector.storage.appender import Sample

__all__ = [
    "SEGMENT_SIZE",
    "STREAM_THRESHOLD",
    "BodyReader",
    "BodyStream",
    "StreamedScrape",
    "append_stream",
    "read_all",
    "read_head",
]

STREAM_THRESHOLD = 8 << 20
"""Bodies above this many (uncompressed) bytes are streamed. Below it, the steady-state path
(whole body, `IncrementalParser`, bulk cache pass) is faster; above it, holding the body and
its parse would cost several times its size (vmagent switches at 1 MB by default)."""

SEGMENT_SIZE = _PARSER_SEGMENT
"""Bytes of whole lines parsed and appended at a time (read at each call: tests lower it)."""

_INFLATE_STEP = 1 << 18
"""Most uncompressed bytes one `BodyStream.read` returns: a gzip bomb arrives in steps."""

_SPENT = -1
"""``sample_limit`` for the segments after the pass used the limit up: the cache counts every
sample that reaches the limit check as over it (any non-zero limit is on; ``n > -1``)."""


class BodyReader(Protocol):
    """The rest of a large body, uncompressed, in chunks (`BodyStream`, or a test's fake)."""

    @property
    def size(self) -> int:
        """Uncompressed bytes handed out so far."""
        ...

    async def read(self) -> bytes:
        """The next chunk; ``b""`` at the end. Raises `ScrapeError` (timeout, transport,
        gzip, `ScrapeBodyTooLarge`)."""
        ...

    def close(self) -> None:
        """Release the connection (idempotent; safe after an error or a cancellation)."""
        ...


async def read_head(
    resp: aiohttp.ClientResponse, *, limit: int, threshold: int
) -> tuple[list[bytes], bool]:
    """Read a body until its end or ``threshold`` bytes: ``(chunks, complete)``.

    ``limit`` is ``body_size_limit`` for an uncompressed body (0: none, and 0 for a gzipped
    one: the limit applies after gunzip). A Content-Length above ``threshold`` reads nothing.
    """
    length = resp.content_length
    if length is not None and length > threshold:
        return [], False
    if limit <= 0 and length is not None:
        return [await resp.read()], True  # a small body of known size: aiohttp's own read
    chunks: list[bytes] = []
    size = 0
    readany = resp.content.readany
    while chunk := await readany():
        chunks.append(chunk)
        size += len(chunk)
        if 0 < limit <= size:
            raise ScrapeBodyTooLarge()
        if size > threshold:
            return chunks, False
    return chunks, True


class BodyStream:
    """`BodyReader` over an open aiohttp response (or a gzip body already in memory).

    ``head`` holds the bytes read before streaming was decided (compressed if ``gzipped``);
    they are handed out first. ``budget`` is what is left of the scrape timeout: it is spent
    only while waiting for the network.
    """

    __slots__ = (
        "_budget",
        "_done",
        "_gz",
        "_gz_in",
        "_gz_started",
        "_head",
        "_limit",
        "_resp",
        "_url",
        "size",
    )

    def __init__(
        self,
        *,
        response: aiohttp.ClientResponse | None,
        head: list[bytes],
        gzipped: bool,
        limit: int,
        budget: float,
        url: str,
    ) -> None:
        self._resp = response
        self._head = deque(head)
        self._gz = zlib.decompressobj(16 + zlib.MAX_WBITS) if gzipped else None
        self._gz_in = b""
        """Compressed bytes not yet inflated (a new chunk, or what the last step left)."""
        self._gz_started = False
        self._limit = limit
        self._budget = budget
        self._url = url
        self._done = False
        self.size = 0
        """Uncompressed bytes handed out so far."""

    async def read(self) -> bytes:
        """The next uncompressed chunk, ``b""`` at the end (see `BodyReader.read`)."""
        while not self._done:
            if self._gz is None:
                out = await self._raw()
                if not out:
                    self._done = True
                    break
            else:
                out = self._inflate()
                if not out:
                    raw = await self._raw()
                    if not raw:
                        if self._gz_started:
                            raise ScrapeError("gzip: unexpected EOF")
                        self._done = True
                        break
                    self._gz_in = raw
                    continue
            self.size += len(out)
            if 0 < self._limit <= self.size:
                raise ScrapeBodyTooLarge()
            return out
        self.close()
        return b""

    def close(self) -> None:
        """Release the response: back to the pool when read to its end, else closed."""
        resp, self._resp = self._resp, None
        if resp is not None:
            resp.release()

    async def _raw(self) -> bytes:
        """The next chunk off the wire (the head first), within the remaining budget."""
        if self._head:
            return self._head.popleft()
        resp = self._resp
        if resp is None:
            return b""
        if self._budget <= 0:
            raise ScrapeTimeout(f'Get "{self._url}": context deadline exceeded')
        loop = asyncio.get_running_loop()
        started = loop.time()
        try:
            async with asyncio.timeout(self._budget):
                return await resp.content.readany()
        except TimeoutError as exc:
            raise ScrapeTimeout(f'Get "{self._url}": context deadline exceeded') from exc
        except aiohttp.ClientError as exc:
            raise ScrapeError(f'Get "{self._url}": {str(exc) or type(exc).__name__}') from exc
        finally:
            self._budget -= loop.time() - started

    def _inflate(self) -> bytes:
        """Up to `_INFLATE_STEP` bytes from the pending compressed input (multi-member gzip,
        as `scraper._gunzip` does for whole bodies)."""
        data = self._gz_in
        gz = self._gz
        if not data or gz is None:
            return b""
        self._gz_started = True
        try:
            out = gz.decompress(data, _INFLATE_STEP)
        except zlib.error as exc:
            raise ScrapeError(f"gzip: {exc}") from exc
        if gz.eof:
            self._gz = zlib.decompressobj(16 + zlib.MAX_WBITS)
            self._gz_in = gz.unused_data
            self._gz_started = False
        else:
            self._gz_in = gz.unconsumed_tail
        return out


@dataclass(slots=True, kw_only=True)
class StreamedScrape:
    """What `append_stream` did: what `ScrapeCache.append` plus a parse would report."""

    result: AppendResult
    """Counts over the whole body (as one `ScrapeCache.append` of it would give)."""
    parse_error: ParseError | None
    """The body failed to parse there (the samples before it were appended). Not met, so
    ``None``, when a series error in ``result`` stopped the parsing earlier in the body."""
    size: int
    """Uncompressed body bytes."""
    metadata: Mapping[str, object]
    """Family name -> `textparse.Metadata` of the whole body."""


async def append_stream(
    stream: BodyReader,
    *,
    openmetrics: bool,
    cache: ScrapeCache,
    options: AppendOptions,
    now_ms: int,
    batch: list[Sample],
    segment_size: int | None = None,
) -> StreamedScrape:
    """Parse ``stream`` segment by segment into ``cache`` and ``batch``; read it to its end.

    After a parse error or a series error nothing more is appended, but the rest of the body
    is still read (and counted against ``body_size_limit``). Read errors propagate.
    """
    parser = StreamParser(openmetrics=openmetrics, segment_size=segment_size or SEGMENT_SIZE)
    total = AppendResult()
    parse_error: ParseError | None = None
    appending = True
    limit = options.sample_limit
    counted = 0
    """Samples that reached the sample-limit check in this pass (appended or over it)."""
    while True:
        chunk = await stream.read()
        if appending:
            try:
                exp = parser.feed(chunk) if chunk else parser.close()
            except ExpositionError as exc:
                exp, parse_error, appending = exc.partial, exc, False
            if exp is not None:
                seg_options = options
                if limit:
                    seg_options = replace(options, sample_limit=max(limit - counted, 0) or _SPENT)
                part = cache.append(exp, now_ms=now_ms, options=seg_options, batch=batch)
                reached = part.post_relabel - part.duplicates
                over = reached if counted >= limit else max(counted + reached - limit, 0)
                counted += reached
                _merge(total, part, over=over if limit else 0)
                if part.error is not None:
                    appending = False
        if not chunk:
            break
    return StreamedScrape(
        result=total, parse_error=parse_error, size=stream.size, metadata=parser.metadata
    )


async def read_all(stream: BodyReader) -> bytes:
    """The rest of ``stream`` as one body (formats without a streaming parser: protobuf).

    ``body_size_limit`` still applies as the chunks arrive (`BodyReader.read` raises)."""
    chunks: list[bytes] = []
    while chunk := await stream.read():
        chunks.append(chunk)
    return b"".join(chunks)


def _merge(total: AppendResult, part: AppendResult, *, over: int) -> None:
    """Add one segment's `AppendResult` to the pass's; ``over``: its samples past the limit."""
    total.scraped += part.scraped
    total.post_relabel += part.post_relabel
    total.series_added += part.series_added
    total.duplicates += part.duplicates
    total.out_of_order += part.out_of_order
    total.out_of_bounds += part.out_of_bounds
    total.over_sample_limit += over
    total.sample_limit_exceeded = total.sample_limit_exceeded or over > 0
    total.label_limit_exceeded = total.label_limit_exceeded or part.label_limit_exceeded
    total.series_limited = part.series_limited  # the limiter counts over the whole pass
    if total.error is None:
        total.error = part.error
