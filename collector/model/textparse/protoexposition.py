"""What the protobuf decoder returns: `ProtoExposition`, its series keys and `ProtobufError`.

Place in the pipeline: `collector.model.textparse.protobuf.parse` hands the scrape loop a
`ProtoExposition`, the same `Exposition` the text parsers return (columns of raw series keys,
values and explicit timestamps; exemplars by sample index; metadata by family), so the scrape
cache appends it unchanged. Only the key format and `~ProtoExposition.labels` differ.

Series keys. A key is the series name (the family name, plus ``_count``/``_sum``/``_bucket``
where Prometheus adds one), the byte ``0xFE``, then the *raw wire bytes* of the metric's
``label`` fields (each ``0x0A <length> <LabelPair>``, in body order), then for a bucket or a
quantile one more such field holding ``le``/``quantile``. Building a key is two slices and a
concatenation; the label pairs are only decoded by `key_labels`, on a scrape-cache miss. A
family name is checked to be valid UTF-8 when it is decoded, so it never holds ``0xFE`` and
the first ``0xFE`` ends the name. Equal bytes mean the same series, as for the text keys; two
encodings of one label set (another order) are two keys of one series, which the cache then
counts as a duplicate sample, as Prometheus does.

Since label pairs are decoded lazily, a malformed ``LabelPair`` is found by `labels`, like a
duplicate label name in the text path: `ProtobufError` then names the series and keeps, as
``partial``, the samples before the key's first occurrence. A key the cache already holds
was decoded successfully once, so a cache hit can never be malformed.

Prometheus counterpart: the labels part of ``ProtobufParser.onSeriesOrHistogramUpdate`` in
``model/textparse/protobufparse.go``.
"""

from __future__ import annotations

import sys

from collector.model.histogram import NativeHistogram
from collector.model.textparse.exposition import (
    Columns,
    Exemplar,
    Exposition,
    ExpositionError,
    Metadata,
)

__all__ = [
    "KEY_SEP",
    "NativeSample",
    "ProtoExposition",
    "ProtobufError",
    "key_labels",
    "magic_label",
    "metadata_of",
]

KEY_SEP = b"\xfe"
"""Between the series name and the label bytes of a key (never in valid UTF-8)."""

_intern = sys.intern

_TYPE_NAMES = ("counter", "gauge", "summary", "unknown", "histogram", "gaugehistogram")
"""``io.prometheus.client.MetricType`` 0..5 as `Metadata.type` (UNTYPED is "unknown")."""

_META_CACHE: dict[tuple[bytes, int, bytes, bytes], Metadata] = {}
_META_CACHE_MAX = 1 << 16


class ProtobufError(ExpositionError):
    """A protobuf body was refused: ``offset`` (byte of the body where the bad field starts,
    ``-1`` when not known) and ``family`` (the metric family being decoded, ``""`` if none)
    say where; ``partial`` holds the samples decoded before it."""

    def __init__(self, message: str, *, offset: int, family: str, partial: Exposition) -> None:
        where = f" at byte {offset}" if offset >= 0 else ""
        if family:
            where += f' in metric family "{family}"'
        super().__init__(f"protobuf: {message}{where}", line=0, partial=partial)
        self.offset = offset
        self.family = family


NativeSample = tuple[bytes, NativeHistogram, int | None]
"""A native histogram of a body: its series key (the family name, no suffix), the histogram,
its explicit timestamp in ms or None."""


class ProtoExposition(Exposition):
    """The `Exposition` of a protobuf body; labels come from the wire bytes in the keys.

    ``histograms``: the native histograms, apart from the float columns (empty unless the
    parser ingests native histograms)."""

    __slots__ = ("histograms",)

    def __init__(
        self,
        *,
        columns: Columns,
        exemplars: dict[int, Exemplar],
        metadata: dict[str, Metadata],
        histograms: list[NativeSample] | None = None,
    ) -> None:
        super().__init__(
            openmetrics=False, columns=columns, exemplars=exemplars, meta_rows=[], segments=[]
        )
        self._shape.meta = metadata
        self.histograms: list[NativeSample] = [] if histograms is None else histograms

    def __repr__(self) -> str:
        return f"<ProtoExposition samples={len(self.columns()[0])}>"

    def labels(self, key: bytes) -> list[tuple[str, str]]:
        """``__name__`` first, then the metric's label pairs in body order, then ``le`` or
        ``quantile``. Raises `ProtobufError` for a malformed label pair."""
        try:
            return key_labels(key)
        except _BadLabel as exc:
            index = self.columns()[0].index(key)
            keys, values, stamps = self.columns()
            partial = ProtoExposition(
                columns=(keys[:index], values[:index], None if stamps is None else stamps[:index]),
                exemplars={i: e for i, e in self.exemplars.items() if i < index},
                metadata=self.metadata,
            )
            name = key[: key.find(KEY_SEP)].decode("utf-8", "replace")
            raise ProtobufError(
                f'label pair of series {index} ("{name}"): {exc}',
                offset=-1,
                family="",
                partial=partial,
            ) from None


