"""`SeriesEncodings`: one remote-write destination's encoding of every series it sends, by ref.

Pipeline position: owned by `collector.remote.encoder.BatchEncoder` (one per destination), which
looks series up here on every commit; the agent's series garbage collection reaches it through
`RemoteWriter.forget` with the refs the `SeriesRegistry` released, before it recycles them.

Memory: a series is kept as ONE bytes object (its labels encoded once) in one of two lists
indexed by ref (refs are dense small ints, recycled by `SeriesRegistry`: 8 bytes a slot where a
dict takes ~52), by the form its last float sample took. ``zeros`` holds the whole encoding of
a ``0.0`` sample (proto3 omits the value field, so it is the same bytes every time:
node_exporter's many series that stay at zero reuse it). ``values`` holds the series' last
encoding: the value prefix and the 8 bytes of its last value. A sample whose value has the same
bits is sent as that very object (info metrics, constant gauges, idle counters: its packed
bytes are compared, nothing is allocated); a changed one replaces it. A sample of the other form
misses the list it is looked up in and moves the series across (a value leaving or reaching
zero, rare). ``python -m benchmarks.memory`` (node_exporter, values changing every scrape):
about 146 B per series (the bytes and two list slots; 190 B with dicts), against 545 B for the
former object holding the prefix, the zero encoding, the last encoding and the last value. An
earlier form kept an unchanged value as ``(value, encoding)`` and a changing one as its prefix:
every series' first sample then made a tuple, a float and an encoding that its first change
threw away, 70 B a series more at the agent's peak (the first scrapes), where the resident
memory stays. A series write relabeling dropped is ``b""`` in both lists (one truth test per
sample, no exception per dropped sample). Series sent as native histograms are in ``hist``
(kind byte + label bytes) and in neither list.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from collector.model.labels import Labels, from_dict
from collector.remote.codec import encode_labels, fast_prefixes
from collector.storage.series import SeriesRegistry

__all__ = ["ENTRY_TAIL", "ZERO_TAIL", "CommitCounts", "Relabel", "SeriesEncodings", "label_bytes"]

Relabel = Callable[[dict[str, str]], dict[str, str] | None]

VALUE_TAIL = 3
"""Bytes after the labels in a value prefix (Sample tag, length, value tag)."""
ENTRY_TAIL = VALUE_TAIL + 8
"""Bytes after the labels in a ``values`` entry: the value prefix's tail and the value."""
ZERO_TAIL = 2
"""Bytes after the labels in a zero encoding (Sample tag, length)."""

_NO_VALUE = bytes(8)
"""The value bytes of a ``values`` entry made before its series had a value (`labels`):
``pack(0.0)``, which no sample looked up in ``values`` has (a zero goes to ``zeros``)."""


class CommitCounts:
    """What one `BatchEncoder.commit` could not send, for the owner's metrics."""

    __slots__ = ("dropped_series", "highest_ts", "unknown")

    def __init__(self) -> None:
        self.dropped_series = 0
        """Samples of series write relabeling dropped (intentional: not a loss)."""
        self.unknown = 0
        """Samples of refs the series registry no longer knows (a bug if ever non-zero)."""
        self.highest_ts = 0
        """Highest timestamp committed, ms (0 when nothing was)."""


class SeriesEncodings:
    """The per-ref encodings of one destination (see the module docstring)."""

    __slots__ = ("_external", "_relabel", "_series", "hist", "values", "zeros")

    def __init__(
        self, series: SeriesRegistry, external_labels: Labels, relabel: Relabel | None
    ) -> None:
        self._series = series
        self._external = external_labels
        self._relabel = relabel
        self.values: list[bytes | None] = []
        """By ref, for a series whose last float sample was non-zero: its last encoding, the
        value prefix (`fast_prefixes`) and that value's 8 bytes; ``b""`` for a series write
        relabeling dropped (also ``b""`` in ``zeros``); None for any other ref."""
        self.zeros: list[bytes | None] = []
        """By ref, for a series whose last float sample was ``0.0`` or ``-0.0``: its whole
        encoding minus the timestamp field (`fast_prefixes`); None for any other ref. A ref
        has an entry in at most one of the two, except a dropped series (``b""`` in both)."""
        self.hist: dict[int, bytes] = {}
        """Series sent as native histograms -> kind byte + label bytes."""

    @property
    def cached_series(self) -> int:
        """Series held in any form (float, zero, histogram or dropped)."""
        pairs = zip(self.values, self.zeros, strict=True)
        return sum(1 for v, z in pairs if v is not None or z is not None) + len(self.hist)

    def grow(self, ref: int) -> None:
        """Make both lists long enough to hold ``ref``, in place (the encoder holds them; an
        eighth more, as `SeriesRegistry` hands out the lowest free refs first)."""
        size = len(self.values)
        if ref >= size:
            more = [None] * (max(ref + 1, size + (size >> 3) + 64) - size)
            self.values += more
            self.zeros += more

    def labels(self, ref: int, counts: CommitCounts) -> bytes | None:
        """The label bytes ``ref``'s series is sent with, from whichever form holds it, else
        resolved now (and kept in ``values``); None, counted, when dropped or unknown."""
        self.grow(ref)
        found = self.values[ref]
        if found == b"":
            counts.dropped_series += 1
            return None
        if found is not None:
            return label_bytes(found, ENTRY_TAIL)
        found = self.zeros[ref]
        if found is not None:
            return label_bytes(found, ZERO_TAIL)
        found = self.hist.get(ref)
        if found is not None:
            return found[1:]
        labels = self.resolve(ref, counts)
        if labels is not None:
            self.values[ref] = fast_prefixes(labels)[0] + _NO_VALUE
        return labels

    def resolve(self, ref: int, counts: CommitCounts) -> bytes | None:
        """Encode a series for this destination: external labels, write relabel, label bytes.

        None, counted in ``counts``, when the ref is unknown or write relabeling dropped the
        series (then ``b""`` in both lists, so it is relabeled once).
        """
        labels = self._series.labels(ref)
        if labels is None:
            counts.unknown += 1
            return None
        if self._external or self._relabel is not None:
            builder = dict(labels)
            for name, value in self._external:
                # External labels never override the series' own (spec §6.5).
                builder.setdefault(name, value)
            if self._relabel is not None:
                relabeled = self._relabel(builder)
                builder = {} if relabeled is None else relabeled
            labels = from_dict(builder)
        if not labels:
            self.grow(ref)
            self.values[ref] = self.zeros[ref] = b""
            counts.dropped_series += 1
            return None
        return encode_labels(labels)

    def forget(self, refs: Iterable[int]) -> None:
        """Drop the encodings of released refs (`SeriesRegistry.drain_released`)."""
        size = len(self.values)
        for ref in refs:
            if ref < size:
                self.values[ref] = self.zeros[ref] = None
            self.hist.pop(ref, None)


def label_bytes(encoded: bytes, tail: int) -> bytes:
    """The ``Label`` fields inside a `fast_prefixes` form: its tag and length varint, then the
    labels, then ``tail`` bytes (`VALUE_TAIL` for a value prefix, `ZERO_TAIL` for a zero
    encoding)."""
    i = 1
    while encoded[i] & 0x80:
        i += 1
    return encoded[i + 1 : -tail]
