"""The same families as a text body, as a delimited protobuf body (for `benchmarks.parser`).

A text exposition is read with ``prometheus_client``'s parser and re-encoded as
``io.prometheus.client.MetricFamily`` messages with the test descriptor
(`tests.model.client_model`): counters, gauges and untyped per sample name, summaries grouped
by their labels without ``quantile``, histograms by their labels without ``le``. The decoded
protobuf body has the text body's series, so the two parsers can be timed on equal work.
"""

from __future__ import annotations

from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from tests.model import client_model as pb

__all__ = ["to_protobuf"]

_SIMPLE = {"counter": pb.COUNTER, "gauge": pb.GAUGE, "unknown": pb.UNTYPED, "untyped": pb.UNTYPED}


def to_protobuf(text_body: bytes) -> bytes:
    """``text_body`` (Prometheus text format) as a delimited ``MetricFamily`` body."""
    out: list[Any] = []
    for fam in text_string_to_metric_families(text_body.decode()):
        if fam.type in _SIMPLE:
            by_name: dict[str, Any] = {}
            for s in fam.samples:
                f = by_name.get(s.name)
                if f is None:
                    f = by_name[s.name] = pb.MetricFamily(
                        name=s.name, type=_SIMPLE[fam.type], help=fam.documentation
                    )
                    out.append(f)
                m = _metric(f, s.labels)
                getattr(
                    m, {pb.COUNTER: "counter", pb.GAUGE: "gauge"}.get(f.type, "untyped")
                ).value = s.value
        elif fam.type in ("summary", "histogram"):
            magic = "quantile" if fam.type == "summary" else "le"
            mtype = pb.SUMMARY if fam.type == "summary" else pb.HISTOGRAM
            f = pb.MetricFamily(name=fam.name, type=mtype, help=fam.documentation)
            out.append(f)
            groups: dict[tuple[tuple[str, str], ...], Any] = {}
            for s in fam.samples:
                labels = {k: v for k, v in s.labels.items() if k != magic}
                key = tuple(sorted(labels.items()))
                m = groups.get(key)
                if m is None:
                    m = groups[key] = _metric(f, labels)
                body = m.summary if mtype == pb.SUMMARY else m.histogram
                if s.name.endswith("_count"):
                    body.sample_count = int(s.value)
                elif s.name.endswith("_sum"):
                    body.sample_sum = s.value
                elif mtype == pb.SUMMARY:
                    body.quantile.add(quantile=float(s.labels["quantile"]), value=s.value)
                else:
                    body.bucket.add(
                        upper_bound=float(s.labels["le"]), cumulative_count=int(s.value)
                    )
    return pb.delimited(out)


def _metric(f: Any, labels: dict[str, str]) -> Any:
    m = f.metric.add()
    for name, value in labels.items():
        m.label.add(name=name, value=value)
    return m
