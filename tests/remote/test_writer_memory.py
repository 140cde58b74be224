"""The writer's per-series cache: entries of one shard share one bound ``append``."""

from __future__ import annotations

from typing import Any

from collector.remote.codec import decode_request, decompress

T0 = 1_700_000_000_000


def test_entries_share_their_shard_append_and_encode_zero(kit: Any) -> None:
    writer = kit.make("http://127.0.0.1:1/", shards=2, queue_max_samples_per_send=100)
    refs = [kit.ref(("__name__", "m"), ("i", str(i))) for i in range(6)]
    values = [1.0, 0.0, 0.0, 2.5, -0.0, 3.0]
    for i, value in enumerate(values):
        writer.commit([(ref, value, T0 + i * 1000) for ref in refs])
    appends = {id(entry[4]) for entry in writer._cache.values()}
    assert len(appends) == 2
    got: list[tuple[str, float, int]] = []
    for shard in range(writer.num_shards):
        writer._seal(shard)
        for batch in writer._queues[shard]:
            for labels, samples in decode_request(decompress(batch.body)):
                got += [(dict(labels)["i"], v, t) for v, t in samples]
    expected = [(str(r), v + 0.0, T0 + i * 1000) for i, v in enumerate(values) for r in range(6)]
    assert sorted(got) == sorted(expected)
