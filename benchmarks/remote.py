"""Remote-write encode+compress throughput: the hand encoder vs the protobuf package.

Each request is one 2,000-series batch (one sample per TimeSeries, one scrape timestamp, the
shape `RemoteWriter` sends), labels shaped like node_exporter series plus job/instance. The
hand path joins pre-encoded label bytes with packed samples (what `RemoteWriter.commit` does);
the baseline builds ``prometheus.WriteRequest`` objects and calls ``SerializeToString``. Both
are snappy-compressed.

``RemoteWriter.commit + seal`` is the real commit path in steady state (label encodings warm),
one 2,000-sample scrape per commit sealed into one batch, with the sample lists built before
timing (building them is the scrape loop's cost): once with every value changed since the last
scrape, once with half of them unchanged (at 1 s intervals most node_exporter series repeat their
value: idle counters, gauges, info metrics).

Remote write 2.0 (`collector.remote.codec2`) is built at send time from the sealed 1.0 batch, so
its cost is the 1.0 commit + seal plus `V2Transcoder.transcode` (decompress, intern, compress);
printed per sample next to 1.0's, with bytes per sample compressed and not, for two label
shapes: the mixed batch above (2,000 instances) and one node_exporter-like target (200 families
of 10 series, one instance), both with HELP metadata per family (2.0 carries it in every series,
1.0 sends it separately). The transcode is timed in steady state (the same series batch after
batch, so written from the last request's layout, `collector.remote.v2layout`), with 1% of
the values turned 0 since (their shorter ``Sample`` fields stepped over), and without
layouts (every series the ordinary way: a batch whose series or order changed). Run:
``python -m benchmarks.remote``.
"""

from __future__ import annotations

import struct
import tempfile
import time
from collections.abc import Callable

from prometheus_client import CollectorRegistry

from collector.config import QueueConfig, RemoteWriteConfig
from collector.model.labels import Labels
from collector.remote import codec, prompb
from collector.remote.codec2 import V2Transcoder
from collector.remote.writer import RemoteWriter
from collector.storage.series import SeriesRegistry

SERIES = 2000
TS = 1_700_000_000_000


def _labels() -> list[Labels]:
    return [
        (
            ("__name__", f"node_cpu_seconds_total_{i % 50}"),
            ("cpu", str(i % 16)),
            ("instance", f"10.0.{i % 7}.{i % 250}:9100"),
            ("job", "node"),
            ("mode", ("idle", "user", "system", "iowait")[i % 4]),
        )
        for i in range(SERIES)
    ]


def _hand(labels: list[Labels]) -> Callable[[int], bytes]:
    codes = [codec.series_code(codec.encode_labels(ls)) for ls in labels]
    pack = struct.Struct("<d").pack

    def build(scrape: int) -> bytes:
        ts = TS + scrape * 15000
        ts_field = codec.timestamp_field(ts)
        # The commit hot loop: prefix + packed value + shared timestamp field, then one join.
        pieces = [
            prefix + pack(float(i + scrape)) + ts_field for i, (_, prefix) in enumerate(codes)
        ]
        return codec.compress(b"".join(pieces))

    return build


def _protobuf(labels: list[Labels]) -> Callable[[int], bytes]:
    def build(scrape: int) -> bytes:
        ts = TS + scrape * 15000
        request = prompb.WriteRequest()
        for i, ls in enumerate(labels):
            series = request.timeseries.add()
            for name, value in ls:
                series.labels.add(name=name, value=value)
            series.samples.add(value=float(i + scrape), timestamp=ts)
        return codec.compress(request.SerializeToString())

    return build


def _commit(
    labels: list[Labels], storage: str, *, unchanged: float = 0.0
) -> Callable[[int], bytes]:
    """`RemoteWriter.commit` of one scrape, sealed into one batch (no network, no log).

    ``unchanged`` is the fraction of series whose value repeats from one scrape to the next.
    """
    series = SeriesRegistry()
    refs = [series.acquire(ls) for ls in labels]
    config = RemoteWriteConfig(
        url="http://127.0.0.1:1/",
        name="bench",
        queue_config=QueueConfig(capacity=10**9, max_samples_per_send=SERIES),
    )
    writer = RemoteWriter(
        config, series=series, registry=CollectorRegistry(), storage_path=storage, shards=1
    )
    sealed: list[bytes] = []
    # The benchmark takes the sealed batch straight from the encoder (the delivery queue,
    # measured by benchmarks.wal_write, is not part of the commit path).
    writer.encoder._on_sealed = lambda body, *_: sealed.append(body)
    fixed = int(SERIES * unchanged)
    scrapes = [
        [
            (ref, float(i if i < fixed else i + scrape), TS + scrape * 15000)
            for i, ref in enumerate(refs)
        ]
        for scrape in range(64)
    ]

    def build(scrape: int) -> bytes:
        writer.commit(scrapes[scrape % 64])
        writer.encoder.seal_all()
        return sealed.pop()

    return build


def _one_target() -> list[Labels]:
    """2,000 series of one target: 200 families of 10 series each (node_exporter-like)."""
    return [
        (
            ("__name__", f"node_family_{i // 10}_total"),
            ("device", f"dev{i % 10}"),
            ("instance", "10.0.0.1:9100"),
            ("job", "node"),
        )
        for i in range(SERIES)
    ]


