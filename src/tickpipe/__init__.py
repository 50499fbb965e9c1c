"""tickpipe: real-time market data: exchanges -> bus -> indicators -> store + live updates."""

__version__ = "0.1.0"
