r"""Remote-write 2.0 wire codec: 1.0 batches from the write-ahead log -> 2.0 ``Request`` bodies.

Pipeline position: between the delivery queue and the HTTP client of a destination configured
with ``protobuf_message: io.prometheus.write.v2.Request`` (`collector.remote.sender`). The
encoder (`collector.remote.encoder`) and the write-ahead log keep one format, remote write 1.0,
so the restart guarantees are those of 1.0; a 2.0 body is built from the same record when it is
sent (`V2Transcoder.transcode`), and a 415 fallback sends the record itself, unchanged.

::

    record body (snappy(WriteRequest 1.0)) ─decompress─▶ TimeSeries fields
        │ leading series as in an earlier batch: its Layout's bytes around each Sample field
        │ then per TimeSeries: label bytes -> V2Series (cached per destination: the symbol
        │ fields of its label names and values, its metadata); the Sample field is copied
        ▼
    snappy(Request 2.0) = symbols (field 4, element 0 "") + TimeSeries (field 5) per sample

Wire facts used (spec 2.0-rc.4, reference §1.1): a 2.0 ``Sample`` has the 1.0 field numbers
(``value`` 1 double, ``timestamp`` 2 int64) and sits in ``TimeSeries`` field 2 in both versions,
so its bytes are reused verbatim; ``labels_refs`` (field 1) is a packed ``uint32`` list of
symbol indexes, name then value, in label order; ``Metadata`` (field 5) is ``type`` (1),
``help_ref`` (3), ``unit_ref`` (4).

A batch that begins with the same series as an earlier one (in steady state a shard sends the
same series in the same order) is first matched against that request's layout
(`collector.remote.v2layout`): the series that match, in order, are written from it with one
``startswith`` and one slice each, in ``map`` calls (measured 0.2 us per sample instead of
2.3-2.6, `benchmarks.remote`), and the same bytes as the ordinary way below, which takes over
from the first series that does not match and records the layout for the next batch.

In the ordinary way, per sample the work is: find where the ``Sample`` field starts (a fixed
offset for the encoder's fast layout, else a parse), one dict lookup of the label bytes, one
dict lookup per label of its two refs in this request (labels repeat across series: job,
instance, names), and for a label new to the request one ``dict.setdefault`` per name and value
into the symbol table (keyed by the *encoded* symbol field, so the table is written by joining
its keys). No object per sample beyond the bytes of the output.

Prometheus counterpart: ``storage/remote/queue_manager.go`` (``populateV2TimeSeries``,
``buildV2WriteRequest``), ``storage/remote/codec.go``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from collector.remote.codec import (
    METRIC_TYPES,
    DecodedSeries,
    DecodeError,
    compress,
    decompress,
    varint,
)
from collector.remote.v2layout import Layout, first_key, replay
from collector.remote.v2wire import (
    MAX_FAST_SYMBOLS,
    NO_SAMPLES,
    REWRITE,
    VARINTS,
    check_samples,
    labels_end,
    parse_labels,
    read_varint,
    ref,
    v2_tail,
)

__all__ = [
    "CONTENT_TYPE_V1",
    "CONTENT_TYPE_V2",
    "V2",
    "DecodedV2",
    "V2Series",
    "V2Transcoder",
    "decode_v2",
    "family_of",
]

V2 = "io.prometheus.write.v2.Request"
"""The ``protobuf_message`` value that selects remote write 2.0."""

CONTENT_TYPE_V2 = "application/x-protobuf;proto=io.prometheus.write.v2.Request"
CONTENT_TYPE_V1 = "application/x-protobuf"

_MAX_LAYOUT_SERIES = 16_000
"""Series kept in layouts per destination, in all (~450 bytes each once replayed, so ~7 MB at
most: 8 batches of 2,000); the least recently used layouts go first."""

_EMPTY_SYMBOL = b"\x22\x00"
"""``symbols`` element 0, the empty string (spec: MUST be first)."""

_SUFFIXES: dict[str, tuple[str, ...]] = {
    "counter": ("_total", "_created"),
    "histogram": ("_bucket", "_count", "_sum", "_created"),
    "summary": ("_count", "_sum", "_created"),
    "gaugehistogram": ("_bucket", "_gcount", "_gsum"),
    "info": ("_info",),
}
"""Series-name suffixes each metric type adds to its family name (OpenMetrics)."""

Meta = tuple[int, bytes, bytes]
"""``(MetricType number, help symbol field, unit symbol field)`` of one family."""

MetadataLookup = Callable[[], Iterable[tuple[str, str, str, str]]]
"""``(family, type, help, unit)`` entries, as `collector.remote.metadata.MetadataSource`."""

DecodedV2 = tuple[list[DecodedSeries], int, int, list[tuple[str, int, str, str]]]
"""A decoded 2.0 request: its series (float samples), histogram and exemplar counts and the
distinct metadata ``(metric name, type, help, unit)`` it
carried (2.0 metadata belongs to a series, so it is keyed by the series' ``__name__``)."""


def _symbol(text: str) -> bytes:
    """The ``symbols`` field (4) of one string."""
    raw = text.encode("utf-8")
    return b"\x22" + varint(len(raw)) + raw


class V2Series:
    """One series as 2.0 sends it: symbol fields of its label names and values, and metadata."""

    __slots__ = ("fields", "meta", "meta_version", "name", "pairs")

    def __init__(self, fields: tuple[bytes, ...], name: str) -> None:
        self.fields = fields
        """Encoded ``symbols`` fields: name, value, name, value... in label order."""
        self.pairs = tuple(fields[i] + fields[i + 1] for i in range(0, len(fields), 2))
        """One key per label (its two symbol fields joined): a request maps a label to its two
        refs once, and most labels (job, instance, __name__...) repeat across its series."""
        self.name = name
        """``__name__`` (family lookup)."""
        self.meta: Meta | None = None
        self.meta_version = -1


def family_of(name: str, families: dict[str, tuple[str, str, str]]) -> tuple[str, str, str] | None:
    """``(type, help, unit)`` of the family series ``name`` belongs to, or None.

    The family is ``name`` itself, or ``name`` less a suffix its type adds (``_total`` of a
    counter, ``_bucket``/``_count``/``_sum`` of a histogram, ...), as Prometheus checks it.
    """
    found = families.get(name)
    if found is not None:
        return found
    for suffix in ("_total", "_bucket", "_count", "_sum", "_created", "_gcount", "_gsum", "_info"):
        if name.endswith(suffix):
            found = families.get(name[: -len(suffix)])
            if found is not None and suffix in _SUFFIXES.get(found[0], ()):
                return found
    return None


class V2Transcoder:
    """Builds 2.0 bodies from 1.0 record bodies for one destination (synchronous, no I/O).

    ``metadata`` (None: no metadata is sent) is read again when ``metadata_every`` seconds of
    ``clock`` have passed since the last read, so families seen by later scrapes get theirs.
    The series cache is bounded by time: a series not sent for between ``forget_after`` and
    twice that is dropped (rebuilt from its label bytes if it comes back). With ``layouts``
    (the default) a batch that begins like an earlier one is written from that request's
    `Layout` as far as it has the same series in the same order: the same bytes, cheaper
    (False: every series the ordinary way; the tests compare the two).
    """

    def __init__(
        self,
        *,
        metadata: MetadataLookup | None = None,
        metadata_every: float = 60.0,
        forget_after: float = 600.0,
        clock: Callable[[], float] | None = None,
        layouts: bool = True,
    ) -> None:
        self._use_layouts = layouts
        self._cache: dict[bytes, V2Series] = {}
        self._old: dict[bytes, V2Series] = {}
        """The previous generation: series not sent for ``forget_after`` seconds are dropped."""
        self._forget_after = forget_after
        self._rotated_at: float | None = None
        self._metas: dict[str, Meta] = {}
        self._metadata = metadata
        self._metadata_every = metadata_every
        self._clock = clock
        self._families: dict[str, tuple[str, str, str]] = {}
        self._version = 0
        self._read_at: float | None = None
        self._layouts: dict[bytes, Layout] = {}
        """The last layout of the requests beginning with each first series (oldest first)."""
        self._layout_series = 0

    @property
    def cached_series(self) -> int:
        """Series whose 2.0 encoding is cached."""
        return len(self._cache)

    def _tick(self) -> None:
        """Rotate the series cache and re-read the metadata when they are due."""
        now = self._clock() if self._clock is not None else 0.0
        if self._rotated_at is None:
            self._rotated_at = now
        elif now - self._rotated_at >= self._forget_after:
            self._rotated_at = now
            self._old = self._cache
            self._cache = {}
            self._layouts = {}
            self._layout_series = 0
        source = self._metadata
        if source is None:
            return
        if self._read_at is not None and now - self._read_at < self._metadata_every:
            return
        self._read_at = now
        families: dict[str, tuple[str, str, str]] = {}
        for family, kind, help_text, unit in source():
            families.setdefault(family, (kind, help_text, unit))
        if families != self._families:
            self._families = families
            self._metas = {}
            self._version += 1

    def _meta(self, series: V2Series) -> Meta | None:
        series.meta_version = self._version
        found = family_of(series.name, self._families)
        if found is None:
            return None
        kind, help_text, unit = found
        number = METRIC_TYPES.get(kind, 0)
        if not (number or help_text or unit):
            return None
        key = f"{kind}\0{help_text}\0{unit}"
        meta = self._metas.get(key)
        if meta is None:
            # One tuple per family per metadata read: a request keys its encoded fields by id.
            meta = self._metas[key] = (number, _symbol(help_text), _symbol(unit))
        return meta

    def transcode(self, body: bytes) -> tuple[bytes, int]:
        """snappy(1.0 ``WriteRequest``) -> (snappy(2.0 ``Request``), samples in it)."""
        raw, count = self.encode(decompress(body))
        return compress(raw), count

    def encode(self, raw: bytes) -> tuple[bytes, int]:
        """An uncompressed 1.0 body -> (uncompressed 2.0 body, samples).

        1.0 ``metadata`` fields (3) are skipped: 2.0 carries metadata per series. The series
        the last request that began with the same series had in the same order are written
        from its `Layout` (`collector.remote.v2layout`); the rest the ordinary way.
        """
        self._tick()
        key = first_key(raw) if self._use_layouts else None
        layout = self._layouts.pop(key, None) if key is not None else None
        if layout is not None:
            self._layout_series -= len(layout)
        if key is not None and layout is not None and layout.version == self._version:
            out, pos, done, exact = replay(layout, raw)
            if done == len(layout) and pos == len(raw):
                self._keep(key, layout)
                return layout.table + b"".join(out), done
            symbols = layout.symbols_at(done)
            if exact:
                record = layout.prefix(done)
            else:  # offsets moved: this batch is not recorded, the layout stays as it was
                self._keep(key, layout)
                key = None
                record = Layout(self._version)
        else:
            out, pos, done = [], 0, 0
            record = Layout(self._version)
            symbols = {_EMPTY_SYMBOL: 0}
        body = self._encode_from(raw, pos, out, done, symbols, record if key else None)
        if key is not None and len(record):
            record.seal(raw, symbols)
            self._keep(key, record)
        return body

    def _keep(self, key: bytes, layout: Layout) -> None:
        """Keep ``layout`` for batches beginning with ``key``, within `_MAX_LAYOUT_SERIES`."""
        layouts = self._layouts
        layouts[key] = layout
        self._layout_series += len(layout)
        while self._layout_series > _MAX_LAYOUT_SERIES and len(layouts) > 1:
            oldest = next(iter(layouts))
            self._layout_series -= len(layouts.pop(oldest))

    def _encode_from(
        self,
        raw: bytes,
        pos: int,
        out: list[bytes],
        count: int,
        symbols: dict[bytes, int],
        record: Layout | None,
    ) -> tuple[bytes, int]:
        """The ordinary way from ``pos`` on, after ``count`` series in ``out`` and ``symbols``;
        each series with one ``Sample`` field is added to ``record`` until one is not."""
        version = self._version
        cache = self._cache
        intern = symbols.setdefault
        v = VARINTS
        meta_fields: dict[int, bytes] = {}
        pair_refs: dict[bytes, bytes] = {}
        label_refs = pair_refs.get
        join = b"".join
        fast = MAX_FAST_SYMBOLS
        recording = record is not None
        if record is None:
            record = Layout(version)
        add_at, add_split, add_end = record.ats.append, record.splits.append, record.ends.append
        add_refs_len, add_refs = record.refs_lens.append, record.refs.append
        add_meta, add_nsyms = record.metas.append, record.nsyms.append
        n = len(raw)
        while pos < n:
            at = pos
            tag = raw[pos]
            pos += 1
            length, pos = read_varint(raw, pos)
            end = pos + length
            if end > n:
                raise DecodeError("WriteRequest field runs past the end of the body")
            if tag != 0x0A:
                if tag & 7 != 2:
                    raise DecodeError(f"unexpected WriteRequest field tag {tag:#x}")
                pos = end
                continue
            # Where the Sample field starts if the series has the encoder's fast layout (an
            # 18-byte value or 9-byte zero Sample field last). The guess is kept only if the
            # bytes before it are a cached series (a byte string that once parsed as a whole
            # sequence of Label fields) or parse so now: proto fields are read from the start,
            # so such a split is the only one.
            if end - pos > 18 and raw[end - 18] == 0x12 and raw[end - 17] == 16:
                split = end - 18
            elif end - pos > 9 and raw[end - 9] == 0x12 and raw[end - 8] == 7:
                split = end - 9
            else:
                split = 0
            key = raw[pos:split] if split else b""
            series = cache.get(key) if split else None
            tail = b""
            if series is None:
                if not split or labels_end(raw, pos, split) != split:
                    split = labels_end(raw, pos, end)
                    flags = check_samples(raw, split, end)
                    if flags & REWRITE:
                        tail = v2_tail(raw, split, end, intern, symbols)
                    if flags & NO_SAMPLES:
                        count -= 1  # an exemplar-only series (counted back below)
                    key = raw[pos:split]
                    series = cache.get(key)
                if series is None:
                    series = self._old.pop(key, None) or _parse_series(key)
                    cache[key] = series
            if series.meta_version != version:
                series.meta = self._meta(series)
            parts = list(map(label_refs, series.pairs))
            if None in parts:  # a label new to this request: intern its name and value
                fields = series.fields
                for i, pair in enumerate(series.pairs):
                    if parts[i] is None:
                        parts[i] = pair_refs[pair] = ref(intern(fields[2 * i], len(symbols))) + ref(
                            intern(fields[2 * i + 1], len(symbols))
                        )
            refs = join(parts)  # type: ignore[arg-type]  # no None is left in parts
            meta = series.meta
            if meta is None:
                meta_field = b""
            else:
                meta_field = meta_fields.get(id(meta), b"")
                if not meta_field:
                    kind, help_field, unit_field = meta
                    help_ref = intern(help_field, len(symbols)) if len(help_field) > 2 else 0
                    unit_ref = intern(unit_field, len(symbols)) if len(unit_field) > 2 else 0
                    payload = (
                        (b"\x08" + varint(kind) if kind else b"")
                        + (b"\x18" + varint(help_ref) if help_ref else b"")
                        + (b"\x20" + varint(unit_ref) if unit_ref else b"")
                    )
                    meta_field = b"\x2a" + varint(len(payload)) + payload
                    meta_fields[id(meta)] = meta_field
            size = len(refs)
            refs_len = v[size] if size < fast else varint(size)
            rest = tail or raw[split:end]
            size += 1 + len(refs_len) + len(rest) + len(meta_field)
            if recording:
                if tail or not 2 <= len(rest) < 0x82 or rest[0] != 0x12 or rest[1] != len(rest) - 2:
                    recording = False  # not one Sample field: the layout ends before it
                else:
                    add_at(at)
                    add_split(split)
                    add_end(end)
                    add_refs_len(refs_len)
                    add_refs(refs)
                    add_meta(meta_field)
                    add_nsyms(len(symbols))
            out += (
                b"\x2a",
                v[size] if size < fast else varint(size),
                b"\x0a",
                refs_len,
                refs,
                rest,
                meta_field,
            )
            count += 1
            pos = end
        return b"".join(symbols) + b"".join(out), count


def _parse_series(label_bytes: bytes) -> V2Series:
    """The `V2Series` of the ``Label`` fields ``label_bytes`` (a cache miss: rare)."""
    return V2Series(*parse_labels(label_bytes))


def decode_v2(raw: bytes) -> DecodedV2:
    """Parse an uncompressed 2.0 ``Request`` with the protobuf classes (tests; the receiver
    uses `collector.remote.received.decode_v2`, which this summarises).

    Raises `DecodeError` for a body that is not a ``Request`` or whose refs do not resolve.
    """
    from collector.remote import received  # the protobuf runtime: decoding only

    got = received.decode_v2(raw)
    return got.series, len(got.histograms) + got.refused, len(got.exemplars), got.metadata