def _metadata(labels: list[Labels]) -> list[tuple[str, str, str, str]]:
    names = {dict(ls)["__name__"] for ls in labels}
    return [
        (name.removesuffix("_total"), "counter", f"Help text of {name}, about fifty chars.", "")
        for name in sorted(names)
    ]


def _rw2(labels: list[Labels]) -> None:
    """Print 1.0 vs 2.0 bytes and CPU per sample for one label shape."""
    with tempfile.TemporaryDirectory() as storage:
        commit = _commit(labels, storage)
        body = commit(0)
        raw1 = codec.decompress(body)
        meta = _metadata(labels)
        transcoder = V2Transcoder(metadata=lambda: meta)
        raw2, count = transcoder.encode(raw1)
        assert count == SERIES
        body2 = codec.compress(raw2)
        per_commit = 1e6 / _rate(commit)
    # 1.0 sends metadata in separate requests: counted per sample as one request per batch
    # would cost, to compare like with like (a metadata request per send_interval is less).
    meta1 = len(codec.encode_metadata_request((1, f, h, u) for f, _, h, u in meta))
    bodies = [body] * 64
    transcode = transcoder.transcode

    def send_v2(scrape: int) -> bytes:
        return transcode(bodies[scrape % 64])[0]

    per_transcode = 1e6 / _rate(send_v2)
    plain = V2Transcoder(metadata=lambda: meta, layouts=False).transcode
    assert plain(body) == transcode(body), "layouts change the bytes"

    def send_v2_plain(scrape: int) -> bytes:
        return plain(bodies[scrape % 64])[0]

    per_plain = 1e6 / _rate(send_v2_plain)
    # 1% of the values turned 0 since the layout was recorded (other ones in each batch): their
    # Sample fields are 9 bytes shorter, stepped over.
    codes = [codec.encode_labels(ls) for ls in labels]
    flipped = [
        codec.compress(
            codec.encode_request(
                codes,
                [0.0 if (i + 37 * k) % 100 == 0 else float(i + 1) for i in range(SERIES)],
                [TS] * SERIES,
            )
        )
        for k in range(8)
    ]
    flipping = V2Transcoder(metadata=lambda: meta)
    flipping.encode(codec.encode_request(codes, [1.0] * SERIES, [TS] * SERIES))

    def send_v2_flipped(scrape: int) -> bytes:
        return flipping.transcode(flipped[scrape % 8])[0]

    per_flipped = 1e6 / _rate(send_v2_flipped)
    print(f"  bytes/sample 1.0 uncompressed       : {len(raw1) / SERIES:8.1f}")
    print(f"  bytes/sample 2.0 uncompressed       : {len(raw2) / SERIES:8.1f}  (metadata inline)")
    print(f"  bytes/sample 1.0 + metadata request : {(len(raw1) + meta1) / SERIES:8.1f}")
    print(f"  bytes/sample 1.0 snappy             : {len(body) / SERIES:8.1f}")
    print(f"  bytes/sample 2.0 snappy             : {len(body2) / SERIES:8.1f}")
    print(f"  CPU us/sample 1.0 commit + seal     : {per_commit:8.3f}")
    print(f"  CPU us/sample 2.0 transcode at send : {per_transcode:8.3f}")
    print(f"  CPU us/sample 2.0 same, 1% turned 0 : {per_flipped:8.3f}")
    print(f"  CPU us/sample 2.0 same, no layouts  : {per_plain:8.3f}")
    print(f"  CPU us/sample 2.0 total             : {per_commit + per_transcode:8.3f}")


def _rate(build: Callable[[int], bytes], *, seconds: float = 2.0, repeat: int = 3) -> float:
    """Best of ``repeat`` runs of ``seconds`` of CPU time each (the machine is shared)."""
    for warm in range(64):
        build(warm)
    best = 0.0
    n = 64
    for _ in range(repeat):
        done = 0
        start = time.process_time()
        while (elapsed := time.process_time() - start) < seconds / repeat:
            build(n)
            n += 1
            done += 1
        best = max(best, done * SERIES / elapsed)
    return best


def main() -> None:
    """Print samples/s for both paths and their ratio."""
    labels = _labels()
    hand, proto = _hand(labels), _protobuf(labels)
    assert codec.decompress(hand(3)) == codec.decompress(proto(3)), "encoders disagree"
    ours = _rate(hand)
    baseline = _rate(proto)
    with tempfile.TemporaryDirectory() as storage:
        committed = _rate(_commit(labels, storage))
    with tempfile.TemporaryDirectory() as storage:
        half = _rate(_commit(labels, storage, unchanged=0.5))
    print(f"hand encoder + snappy               : {ours:12,.0f} samples/s")
    print(f"RemoteWriter.commit + seal          : {committed:12,.0f} samples/s")
    print(f"RemoteWriter.commit + seal, 50% same: {half:12,.0f} samples/s")
    print(f"protobuf + snappy (baseline)        : {baseline:12,.0f} samples/s")
    print(f"ratio hand / protobuf               : {ours / baseline:12.1f}x")
    print(f"ratio commit / protobuf             : {committed / baseline:12.1f}x")
    print("remote write 2.0 vs 1.0, mixed batch (2,000 instances):")
    _rw2(labels)
    print("remote write 2.0 vs 1.0, one target (200 families x 10 series):")
    _rw2(_one_target())


if __name__ == "__main__":
    main()
