"""Real-protocol fakes for the seams (STYLE rule 10): appenders, scrapers, servers."""
