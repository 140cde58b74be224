"""A remote-write 1.0 receiver: ``POST`` snappy(protobuf ``WriteRequest``) -> decoded series.

The demo and the tests use it as the built-in destination; the web layer mounts
`make_receiver_handler` at ``POST /api/v1/write`` for ``--web.enable-remote-write-receiver``.
Decoding uses the protobuf classes (`collector.remote.codec.decode_request`), never the hand
encoder, so a receiver test is also a compatibility test of the sender.

Answers: 204 on success; 400 with a one-line reason for a body that is not snappy or not a
``WriteRequest``; 415 for a ``Content-Encoding`` other than snappy or a remote-write 2.0
``Content-Type``; 500 if ``on_write`` raises.

Prometheus counterpart: ``storage/remote/write_handler.go``.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from aiohttp import web

from collector.remote.codec import DecodedSeries, DecodeError, decode_request, decompress

__all__ = ["OnWrite", "make_receiver_app", "make_receiver_handler"]

log = logging.getLogger(__name__)

OnWrite = Callable[[list[DecodedSeries]], None]
"""Called once per accepted request with its series (empty for metadata-only requests)."""

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def make_receiver_handler(on_write: OnWrite) -> Handler:
    """An aiohttp handler for remote-write 1.0 ``POST`` requests."""

    async def handle(request: web.Request) -> web.StreamResponse:
        encoding = request.headers.get("Content-Encoding", "snappy").lower()
        if encoding != "snappy":
            return web.Response(status=415, text=f"unsupported Content-Encoding {encoding!r}\n")
        content_type = request.headers.get("Content-Type", "application/x-protobuf")
        if "io.prometheus.write.v2" in content_type:
            return web.Response(status=415, text="remote write 2.0 is not supported\n")
        body = await request.read()
        try:
            series = decode_request(decompress(body))
        except DecodeError as exc:
            return web.Response(status=400, text=f"{exc}\n")
        try:
            on_write(series)
        except Exception as exc:  # the callback's failure is the sender's recoverable 500
            log.exception("remote write receiver callback failed")
            return web.Response(status=500, text=f"{type(exc).__name__}: {exc}\n")
        return web.Response(status=204)

    return handle


def make_receiver_app(on_write: OnWrite, *, path: str = "/api/v1/write") -> web.Application:
    """An aiohttp application serving `make_receiver_handler` at ``POST path``."""
    app = web.Application()
    app.router.add_post(path, make_receiver_handler(on_write))
    return app
