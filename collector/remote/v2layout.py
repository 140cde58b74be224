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

A series with the recorded labels whose ``Sample`` field has another length (a value that
turned 0 or from 0: proto3 leaves a zero value out) is written with its size computed, and the
series after it are looked for that many bytes further on (`_MAX_RESYNCS` times per batch).
Where the batch stops matching (a new series, another order, a histogram or an exemplar), the
transcoder goes on from there the ordinary way, with the symbol table the layout had at that
point (`Layout.symbols_at`): the prefix's bytes are exactly what the ordinary way would have
written, so the request is the same bytes as without the layout (a property test holds this).
Layouts are kept per first series of a batch (a shard's batches begin with its own series),
within a bound on the series they hold in all.

Prometheus counterpart: none (Prometheus builds its symbol table per request from
``labels.Labels``; this is a cache of that work).
"""

from __future__ import annotations

from collections.abc import Iterable
from itertools import compress, count, repeat
from operator import add, not_

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


_MAX_RESYNCS = 256
"""Series per batch whose ``Sample`` field changed length (a value that turned 0 or from 0)
`replay` steps over; past that the ordinary way takes the rest."""


def replay(layout: Layout, raw: bytes) -> tuple[list[bytes], int, int, bool]:
    """The 2.0 fields of the leading series of ``raw`` that match ``layout``: (the bytes to
    join, where the first series that does not match starts, how many matched, whether all of
    them sat at the recorded offsets).

    A series with the recorded labels whose one ``Sample`` field has another length (zero
    values have none, proto3) matches as well: its 2.0 size is computed, and the series after
    it are looked for that many bytes further on.
    """
    prefixes = layout.prefixes
    if prefixes is None:
        prefixes = layout._build()
    ats, splits, ends, statics = layout.ats, layout.splits, layout.ends, layout.statics
    m = len(prefixes)
    n = len(raw)
    startswith = raw.startswith
    out: list[bytes] = []
    k = shift = resyncs = 0
    pos = 0
    # One pass over the layout: after a series whose Sample field changed length, the same
    # iterators go on, the offsets shifted.
    prefix_iter, at_iter = iter(prefixes), iter(ats)
    while True:
        at: Iterable[int] = map(add, at_iter, repeat(shift)) if shift else at_iter
        matches = map(startswith, prefix_iter, at)
        j = next(compress(count(k), map(not_, matches)), m)
        while j > k and ends[j - 1] + shift > n:  # a cut body: its last series is not whole
            j -= 1
        if j > k:
            _emit(out, raw, statics, splits, ends, k, j, shift)
            pos = ends[j - 1] + shift
        if j == m or resyncs == _MAX_RESYNCS:
            break
        step = _resync(layout, raw, j, ats[j] + shift)
        if step is None:
            break
        static, split, end = step
        out += (static, raw[split:end])
        pos = end
        shift = end - ends[j]
        resyncs += 1
        k = j + 1
        if k == m:
            j = m
            break
    if not pos:
        return [], 0, 0, True
    meta = layout.metas[j - 1]
    if meta:
        out.append(meta)
    return out, pos, j, not resyncs


def _emit(
    out: list[bytes],
    raw: bytes,
    statics: list[bytes],
    splits: list[int],
    ends: list[int],
    k: int,
    j: int,
    shift: int,
) -> None:
    """Series ``k`` to ``j - 1``: each one's static bytes and its ``Sample`` field, which sits
    ``shift`` bytes after its recorded offset."""
    if k or j < len(statics):
        statics, splits, ends = statics[k:j], splits[k:j], ends[k:j]
    part: list[bytes] = [b""] * (2 * (j - k))
    part[0::2] = statics
    if shift:
        slices = map(slice, map(add, splits, repeat(shift)), map(add, ends, repeat(shift)))
    else:
        slices = map(slice, splits, ends)
    part[1::2] = map(raw.__getitem__, slices)
    out += part


def _resync(layout: Layout, raw: bytes, j: int, pos: int) -> tuple[bytes, int, int] | None:
    """Series ``j`` at ``pos`` if it has the recorded labels and one ``Sample`` field (of any
    length under 128): (its 2.0 bytes before that field, where the field starts, its end)."""
    n = len(raw)
    if pos >= n or raw[pos] != 0x0A:
        return None
    prefix = layout.prefixes[j]  # type: ignore[index]  # built by replay
    _, key_at = read_varint(prefix, 1)
    key = prefix[key_at:-2]
    length, start = read_varint(raw, pos + 1)
    split = start + len(key)
    end = start + length
    rest = end - split
    if end > n or not 2 <= rest < 0x82 or raw[split] != 0x12 or raw[split + 1] != rest - 2:
        return None
    if not raw.startswith(key, start):
        return None
    refs_len, refs, meta = layout.refs_lens[j], layout.refs[j], layout.metas[j]
    size = 1 + len(refs_len) + len(refs) + rest + len(meta)
    before = layout.metas[j - 1] if j else b""
    return before + b"\x2a" + varint(size) + b"\x0a" + refs_len + refs, split, end
