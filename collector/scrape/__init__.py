"""Scraping: target groups -> targets -> scrape loops -> one append transaction per scrape.

``manager`` (one per agent) owns a ``pool`` per job; a pool turns target groups into `Target`s
(``target``: label population, URL, identity) and runs one ``loop`` per target. A loop sleeps
until its spread-out slot (``schedule``), fetches the body (``scraper``), parses it and turns
each sample into a ``(ref, value, ts)`` tuple through its per-target ``cache`` (the hot path),
then commits once. ``metrics`` holds the ``prometheus_target_*`` self-metrics.

Prometheus counterpart: the ``scrape`` package (``manager.go``, ``scrape.go``, ``target.go``).
"""
