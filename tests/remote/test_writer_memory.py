"""The encoder's per-series cache: one bytes object per series, routed to its shard by ref.

Kept by the pure-Python encoder and by destinations with external labels or write relabeling;
with the C extension, one that sends the scrape's own labels keeps none
(``test_encoder_labelled.py``)."""

from __future__ import annotations

from typing import Any

from collector.remote.codec import decode_request, decompress
from collector.remote.encoder import BatchEncoder
from tests.remote.test_encoder_cache import cached

T0 = 1_700_000_000_000


def test_entries_share_their_shard_append_and_encode_zero(kit: Any) -> None:
    sealed: list[tuple[bytes, int, int, int]] = []
    encoder = BatchEncoder(
        series=kit.series,
        external_labels=(),
        relabel=None,
        max_samples_per_send=100,
        num_shards=2,
        on_sealed=lambda *batch: sealed.append(batch),
        clock=lambda: 0.0,
        native=False,
    )
    refs = [kit.ref(("__name__", "m"), ("i", str(i))) for i in range(6)]
    values = [1.0, 0.0, 0.0, 2.5, -0.0, 3.0]
    for i, value in enumerate(values):
        encoder.commit([(ref, value, T0 + i * 1000) for ref in refs])
        # One encoding per series, in the list of its last value's form.
        assert cached(encoder._zero if value == 0 else encoder._value) == set(refs)
        assert not (cached(encoder._value) & cached(encoder._zero))
    assert encoder.cached_series == 6
    assert encoder.open_samples == 36
    encoder.seal_all()
    assert encoder.open_samples == 0
    assert sorted(shard for *_, shard in sealed) == [0, 1]
    got: list[tuple[str, float, int]] = []
    for body, count, max_ts, _ in sealed:
        decoded = decode_request(decompress(body))
        assert count == sum(len(samples) for _, samples in decoded)
        assert max_ts == T0 + 5000
        for labels, samples in decoded:
            got += [(dict(labels)["i"], v, t) for v, t in samples]
    expected = [(str(r), v + 0.0, T0 + i * 1000) for i, v in enumerate(values) for r in range(6)]
    assert sorted(got) == sorted(expected)
