"""SeriesRegistry: one ``int`` ref per distinct label set, shared by scrape and remote write.

The scrape cache holds refs; remote writers key their pre-encoded label bytes by ref. Released
refs are collected in `drain_released` so writers can forget their encodings (the agent WAL's
series garbage collection, done in memory); once every writer has, `recycle` hands them back
and a later new label set may get one. Until then a released ref is never handed out, so a
writer still holding bytes for it can never confuse it with a new series.

Refs are dense small ints (1, 2, ...; 0 is never one: the scrape cache's "dropped" mark), so
the ref -> labels map is a list (8 bytes a series where a dict takes about 52), and recycling
keeps it as long as the most series live at once, not as the series ever seen. The same holds
for `SeriesRegistry.last_ts`, each series' last committed timestamp (the agent storage's
``lastTs``), which the scrape loops check and set: a new or recycled ref starts at `NEVER`.

Memory: the label sets are the registry's largest part. Their ``(name, value)`` pairs repeat
across series (``job``, ``instance``, ``__name__``, ``mode="idle"``) and across targets serving
the same metrics, so the registry keeps one tuple per distinct pair and each label set is a
tuple of those shared pairs (about 56 bytes saved per repeated pair). Pairs are counted by the
live label sets that hold them and dropped with the last one, so churn leaves nothing behind.

Prometheus counterpart: the series records of ``tsdb/agent/db.go`` and the WAL watcher (and the
string interning of ``labels.Labels`` in its stringlabels build).
"""

from __future__ import annotations

from collections import Counter

from collector.model.labels import Labels

__all__ = ["NEVER", "SeriesRegistry"]

Pair = tuple[str, str]

NEVER = -(1 << 64)
"""Below every int64 timestamp: the last timestamp of a series with no sample yet."""


class SeriesRegistry:
    """Interns label sets to refs. Single-threaded: used from the event loop only."""

    __slots__ = (
        "_by_labels",
        "_free",
        "_labels",
        "_pair_holders",
        "_pairs",
        "_refcount",
        "_released",
        "last_ts",
    )

    def __init__(self) -> None:
        self._by_labels: dict[Labels, int] = {}
        self._labels: list[Labels | None] = [None]
        """Indexed by ref; None for a free ref (slot 0 is never a ref)."""
        self._refcount: dict[int, int] = {}
        """Holders of a ref held more than once (nearly every ref has exactly one: its target's
        scrape cache), so a live ref absent here has one holder."""
        self._pairs: dict[Pair, Pair] = {}
        """Every pair of a live label set -> its one shared tuple."""
        self._pair_holders: Counter[Pair] = Counter()
        """Live label sets holding each pair of ``_pairs``."""
        self._released: list[int] = []
        self._free: list[int] = []
        """Released refs every writer forgot (`recycle`): handed out again first."""
        self.last_ts: list[int] = [NEVER]
        """By ref: the timestamp (ms) of the series' last committed sample, `NEVER` before the
        first; shared by every scrape loop (one series, one out-of-order check)."""

    def acquire(self, labels: Labels) -> int:
        """The ref of ``labels``, created on first use; pair each call with a `release`."""
        ref = self._by_labels.get(labels)
        if ref is None:
            labels = self._share_pairs(labels)
            if self._free:
                ref = self._free.pop()
                self._labels[ref] = labels
                self.last_ts[ref] = NEVER
            else:
                ref = len(self._labels)
                self._labels.append(labels)
                self.last_ts.append(NEVER)
            self._by_labels[labels] = ref
        else:
            self._refcount[ref] = self._refcount.get(ref, 1) + 1
        return ref

    def _share_pairs(self, labels: Labels) -> Labels:
        """``labels`` rebuilt from the shared pair tuples (a new label set: a cache miss)."""
        shared = tuple(map(self._pairs.setdefault, labels, labels))
        self._pair_holders.update(shared)
        return shared

    def release(self, ref: int) -> None:
        """Drop one holder of ``ref``; the last one frees it."""
        count = self._refcount.get(ref)
        if count is not None:
            if count > 2:
                self._refcount[ref] = count - 1
            else:
                del self._refcount[ref]
            return
        labels = self.labels(ref)
        if labels is None:
            return
        self._labels[ref] = None
        self.last_ts[ref] = NEVER
        del self._by_labels[labels]
        holders = self._pair_holders
        for pair in labels:
            left = holders[pair] - 1
            if left:
                holders[pair] = left
            else:
                del holders[pair], self._pairs[pair]
        self._released.append(ref)

    def labels(self, ref: int) -> Labels | None:
        """The label set of a live ref, or None once it was released."""
        return self._labels[ref] if 0 < ref < len(self._labels) else None

    @property
    def label_sets(self) -> list[Labels | None]:
        """The label sets by ref, None for a free ref: the list itself, read (never changed) by
        the remote-write encoder, which encodes samples straight from it
        (`collector.remote.encoder`)."""
        return self._labels

    def drain_released(self) -> list[int]:
        """Refs released since the last call (for writers to forget their encodings, then
        `recycle`)."""
        released, self._released = self._released, []
        return released

    def recycle(self, refs: list[int]) -> None:
        """Hand ``refs`` (from `drain_released`) out again: every holder of per-ref state
        (writers' encodings, last timestamps) has dropped it."""
        labels = self._labels
        self._free.extend(ref for ref in refs if labels[ref] is None)

    @property
    def pairs(self) -> int:
        """Distinct ``(name, value)`` pairs held by the live label sets."""
        return len(self._pairs)

    def __len__(self) -> int:
        return len(self._by_labels)
