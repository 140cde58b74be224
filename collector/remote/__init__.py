"""Remote write: one `RemoteWriter` per ``remote_write`` entry, from commit to acknowledged POST.

Modules, in pipeline order: `encoder` (per-shard batches) with `encodings` (each series'
encoding, by ref), `delivery` (seq, epochs, memory budget, dispatch to shards), `wal` +
`walformat` (the write-ahead log on disk), `sender` (POST with the retry policy of `retry`),
`client` (HTTP), `reshard` + `queue` (spec §6.4 shard count), `metadata` (spec §6.6), `metrics`
(self-metrics), `writer` (the owner).
Beside them: `codec` (pure wire format), `codec2` + `v2layout` + `v2wire` (1.0 batches to 2.0
requests at send time), `prompb` and `prompb2` (protobuf classes for decoding), `receiver` +
`received` (the remote-write 1.0 and 2.0 endpoint, relaying histograms and exemplars too).
"""
