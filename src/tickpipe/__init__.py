"""tickpipe: a real-time market-data pipeline (exchanges -> bus -> indicators -> store + live updates)."""

__version__ = "0.1.0"
