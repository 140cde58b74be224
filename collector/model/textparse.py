"""Exposition parsing: Prometheus text 0.0.4/1.0.0 and OpenMetrics 1.0, over bytes.

CONTRACT (implementation pending; the scrape loop and benchmarks are written against it):

    exp = parse(body, openmetrics=False)      # raises ParseError(line=N) on any bad input
    for key, value, ts in exp.samples:        # key: the raw series bytes, b'name{a="b"}'
        ...                                   # value: float, NaN normalised to NORMAL_NAN
                                              # ts: explicit timestamp in ms, or None
    exp.labels(key) -> list[tuple[str, str]]  # cache-miss path: '__name__' first, then the
                                              # labels in body order, values unescaped, le/
                                              # quantile canonicalised by the TYPE in force
    exp.metadata -> dict[str, Metadata]       # family name -> type, help, unit

A ParseError carries ``partial``: the `Exposition` of the lines before the bad one, so the scrape
loop can reproduce Prometheus's partial counts and staleness quirks (spec §4.8, §11 #16).

Prometheus counterpart: ``model/textparse``.
"""
