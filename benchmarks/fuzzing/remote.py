"""Fuzz targets of the remote-write decoder: the codec and the receiver's request handling.

- ``remote_codec``: `decompress`, then the receiver's decoders (`collector.remote.received`
  ``decode_v1``/``decode_v2``, remote write 1.0 and 2.0) under the receiver's default count
  caps. `DecodeError` is the only error their docstrings allow (it is a `ValueError`; any other
  `ValueError` is a crash too), and nothing over a cap may come out.
- ``remote_receiver``: the aiohttp handler of `make_receiver_handler` with small caps, fed a
  request whose body arrives in chunks. It must answer 204, 400 or 413 (415 is for headers,
  which stay valid here), never raise and never answer 500; what reaches ``on_write`` must
  respect every cap (series per request, labels per series, name and value bytes).

Inputs are the compressed bodies. Edits work on the protobuf when the body decompresses (three
times in four: the wire tree of fields is edited, with lengths that lie, wrong wire types,
unknown and deeply nested group fields, huge varints, invalid UTF-8, repeated fields), and on
the snappy bytes otherwise.

Prometheus counterpart: ``storage/remote/codec_test.go`` and ``write_handler_test.go`` (table
tests; Prometheus has no fuzzer for them).
"""

from __future__ import annotations

import asyncio
import random
import zlib
from typing import Any, cast

from aiohttp import streams, web
from aiohttp.base_protocol import BaseProtocol

from benchmarks.fuzzing.harness import Target, Violation, untimed
from benchmarks.fuzzing.mutate import ODD_UNICODE, Mutator
from collector.model.value import STALE_NAN
from collector.remote.codec import (
    DecodedSeries,
    DecodeError,
    compress,
    decompress,
    encode_labels,
    encode_metadata_request,
    encode_request,
    varint,
)
from collector.remote.received import Caps, decode_v1, decode_v2
from collector.remote.receiver import ReceiverLimits, make_receiver_handler

__all__ = ["decode_fields", "encode_fields", "targets"]

Field = tuple[int, int, int | bytes]
"""(field number, wire type, value): an int for varint/fixed wire types, bytes otherwise."""

_INTERESTING_VARINTS = (
    0,
    1,
    127,
    128,
    255,
    1 << 31,
    (1 << 32) - 1,
    1 << 32,
    (1 << 63) - 1,
    1 << 63,
)

LIMITS = ReceiverLimits(
    max_body_bytes=512 * 1024,
    max_decompressed_bytes=1 << 20,
    max_series_per_request=1000,
    max_labels_per_series=32,
    max_label_name_length=128,
    max_label_value_length=1024,
)
"""Small caps, so that fuzzed requests reach every one of them."""


