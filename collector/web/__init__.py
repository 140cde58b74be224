"""The HTTP surface: self-metrics, health, reload, the targets API and the web UI."""
