"""Remote write: one `RemoteWriter` per ``remote_write`` entry, from commit to acknowledged POST.

Modules, in pipeline order: `encoder` (per-series encoding, per-shard batches), `delivery`
(seq, epochs, memory budget, dispatch to shards), `wal` + `walformat` (the write-ahead log on
disk), `sender` (POST with the retry policy of `retry`), `client` (HTTP), `reshard` + `queue`
(spec §6.4 shard count), `metadata` (spec §6.6), `metrics` (self-metrics), `writer` (the owner).
Beside them: `codec` (pure wire format), `prompb` (protobuf classes for decoding), `receiver`
(a remote-write 1.0 endpoint).
"""
