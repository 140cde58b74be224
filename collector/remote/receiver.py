"""A remote-write 1.0 and 2.0 receiver: ``POST`` snappy(protobuf) -> decoded series.

The demo and the tests use it as the built-in destination; the agent mounts
`make_receiver_handler` at ``POST /api/v1/write`` for ``--web.enable-remote-write-receiver``
(behind the web config's TLS and basic auth, `collector.web.security`). Decoding uses the
protobuf classes (`collector.remote.prompb`), never the hand encoder, so a receiver test is also
a compatibility test of the sender.

Every request is bounded before it costs memory (`ReceiverLimits`, flags
``--web.remote-write-receiver.*``): the compressed body is read in chunks up to its cap; the
snappy block's length header (a varint in its first bytes) is read *before* decompressing, so a
snappy bomb is refused from its header; the series and their labels are checked before any
reaches ``on_write``. aiohttp's own 1 MiB ``client_max_size`` is not used: it only applies to
``request.read()``, and real senders (Prometheus, vmagent) send bigger batches.

The message is chosen by ``Content-Type`` as the 2.0 spec says: ``application/x-protobuf`` or
``...;proto=prometheus.WriteRequest`` is 1.0, ``...;proto=io.prometheus.write.v2.Request`` is
2.0 (decoded with `collector.remote.prompb2`, symbols resolved; the same caps), any other
``proto`` 415. Both are decoded into a `collector.remote.received.Received`: float samples,
native histograms (integer and float) and exemplars, which an ``on_receive`` callback (the
agent's) commits as a scrape does, so a relay loses none of them. A 2.0 answer carries the
three ``X-Prometheus-Remote-Write-*-Written`` counts of what was written, so a 2.0 sender can
tell it from a 1.0 receiver. What cannot be written is a partial write (spec 2.0 §Partial
Write; 1.0 §Retries: 400 for invalid samples, the valid ones may be ingested): the rest is
written and the answer is 400 saying what was not, counted by reason: custom-bucket native
histograms (``unsupported_histograms``: collector has no model for them), and the histograms
and exemplars sent to a float-only ``on_write`` callback (``unsupported_histograms``,
``unsupported_exemplars``; the demo's receiver). 2.0 metadata is read and not forwarded, like
1.0 metadata-only requests.

Answers: 204 on success; 413 for a body or decompressed size over its cap; 400 with a one-line
reason for a body that is not snappy, not a ``WriteRequest``/``Request``, or breaks a
series/label cap; 415 for a ``Content-Encoding`` other than snappy or an unknown ``proto``; 500
if ``on_write`` raises. Every refusal is counted in
``collector_remote_write_receiver_rejected_requests_total{reason}``. A 4xx makes senders drop
the batch, so the default caps are sized well above what real senders send.

Prometheus counterpart: ``storage/remote/write_handler.go``.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter

from collector.remote import received
from collector.remote.client import WRITTEN_HEADERS
from collector.remote.codec import DecodedSeries, DecodeError, decompress
from collector.remote.codec2 import V2
from collector.remote.received import Received

__all__ = [
    "REJECT_REASONS",
    "OnReceive",
    "OnWrite",
    "Received",
    "ReceiverLimits",
    "make_receiver_app",
    "make_receiver_handler",
    "snappy_length",
]

log = logging.getLogger(__name__)

OnWrite = Callable[[list[DecodedSeries]], None]
"""Called once per accepted request with its series (empty for metadata-only requests), for
callers that take float samples only: histograms and exemplars are then refused (400)."""

OnReceive = Callable[[Received], None]
"""Called once per accepted request with all it carried (the agent's relay)."""

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

_MiB = 1 << 20
_CHUNK = 256 * 1024

REJECT_REASONS = (
    "body_too_large",
    "decompressed_too_large",
    "invalid_snappy",
    "invalid_protobuf",
    "too_many_series",
    "too_many_samples",
    "too_many_labels",
    "label_name_too_long",
    "label_value_too_long",
    "unsupported_encoding",
    "unsupported_protocol",
    "unsupported_histograms",
    "unsupported_exemplars",
)
"""Values of the ``reason`` label of the rejected-requests counter."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ReceiverLimits:
    """Caps of one request; 0 means no cap for the count and length caps.

    Defaults leave room above real senders: Prometheus sends 2,000 samples per request
    (``max_samples_per_send``), vmagent up to 10,000 rows in at most 8 MiB
    (``-remoteWrite.maxBlockSize``, ``-remoteWrite.maxRowsPerBlock``).
    """

    max_body_bytes: int = 32 * _MiB
    """Compressed body (``--web.remote-write-receiver.max-body-bytes``)."""
    max_decompressed_bytes: int = 128 * _MiB
    """Decompressed ``WriteRequest`` (``...max-decompressed-bytes``)."""
    max_series_per_request: int = 100_000
    max_samples_per_request: int = 1_000_000
    """Float samples plus native histograms (100x vmagent's largest block)."""
    max_labels_per_series: int = 128
    max_label_name_length: int = 1024
    """Bytes of UTF-8, as Go's ``len`` counts them."""
    max_label_value_length: int = 16 * 1024


class _Rejected(Exception):
    """A request refused: HTTP status, counter reason, one-line message for the sender."""

    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.reason = reason
        self.message = message


def make_receiver_handler(
    on_write: OnWrite | None = None,
    *,
    on_receive: OnReceive | None = None,
    limits: ReceiverLimits | None = None,
    registry: CollectorRegistry | None = None,
) -> Handler:
    """An aiohttp handler for remote-write 1.0 and 2.0 ``POST`` requests.

    Exactly one of ``on_write`` (float samples only) and ``on_receive`` (everything) is given.
    ``registry`` gets the rejected-requests counter (a private registry when None, so that
    making a handler is cheap and can be repeated).
    """
    if (on_write is None) == (on_receive is None):
        raise ValueError("make_receiver_handler takes exactly one of on_write and on_receive")
    caps = limits if limits is not None else ReceiverLimits()
    rejected = Counter(
        "collector_remote_write_receiver_rejected_requests_total",
        "Remote-write requests the receiver refused, by reason.",
        ["reason"],
        registry=registry if registry is not None else CollectorRegistry(auto_describe=False),
    )
    for reason in REJECT_REASONS:
        rejected.labels(reason=reason)  # every reason exported from the start, at 0

    async def handle(request: web.Request) -> web.StreamResponse:
        v2 = False
        try:
            v2 = _check_headers(request)
            body = await _read_body(request, caps)
            got = _decode(body, caps, v2)
        except _Rejected as exc:
            rejected.labels(reason=exc.reason).inc()
            log.debug("remote write request refused (%s): %s", exc.reason, exc.message)
            return web.Response(status=exc.status, text=f"{exc.message}\n", headers=_written(v2))
        not_written: list[str] = []
        if got.refused:
            rejected.labels(reason="unsupported_histograms").inc()
            not_written.append(
                f"{got.refused} native histogram samples with custom buckets (schema -53) were "
                "not written: this receiver does not forward them"
            )
        if on_write is not None and (got.histograms or got.exemplars):
            for kind, items in (("histograms", got.histograms), ("exemplars", got.exemplars)):
                if items:
                    rejected.labels(reason=f"unsupported_{kind}").inc()
            not_written.append(
                f"{len(got.histograms)} native histogram samples and {len(got.exemplars)} "
                "exemplars were not written: this receiver takes float samples only"
            )
            got.histograms = []
            got.exemplars = []
        try:
            if on_write is not None:
                on_write(got.series)
            elif on_receive is not None:
                on_receive(got)
        except Exception as exc:  # the callback's failure is the sender's recoverable 500
            log.exception("remote write receiver callback failed")
            return web.Response(
                status=500, text=f"{type(exc).__name__}: {exc}\n", headers=_written(v2)
            )
        written = _written(v2, got)
        if not_written:
            text = "; ".join(not_written)
            log.debug("remote write request written in part: %s", text)
            return web.Response(status=400, text=f"{text}\n", headers=written)
        return web.Response(status=204, headers=written)

    return handle


def make_receiver_app(
    on_write: OnWrite | None = None,
    *,
    on_receive: OnReceive | None = None,
    path: str = "/api/v1/write",
    limits: ReceiverLimits | None = None,
    registry: CollectorRegistry | None = None,
) -> web.Application:
    """An aiohttp application serving `make_receiver_handler` at ``POST path``."""
    app = web.Application()
    app.router.add_post(
        path,
        make_receiver_handler(on_write, on_receive=on_receive, limits=limits, registry=registry),
    )
    return app


def _written(v2: bool, got: Received | None = None) -> dict[str, str] | None:
    """The 2.0 written-count headers of what ``got`` holds (0s when None; None for a 1.0
    request, which has none)."""
    if not v2:
        return None
    counts = (0, 0, 0) if got is None else (got.samples, len(got.histograms), len(got.exemplars))
    return dict(zip(WRITTEN_HEADERS, map(str, counts), strict=True))


def _check_headers(request: web.Request) -> bool:
    """Whether the request is remote write 2.0; `_Rejected` (415) for what is neither."""
    encoding = request.headers.get("Content-Encoding", "snappy").lower()
    if encoding != "snappy":
        raise _Rejected(415, "unsupported_encoding", f"unsupported Content-Encoding {encoding!r}")
    content_type = request.headers.get("Content-Type", "application/x-protobuf")
    # Only ``proto`` decides: senders that label 1.0 bodies with another media type (or none)
    # were accepted before 2.0 existed and still are.
    _, _, params = content_type.partition(";")
    proto = "prometheus.WriteRequest"
    for param in params.split(";"):
        key, _, value = param.partition("=")
        if key.strip().lower() == "proto":
            proto = value.strip().strip('"')
    if proto == V2:
        return True
    if proto != "prometheus.WriteRequest":
        raise _Rejected(
            415,
            "unsupported_protocol",
            f"unsupported proto {proto[:100]!r}: prometheus.WriteRequest or {V2} is accepted",
        )
    return False


async def _read_body(request: web.Request, caps: ReceiverLimits) -> bytes:
    """The compressed body, refused (413) as soon as it or its snappy header is over a cap."""
    declared = request.content_length
    if declared is not None and declared > caps.max_body_bytes:
        raise _too_large_body(caps)
    if request.body_exists and not request.can_read_body:
        # A wrapping handler already read it (aiohttp keeps what ``read()`` returned).
        whole = await request.read()
        if len(whole) > caps.max_body_bytes:
            raise _too_large_body(caps)
        _check_snappy_header(whole[:10], caps)
        return whole
    body = bytearray()
    header_checked = False
    async for chunk in request.content.iter_chunked(_CHUNK):
        body += chunk
        if len(body) > caps.max_body_bytes:
            raise _too_large_body(caps)
        if not header_checked and len(body) >= 10:
            _check_snappy_header(bytes(body[:10]), caps)
            header_checked = True
    if not header_checked:
        _check_snappy_header(bytes(body), caps)
    return bytes(body)


def _too_large_body(caps: ReceiverLimits) -> _Rejected:
    return _Rejected(
        413,
        "body_too_large",
        f"request body is larger than {caps.max_body_bytes} bytes "
        "(--web.remote-write-receiver.max-body-bytes)",
    )


def snappy_length(data: bytes) -> int | None:
    """The uncompressed length a snappy block announces (its leading uvarint); None if ``data``
    does not start with a complete one (at most 5 bytes: snappy lengths are 32-bit)."""
    length = 0
    for i, byte in enumerate(data[:5]):
        length |= (byte & 0x7F) << (7 * i)
        if not byte & 0x80:
            return length
    return None


def _check_snappy_header(head: bytes, caps: ReceiverLimits) -> None:
    """Refuse a block whose announced size is over the cap, before anything is decompressed.

    The decoder allocates exactly the announced size and fails if the data would expand past
    it, so checking the header bounds the memory decompression can take.
    """
    length = snappy_length(head)
    if length is None:
        raise _Rejected(400, "invalid_snappy", "invalid snappy block: no length header")
    if length > caps.max_decompressed_bytes:
        raise _Rejected(
            413,
            "decompressed_too_large",
            f"decompressed request would be {length} bytes, more than "
            f"{caps.max_decompressed_bytes} (--web.remote-write-receiver.max-decompressed-bytes)",
        )


def _decode(body: bytes, caps: ReceiverLimits, v2: bool) -> Received:
    """Decompress and parse ``body``, refusing any series or label over its cap."""
    try:
        raw = decompress(body)
    except DecodeError as exc:
        raise _Rejected(400, "invalid_snappy", str(exc)) from exc
    counts = received.Caps(
        max_series=caps.max_series_per_request, max_samples=caps.max_samples_per_request
    )
    try:
        got = received.decode_v2(raw, counts) if v2 else received.decode_v1(raw, counts)
    except received.TooLarge as exc:
        raise _Rejected(400, exc.reason, str(exc)) from exc
    except DecodeError as exc:
        raise _Rejected(400, "invalid_protobuf", str(exc)) from exc
    del raw
    for labels, _ in got.series:
        _check_labels(labels, caps)
    return got


def _check_labels(labels: tuple[tuple[str, str], ...], caps: ReceiverLimits) -> None:
    if caps.max_labels_per_series and len(labels) > caps.max_labels_per_series:
        raise _Rejected(
            400,
            "too_many_labels",
            f"series {_name(labels)} has {len(labels)} labels, more than "
            f"{caps.max_labels_per_series} (--web.remote-write-receiver.max-labels-per-series)",
        )
    for name, value in labels:
        if _too_long(name, caps.max_label_name_length):
            raise _Rejected(
                400,
                "label_name_too_long",
                f"series {_name(labels)} has a label name longer than "
                f"{caps.max_label_name_length} bytes "
                "(--web.remote-write-receiver.max-label-name-length)",
            )
        if _too_long(value, caps.max_label_value_length):
            raise _Rejected(
                400,
                "label_value_too_long",
                f"series {_name(labels)} has a value of label {name[:100]!r} longer than "
                f"{caps.max_label_value_length} bytes "
                "(--web.remote-write-receiver.max-label-value-length)",
            )


def _too_long(text: str, cap: int) -> bool:
    """Whether ``text`` is over ``cap`` UTF-8 bytes; encodes only when characters cannot tell."""
    if not cap or len(text) * 4 <= cap:
        return False
    return len(text) > cap or len(text.encode("utf-8", "surrogatepass")) > cap


def _name(labels: tuple[tuple[str, str], ...]) -> str:
    """The metric name for a message (cut: it may itself be the label that is too long)."""
    for name, value in labels:
        if name == "__name__":
            return repr(value[:100])
    return "without __name__"
