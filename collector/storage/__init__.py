"""The hand-off between scrape and remote write: series references and the append transaction.

`collector` keeps no TSDB. What Prometheus's agent WAL gives its remote-write queues, series
records written once and sample records that point at them by reference, is kept here in
memory: `SeriesRegistry` interns each distinct label set to an ``int`` ref, and a scrape commits
``(ref, value, timestamp)`` samples through an `Appendable`. Remote writers encode a ref's labels
once and reuse the bytes for every later sample.
"""
