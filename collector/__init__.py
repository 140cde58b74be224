"""collector: a Prometheus-compatible scraping agent (discovery, scrape, relabel, remote write)."""

__version__ = "0.1.0"