# ----------------------------------------------------------------------------- wire tree
def _read_varint(buf: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if pos >= len(buf) or shift > 63:
            raise ValueError("truncated varint")
        byte = buf[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return value, pos


def decode_fields(buf: bytes) -> list[Field] | None:
    """The fields of a protobuf message, or None if ``buf`` is not well-formed wire format."""
    fields: list[Field] = []
    pos = 0
    try:
        while pos < len(buf):
            tag, pos = _read_varint(buf, pos)
            number, wire = tag >> 3, tag & 7
            if wire == 0:
                value, pos = _read_varint(buf, pos)
                fields.append((number, wire, value))
            elif wire in (1, 5):
                width = 8 if wire == 1 else 4
                if pos + width > len(buf):
                    return None
                fields.append((number, wire, int.from_bytes(buf[pos : pos + width], "little")))
                pos += width
            elif wire == 2:
                length, pos = _read_varint(buf, pos)
                if pos + length > len(buf):
                    return None
                fields.append((number, wire, buf[pos : pos + length]))
                pos += length
            else:
                return None  # groups: not in remote write's schema
    except ValueError:
        return None
    return fields


def encode_fields(fields: list[Field]) -> bytes:
    """Inverse of `decode_fields` (a value of the wrong Python type is encoded as it fits)."""
    out = bytearray()
    for number, wire, value in fields:
        out += varint((number << 3) | wire)
        if isinstance(value, bytes):
            out += varint(len(value)) + value if wire == 2 else value
        elif wire == 1:
            out += (value & ((1 << 64) - 1)).to_bytes(8, "little")
        elif wire == 5:
            out += (value & 0xFFFFFFFF).to_bytes(4, "little")
        else:
            out += varint(value)
    return bytes(out)


def _edit_message(rng: random.Random, buf: bytes, depth: int = 0) -> bytes:
    """One structural edit somewhere in a message's wire tree."""
    fields = decode_fields(buf)
    if not fields:
        return _new_field(rng) + buf
    k = rng.randrange(len(fields))
    number, wire, value = fields[k]
    nested = isinstance(value, bytes) and decode_fields(value)
    if nested and depth < 4 and rng.random() < 0.6:
        assert isinstance(value, bytes)
        fields[k] = (number, wire, _edit_message(rng, value, depth + 1))
        return encode_fields(fields)
    action = rng.randrange(9)
    if action == 0:
        del fields[k]
    elif action == 1:
        fields[k : k + 1] = [fields[k]] * _times(rng, value, 12)
    elif action == 2:
        fields[k] = (number, rng.choice((0, 1, 2, 5)), value)  # wrong wire type
    elif action == 3:
        fields[k] = (number, wire, rng.choice(_INTERESTING_VARINTS))
    elif action == 4 and isinstance(value, bytes):
        odd = rng.choice(ODD_UNICODE)
        fields[k] = (number, wire, value + odd if rng.random() < 0.5 else odd + value)
    elif action == 5 and isinstance(value, bytes):
        fields[k] = (number, wire, value * _times(rng, value, 14))
    elif action == 6:
        fields.insert(k, (rng.choice((1, 2, 3, 4, 5, 15, 16, 1 << 28)), 2, b""))
    elif action == 7:
        # A length that lies: the rest of the message is swallowed, or runs short.
        head = encode_fields(fields[:k])
        tail = encode_fields(fields[k + 1 :])
        payload = value if isinstance(value, bytes) else b""
        lie = max(0, len(payload) + rng.choice((-2, -1, 1, 2, 1 << 20, 1 << 31)))
        return head + varint((number << 3) | 2) + varint(lie) + payload + tail
    else:
        return encode_fields(fields[:k]) + _new_field(rng) + encode_fields(fields[k:])
    return encode_fields(fields)


_REPEAT_BYTES = 4 << 20
"""A repetition edit stops at about this many bytes (nested edits multiply: the 01:04 UTC
benchmark run died of a MemoryError in one)."""


def _times(rng: random.Random, value: int | bytes, max_log2: int) -> int:
    """How many copies of ``value`` a repetition edit makes (up to 2**max_log2, ~4 MiB)."""
    size = len(value) if isinstance(value, bytes) else 10
    return max(1, min(int(2 ** rng.uniform(1, max_log2)), _REPEAT_BYTES // max(1, size)))


def _new_field(rng: random.Random) -> bytes:
    """An unexpected field: unknown numbers, groups nested deep, fixed widths, a huge tag."""
    kind = rng.randrange(4)
    number = rng.choice((1, 2, 3, 4, 5, 6, 99, (1 << 29) - 1))
    if kind == 0:
        depth = int(10 ** rng.uniform(0, 4))
        return varint((number << 3) | 3) * depth + varint((number << 3) | 4) * depth
    if kind == 1:
        return varint((number << 3) | rng.choice((1, 5))) + bytes(rng.choice((4, 8)))
    if kind == 2:
        return varint((number << 3) | 0) + varint(rng.choice(_INTERESTING_VARINTS))
    return varint((number << 3) | rng.choice((6, 7)))  # wire types that do not exist


def request_seeds() -> list[bytes]:
    """Uncompressed ``WriteRequest`` bodies: series, stale markers, metadata, the empty one."""
    labels = [
        encode_labels((("__name__", "up"), ("instance", "a:9100"), ("job", "node"))),
        encode_labels((("__name__", "http_requests_total"), ("code", "200"), ("le", "+Inf"))),
        encode_labels((("__name__", "x"),)),
        encode_labels((("__name__", "ünïcödé"), ("a", "b" * 300))),
    ]
    series = encode_request(labels, [1.0, 0.0, STALE_NAN, -1.5e300], [1, 0, -5, 1 << 42])
    many = encode_request(labels * 50, [float(i) for i in range(200)], [1700000000000] * 200)
    metadata = encode_metadata_request(
        [(1, "http_requests_total", "Requests.", ""), (2, "temp", "", "celsius")]
    )
    return [b"", series, many, metadata, series + metadata]


# ----------------------------------------------------------------------------- targets
def _mutator(max_size: int) -> Any:
    plain = request_seeds()
    bytes_mutator = Mutator([compress(seed) for seed in plain], max_size=max_size)
    raw_mutator = Mutator(plain, max_size=max_size)

    def mutate(rng: random.Random, data: bytes) -> bytes:
        try:
            raw = decompress(data)
        except DecodeError:
            raw = None
        if raw is None or rng.random() < 0.25:
            return bytes_mutator.mutate(rng, data)
        for _ in range(1 + int(rng.expovariate(1.0))):
            edit = _edit_message if rng.random() < 0.8 else raw_mutator.mutate
            raw = edit(rng, raw)
        return compress(raw[: max_size * 4])

    return mutate


_CAPS = Caps(
    max_series=ReceiverLimits().max_series_per_request,
    max_samples=ReceiverLimits().max_samples_per_request,
)
"""The receiver's default count caps, which it hands to the decoders."""


def check_codec(data: bytes) -> None:
    """`decompress`, then the receiver's `decode_v1` and `decode_v2` under its default caps;
    `DecodeError` (`TooLarge` included) only."""
    try:
        raw = decompress(data)
    except DecodeError:
        return
    for decode in (decode_v1, decode_v2):
        try:
            got = decode(raw, _CAPS)
        except DecodeError:
            continue
        with untimed():  # the check's own walk over the result is not the decoder's
            for labels, samples in got.series:
                if not all(type(n) is str and type(v) is str for n, v in labels):
                    raise Violation("codec labels: not str pairs")
                if not all(type(v) is float and type(t) is int for v, t in samples):
                    raise Violation("codec samples: not (float, int)")
            if sum(map(len, (s for _, s in got.series))) + len(got.histograms) > _CAPS.max_samples:
                raise Violation("codec: more samples than the cap")
            del got


class _Protocol:
    """The transport side a `StreamReader` pauses and resumes (nothing to do here)."""

    _reading_paused = False

    def pause_reading(self, **_: object) -> None:
        """Flow control: ignored."""

    def resume_reading(self, **_: object) -> None:
        """Flow control: ignored."""


class _Request:
    """What the handler reads of an aiohttp request: headers, length, the body stream."""

    def __init__(self, data: bytes, loop: asyncio.AbstractEventLoop) -> None:
        shape = zlib.crc32(data)
        self.headers = {"Content-Encoding": "snappy"}  # the handler reads it with .get
        self.content_length: int | None = None if shape & 1 else len(data)  # chunked or not
        self.body_exists = True
        self.can_read_body = True
        protocol = cast("BaseProtocol", _Protocol())
        self.content = streams.StreamReader(protocol, 1 << 16, loop=loop)
        step = 1 + (shape >> 1) % (len(data) + 1)
        for pos in range(0, len(data), step):
            self.content.feed_data(data[pos : pos + step])
        self.content.feed_eof()


def _on_write(problems: list[str]) -> Any:
    def on_write(series: list[DecodedSeries]) -> None:
        if len(series) > LIMITS.max_series_per_request:
            problems.append(f"{len(series)} series passed the cap")
        for labels, _ in series:
            if len(labels) > LIMITS.max_labels_per_series:
                problems.append(f"{len(labels)} labels passed the cap")
            for name, value in labels:
                if len(name.encode("utf-8", "surrogatepass")) > LIMITS.max_label_name_length:
                    problems.append("a long label name passed the cap")
                if len(value.encode("utf-8", "surrogatepass")) > LIMITS.max_label_value_length:
                    problems.append("a long label value passed the cap")

    return on_write


def targets(*, max_size: int) -> list[Target]:
    """``remote_codec`` and ``remote_receiver``."""
    seeds = [compress(seed) for seed in request_seeds()]
    loop = asyncio.new_event_loop()
    problems: list[str] = []
    handler = make_receiver_handler(_on_write(problems), limits=LIMITS)

    def check_receiver(data: bytes) -> None:
        """The handler answers 204/400/413 and never passes a cap to ``on_write``."""
        problems.clear()
        request = cast("web.Request", _Request(data, loop))
        response = loop.run_until_complete(handler(request))
        if response.status not in (204, 400, 413):
            raise Violation(f"receiver status: {response.status}")
        if problems:
            raise Violation(f"receiver caps: {problems[0]}")

    mutate = _mutator(max_size)
    # Memory: snappy expands up to ~21x and a 4-byte TimeSeries becomes ~250 bytes of tuples.
    return [
        Target(
            name="remote_codec",
            summary="decompress + decode_v1/decode_v2 (receiver caps); DecodeError only",
            check=check_codec,
            mutate=mutate,
            seeds=seeds,
            memory_factor=4096,
        ),
        Target(
            name="remote_receiver",
            summary="receiver handler (small caps): 204/400/413, never 500 or an exception",
            check=check_receiver,
            mutate=mutate,
            seeds=seeds,
            # The caps bound it, whatever the body: a 1 MiB request decodes to ~10 MiB of
            # label strings and tuples, from a body snappy may have shrunk 20 times.
            memory_base=16 << 20,
            memory_factor=64,
            close=loop.close,
        ),
    ]