class _BadLabel(ValueError):
    """A key's label bytes do not decode."""


def key_labels(key: bytes) -> list[tuple[str, str]]:
    """Decode a `ProtoExposition` key into label pairs (see the module docstring)."""
    sep = key.find(KEY_SEP)
    if sep < 0:
        raise ValueError(f"not a protobuf series key: {key!r}")
    out = [("__name__", _intern(key[:sep].decode()))]
    pos = sep + 1
    end = len(key)
    while pos < end:
        if key[pos] != 0x0A:  # the decoder only ever puts label fields here
            raise _BadLabel(f"unexpected byte 0x{key[pos]:02x}")
        size, pos = _uvarint(key, pos + 1, end)
        stop = pos + size
        if stop > end:
            raise _BadLabel("truncated")
        # The usual encoding, lengths below 128: 0a <n> name 12 <m> value.
        if size >= 4 and key[pos] == 0x0A and key[pos + 1] < 0x80:
            vat = pos + 2 + key[pos + 1]
            if (
                vat + 2 <= stop
                and key[vat] == 0x12
                and key[vat + 1] < 0x80
                and vat + 2 + key[vat + 1] == stop
            ):
                out.append(
                    (
                        _intern(key[pos + 2 : vat].decode("utf-8", "surrogateescape")),
                        key[vat + 2 : stop].decode("utf-8", "surrogateescape"),
                    )
                )
                pos = stop
                continue
        out.append(_label_pair(key, pos, stop))
        pos = stop
    return out


def _label_pair(buf: bytes, pos: int, end: int) -> tuple[str, str]:
    """One ``LabelPair`` message (name 1, value 2; unknown fields skipped, last one wins)."""
    name = value = b""
    while pos < end:
        tag, pos = _uvarint(buf, pos, end)
        wire = tag & 7
        if wire == 2:
            size, pos = _uvarint(buf, pos, end)
            stop = pos + size
            if stop > end:
                raise _BadLabel("truncated string")
            if tag == 0x0A:
                name = buf[pos:stop]
            elif tag == 0x12:
                value = buf[pos:stop]
            pos = stop
        elif tag >> 3 in (1, 2):
            raise _BadLabel(f"wrong wire type {wire} for field {tag >> 3}")
        elif wire == 0:
            _, pos = _uvarint(buf, pos, end)
        elif wire in (1, 5):
            pos += 8 if wire == 1 else 4
            if pos > end:
                raise _BadLabel("truncated")
        else:
            raise _BadLabel(f"unsupported wire type {wire}")
    return (
        _intern(name.decode("utf-8", "surrogateescape")),
        value.decode("utf-8", "surrogateescape"),
    )


def _uvarint(buf: bytes, pos: int, end: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= end:
            raise _BadLabel("truncated varint")
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result, pos
        shift += 7
        if shift > 63:
            raise _BadLabel("varint overflows 64 bits")


def magic_label(name: bytes, value: str) -> bytes:
    """The key bytes of one more label field ``name=value`` (``le``, ``quantile``)."""
    data = value.encode()
    pair = b"\x0a" + bytes([len(name)]) + name + b"\x12" + bytes([len(data)]) + data
    return b"\x0a" + bytes([len(pair)]) + pair


def metadata_of(name: bytes, mtype: int, help_text: bytes, unit: bytes) -> Metadata:
    """The `Metadata` of a family, shared between scrapes of unchanged families."""
    cache_key = (name, mtype, help_text, unit)
    meta = _META_CACHE.get(cache_key)
    if meta is None:
        if len(_META_CACHE) >= _META_CACHE_MAX:
            _META_CACHE.clear()
        meta = _META_CACHE[cache_key] = Metadata(
            type=_TYPE_NAMES[mtype], help=help_text.decode(), unit=unit.decode()
        )
    return meta
