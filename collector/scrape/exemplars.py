"""The exemplars of a scrape: which ones are appended, and their remote-write bytes.

Place in the pipeline: after the scrape cache appended a body's samples
(`collector.scrape.cache.ScrapeCache.append`), the loop hands the body's exemplars (OpenMetrics
``# {...} v [ts]`` and protobuf counter/bucket exemplars, by sample index) to
`ExemplarTracker.collect`, which appends ``(ref, Exemplar bytes, ts)`` to the scrape's exemplar
list; the loop commits it next to the samples (`collector.storage.appender`), and remote
writers with ``send_exemplars: true`` send each as a ``TimeSeries`` with one exemplar. Only
bodies with exemplars come here; the float path is untouched.

Rules, as Prometheus 2.42's scrape loop and agent appender apply them:

* an exemplar goes with its sample: only when that sample was appended in this scrape (its
  series' last timestamp is the sample's; the first sample of a series, not its duplicates);
* without its own timestamp it takes the sample's (``e.Ts = t``);
* an exemplar equal to the last one appended for the series is skipped (labels and value, and
  the timestamp when either has its own: ``Exemplar.Equals``), so an exposition that repeats
  the same exemplar sends it once.

Not covered: exemplars of native histograms (protobuf ``Histogram.exemplars``, field 16) and
of bodies above the streaming threshold (read line by line without exemplar indexes).

Prometheus counterpart: the exemplar branch of ``scrapeLoop.append`` (``scrape/scrape.go``) and
``appender.AppendExemplar`` in ``tsdb/agent/db.go``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from collector.model.exemplar import encode
from collector.model.textparse.exposition import Exemplar
from collector.model.value import float_bits
from collector.scrape.cache import ScrapeCache
from collector.storage.appender import ExemplarSample

__all__ = ["ExemplarTracker"]

_Last = tuple[tuple[tuple[str, str], ...], int, int | None]
"""An appended exemplar as ``Equals`` compares it: labels, value bits, own timestamp."""


class ExemplarTracker:
    """One target's last exemplar per series, by the series' raw key in its cache (not by ref:
    a released ref may name another series once recycled, `SeriesRegistry.recycle`)."""

    __slots__ = ("_last",)

    def __init__(self) -> None:
        self._last: dict[bytes, _Last] = {}

    def collect(
        self,
        exemplars: Mapping[int, Exemplar],
        keys: Sequence[bytes],
        stamps: Sequence[int | None] | None,
        *,
        cache: ScrapeCache,
        now_ms: int,
        honor_timestamps: bool,
        out: list[ExemplarSample],
    ) -> None:
        """Append the exemplars of appended samples to ``out`` (see the module docstring)."""
        series = cache.series
        last_ts = cache.last_ts
        last = self._last
        seen: set[int] = set()
        seen_keys: list[bytes] = []
        for index, exemplar in sorted(exemplars.items()):
            if index >= len(keys):
                continue
            key = keys[index]
            ref = series.get(key)
            if not ref:
                continue
            stamp = stamps[index] if stamps is not None and honor_timestamps else None
            t = now_ms if stamp is None else stamp
            if last_ts[ref] != t or ref in seen:
                continue  # the sample was not appended (duplicate, limit, out of order...)
            seen.add(ref)
            seen_keys.append(key)
            labels = tuple(sorted((n, v) for n, v in exemplar.labels if v))
            current = (labels, float_bits(exemplar.value), exemplar.ts_ms)
            previous = last.get(key)
            if previous is not None and _equal(previous, current):
                continue
            last[key] = current
            ts = t if exemplar.ts_ms is None else exemplar.ts_ms
            out.append((ref, encode(labels, exemplar.value, ts), ts))
        if len(last) > 2 * len(seen) + 64:  # forget series gone from the exposition
            self._last = {key: last[key] for key in seen_keys if key in last}


def _equal(a: _Last, b: _Last) -> bool:
    if a[0] != b[0] or a[1] != b[1]:
        return False
    return (a[2] is None and b[2] is None) or a[2] == b[2]
