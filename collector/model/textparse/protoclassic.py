"""The classic series of protobuf summaries and histograms, as Prometheus appends them.

Place in the pipeline: called by `collector.model.textparse.protobuf` for each metric of a
SUMMARY, HISTOGRAM or GAUGE_HISTOGRAM family, with the metric's label bytes; appends to `Out`:

* summary: ``<name>_count``, ``<name>_sum``, then ``<name>{quantile="q"}`` per quantile;
* histogram and gauge histogram: ``_count``, ``_sum``, then ``_bucket{le="b"}`` per classic
  bucket up to and including the first ``+Inf`` one, and ``le="+Inf"`` with the count when
  no bucket was ``+Inf``; ``sample_count_float`` and ``cumulative_count_float`` win when
  non-zero. Native fields are skipped (native histograms are not ingested), so a histogram
  with only native buckets gives ``_count``, ``_sum`` and ``_bucket{le="+Inf"}``.

``le``/``quantile`` are rendered by ``formatOpenMetricsFloat`` and kept, as key bytes, per
raw double (bounded), so steady scrapes format no float.

Prometheus counterpart: ``getMagicName``, ``getMagicLabel`` and ``Series`` in
``model/textparse/protobufparse.go`` with ``IgnoreNativeHistograms``.
"""

from __future__ import annotations

import math

from collector.model.textparse.protoexposition import magic_label
from collector.model.textparse.protowire import (
    BUCKET_FIELDS,
    HISTOGRAM_FIELDS,
    QUANTILE_FIELDS,
    SUMMARY_FIELDS,
    Bad,
    Out,
    double,
    exemplar,
    other,
    uvarint,
)
from collector.model.textparse.syntax import _format_om_float

__all__ = ["histogram", "summary"]

_LE = b"le"
_QUANTILE = b"quantile"
_INF_LE = magic_label(_LE, "+Inf")
_ZERO = b"\0" * 8
_SUFFIX_MAX = 1 << 14
_le_suffixes: dict[bytes, bytes] = {}
_quantile_suffixes: dict[bytes, bytes] = {}


def summary(
    buf: bytes, subs: list[int], labels: bytes, prefixes: tuple[bytes, ...], out: Out
) -> None:
    """``_count``, ``_sum``, then one sample per quantile (``subs``: start, stop, ...)."""
    count = 0
    total = 0.0
    quantiles: list[tuple[bytes, float]] = []
    for i in range(0, len(subs), 2):
        pos, end = subs[i], subs[i + 1]
        while pos < end:
            tag = buf[pos]
            if tag == 0x08:
                count, pos = uvarint(buf, pos + 1, end)
            elif tag == 0x11:
                if pos + 9 > end:
                    raise Bad("truncated double", pos)
                total = double(buf, pos + 1)[0]
                pos += 9
            elif tag == 0x1A:
                size, start = uvarint(buf, pos + 1, end)
                stop = start + size
                if stop > end:
                    raise Bad("truncated quantile", pos)
                quantiles.append(_quantile(buf, start, stop))
                pos = stop
            else:
                pos = other(buf, pos, end, SUMMARY_FIELDS, "Summary")
    keys = out.keys
    values = out.values
    keys += (prefixes[0] + labels, prefixes[1] + labels)
    values += (float(count), total)
    base = prefixes[2] + labels
    for raw, value in quantiles:
        suffix = _quantile_suffixes.get(raw)
        if suffix is None:
            suffix = _suffix(_quantile_suffixes, raw, _QUANTILE)
        keys.append(base + suffix)
        values.append(value)


def _quantile(buf: bytes, pos: int, end: int) -> tuple[bytes, float]:
    """A ``Quantile``: the raw 8 bytes of ``quantile`` (the label's cache key) and the value."""
    raw = _ZERO
    value = 0.0
    while pos < end:
        tag = buf[pos]
        if tag == 0x09 or tag == 0x11:
            if pos + 9 > end:
                raise Bad("truncated double", pos)
            if tag == 0x09:
                raw = buf[pos + 1 : pos + 9]
            else:
                value = double(buf, pos + 1)[0]
            pos += 9
        else:
            pos = other(buf, pos, end, QUANTILE_FIELDS, "Quantile")
    return raw, value


def histogram(
    buf: bytes, subs: list[int], labels: bytes, prefixes: tuple[bytes, ...], out: Out
) -> None:
    """Classic series of a (gauge) histogram; native fields are skipped."""
    count = 0
    count_float = 0.0
    total = 0.0
    buckets: list[int] = []
    for i in range(0, len(subs), 2):
        pos, end = subs[i], subs[i + 1]
        while pos < end:
            tag = buf[pos]
            if tag == 0x1A:  # bucket
                size, start = uvarint(buf, pos + 1, end)
                stop = start + size
                if stop > end:
                    raise Bad("truncated bucket", pos)
                buckets += (start, stop)
                pos = stop
            elif tag == 0x08:
                count, pos = uvarint(buf, pos + 1, end)
            elif tag == 0x11 or tag == 0x21:
                if pos + 9 > end:
                    raise Bad("truncated double", pos)
                if tag == 0x11:
                    total = double(buf, pos + 1)[0]
                else:
                    count_float = double(buf, pos + 1)[0]
                pos += 9
            else:
                pos = other(buf, pos, end, HISTOGRAM_FIELDS, "Histogram")
    count_value = count_float if count_float != 0 else float(count)
    keys = out.keys
    values = out.values
    keys += (prefixes[0] + labels, prefixes[1] + labels)
    values += (count_value, total)
    base = prefixes[2] + labels
    for i in range(0, len(buckets), 2):
        raw, value = _bucket(buf, buckets[i], buckets[i + 1], out, len(keys))
        suffix = _le_suffixes.get(raw)
        if suffix is None:
            suffix = _suffix(_le_suffixes, raw, _LE)
        keys.append(base + suffix)
        values.append(value)
        if suffix is _INF_LE:
            return  # Prometheus stops at the first +Inf bucket
    keys.append(base + _INF_LE)
    values.append(count_value)


def _bucket(buf: bytes, pos: int, end: int, out: Out, index: int) -> tuple[bytes, float]:
    """A classic ``Bucket``: raw ``upper_bound`` bytes and the cumulative count."""
    raw = _ZERO
    count = 0
    count_float = 0.0
    while pos < end:
        tag = buf[pos]
        if tag == 0x08:
            count, pos = uvarint(buf, pos + 1, end)
        elif tag == 0x11 or tag == 0x21:
            if pos + 9 > end:
                raise Bad("truncated double", pos)
            if tag == 0x11:
                raw = buf[pos + 1 : pos + 9]
            else:
                count_float = double(buf, pos + 1)[0]
            pos += 9
        elif tag == 0x1A:
            size, start = uvarint(buf, pos + 1, end)
            stop = start + size
            if stop > end:
                raise Bad("truncated exemplar", pos)
            out.exemplars[index] = exemplar(buf, start, stop)
            pos = stop
        else:
            pos = other(buf, pos, end, BUCKET_FIELDS, "Bucket")
    return raw, count_float if count_float != 0 else float(count)


def _suffix(cache: dict[bytes, bytes], raw: bytes, label: bytes) -> bytes:
    """The key bytes of ``le``/``quantile`` for a raw double, remembered (bounded)."""
    value = double(raw)[0]
    if len(cache) >= _SUFFIX_MAX:
        cache.clear()
    if label == _LE and value == math.inf:
        suffix = _INF_LE  # identity marks the bucket that ends a histogram
    else:
        suffix = magic_label(label, _format_om_float(value))
    cache[raw] = suffix
    return suffix
