"""The layout of a previous 2.0 request, replayed when the next batch has the same series.

Pipeline position: inside `collector.remote.codec2.V2Transcoder.encode`, at send time. In steady
state a destination's shard sends the same series in the same order batch after batch (one
scrape's run per batch, or the same runs), and a 2.0 ``Request`` is a function of that order:
the symbol table is built by first appearance, so each series' ``labels_refs`` and metadata
refs are the same bytes as last time. A `Layout` keeps, per series of a request, where its 1.0
``TimeSeries`` field was and its bytes up to the ``Sample`` field's length (tag, length, labels,
``Sample`` tag and length), the 2.0 bytes that go before its ``Sample`` field (the previous
series' metadata field, the ``TimeSeries`` tag and length, the ``labels_refs`` field), and the
size of the symbol table after it. `replay` checks a new batch against it with one
``startswith`` per series at the recorded offset and builds the 2.0 body by interleaving the
kept bytes with the batch's own ``Sample`` fields, copied as they are; both run as ``map`` over
the layout's lists, with no Python-level step per series, no lookup per label and no symbol
interning.

Where the batch stops matching (a new series, another order, a value that turned 0 or from 0,
whose ``Sample`` field has another length, a histogram or an exemplar), the transcoder goes on
from there the ordinary way, with the symbol table the layout had at that point
(`Layout.symbols_at`): the prefix's bytes are exactly what the ordinary way would have
written, so the request is the same bytes as without the layout (a property test holds this).
Layouts are kept per first series of a batch (a shard's batches begin with its own series),
within a bound on the series they hold in all.

Prometheus counterpart: none (Prometheus builds its symbol table per request from
``labels.Labels``; this is a cache of that work).
"""

from __future__ import annotations

from itertools import compress, count
from operator import not_

from collector.remote.codec import varint
from collector.remote.v2wire import read_varint

__all__ = ["Layout", "first_key", "replay"]


class Layout:
    """One request's series layout (a prefix of its series: those with one ``Sample`` field).

    The transcoder appends to the lists as it writes a request the ordinary way (`add`), at
    the cost of a few appends per series; the bytes a replay compares and writes are built
    from them when the layout is first replayed (`_build`), so a layout that is never used
    again costs little.
    """

    __slots__ = (
        "ats",
        "ends",
        "metas",
        "nsyms",
        "prefixes",
        "raw",
        "refs",
        "refs_lens",
        "splits",
        "statics",
        "symbols",
        "table",
        "version",
    )

    def __init__(self, version: int) -> None:
        self.ats: list[int] = []
        """Offset of each series' ``TimeSeries`` field in the body."""
        self.splits: list[int] = []
        """Offset of each series' ``Sample`` field (one, its length under 128)."""
        self.ends: list[int] = []
        """Offset where each series' ``TimeSeries`` field ends."""
        self.refs_lens: list[bytes] = []
        self.refs: list[bytes] = []
        """Each series' 2.0 ``labels_refs`` (its length varint, its packed refs)."""
        self.metas: list[bytes] = []
        """2.0 ``metadata`` field of each series (``b""`` when none)."""
        self.nsyms: list[int] = []
        """Symbols in the request's table after each series (its own interned)."""
        self.raw = b""
        """The 1.0 body recorded (until `_build`)."""
        self.prefixes: list[bytes] | None = None
        """1.0 bytes of each series from its ``TimeSeries`` tag to its ``Sample`` length."""
        self.statics: list[bytes] = []
        """2.0 bytes before each series' ``Sample`` field (with the previous one's metadata)."""
        self.symbols: list[bytes] = []
        """Encoded ``symbols`` fields in table order, as far as the last series needs them."""
        self.table = b""
        """``b"".join(symbols)``."""
        self.version = version
        """The transcoder's metadata version the metadata fields belong to."""

    def __len__(self) -> int:
        return len(self.ats)

    def prefix(self, n: int) -> Layout:
        """A new layout holding this one's first ``n`` series (to be continued)."""
        out = Layout(self.version)
        for name in ("ats", "splits", "ends", "refs_lens", "refs", "metas", "nsyms"):
            setattr(out, name, getattr(self, name)[:n])
        return out

    def symbols_at(self, n: int) -> dict[bytes, int]:
        """The symbol table after the first ``n`` series, as the transcoder builds it."""
        size = self.nsyms[n - 1] if n else 1
        return {symbol: i for i, symbol in enumerate(self.symbols[:size])}

    def seal(self, raw: bytes, symbols: dict[bytes, int]) -> None:
        """End the recording of ``raw`` (``symbols``: its request's whole table)."""
        size = self.nsyms[-1] if self.nsyms else 1
        self.symbols = list(symbols)[:size]
        self.table = b"".join(self.symbols)
        self.raw = raw

    def _build(self) -> list[bytes]:
        """The 1.0 prefixes and 2.0 statics of every series; the recorded body is let go."""
        raw = self.raw
        self.raw = b""
        prefixes = list(map(raw.__getitem__, map(slice, self.ats, [s + 2 for s in self.splits])))
        previous = [b"", *self.metas[:-1]]
        self.statics = [
            before + b"\x2a" + varint(len(refs) + 1 + len(refs_len) + end - split + len(meta))
            + b"\x0a" + refs_len + refs
            for before, refs_len, refs, split, end, meta in zip(
                previous, self.refs_lens, self.refs, self.splits, self.ends, self.metas, strict=True
            )
        ]  # fmt: skip
        self.prefixes = prefixes
        return prefixes


def first_key(raw: bytes) -> bytes | None:
    """The ``Label`` fields of the first ``TimeSeries`` of a 1.0 body (None if it has none)."""
    if not raw or raw[0] != 0x0A:
        return None
    length, start = read_varint(raw, 1)
    end = start + length
    pos = start
    while pos < end and raw[pos] == 0x0A:
        size, after = read_varint(raw, pos + 1)
        if after + size > end:
            return None
        pos = after + size
    return raw[start:pos]


def replay(layout: Layout, raw: bytes) -> tuple[list[bytes], int, int]:
    """The 2.0 fields of the leading series of ``raw`` that match ``layout``: (the bytes to
    join, where the first series that does not match starts, how many matched)."""
    prefixes = layout.prefixes
    if prefixes is None:
        prefixes = layout._build()
    m = len(prefixes)
    matches = map(raw.startswith, prefixes, layout.ats)
    k = next(compress(count(), map(not_, matches)), m)
    ends = layout.ends
    n = len(raw)
    while k and ends[k - 1] > n:  # a cut body: its last series is not whole
        k -= 1
    if not k:
        return [], 0, 0
    statics, splits = layout.statics, layout.splits
    if k < m:
        statics, splits, ends = statics[:k], splits[:k], ends[:k]
    out: list[bytes] = [b""] * (2 * k)
    out[0::2] = statics
    out[1::2] = map(raw.__getitem__, map(slice, splits, ends))
    meta = layout.metas[k - 1]
    if meta:
        out.append(meta)
    return out, ends[k - 1], k
