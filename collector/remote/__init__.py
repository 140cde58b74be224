"""Remote write: encode, queue, spill to disk, send (one `RemoteWriter` per ``remote_write``).

Modules: `codec` (pure wire format), `prompb` (protobuf classes for decoding), `queue` (batch,
backoff, resharding math), `diskqueue` (segments), `client` (HTTP), `writer` (`RemoteWriter`),
`metrics` (self-metrics), `receiver` (a remote-write 1.0 endpoint).
"""
