"""One settings object, read from the TICKPIPE_* environment (see the README's table)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from tickpipe.core.symbols import parse_symbol_list

SourceName = Literal["simulated", "binance", "coinbase", "kraken"]

DEFAULT_SYMBOLS: dict[str, str] = {
    "simulated": "BTCUSDT,ETHUSDT",
    "binance": "BTCUSDT,ETHUSDT",
    "coinbase": "BTC-USD,ETH-USD",
    "kraken": "BTC/USD,ETH/USD",
}


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="TICKPIPE_", extra="ignore")

    source: SourceName = "simulated"
    symbols: str = ""
    exchange_url: str | None = None
    exchange_idle_timeout_s: float = Field(default=30.0, gt=0)
    sim_rate: float = Field(default=20.0, gt=0)
    sim_seed: int | None = None

    kafka_bootstrap_servers: str | None = None
    kafka_topic: str = "trades"
    kafka_partitions: int = Field(default=6, ge=1)
    kafka_group: str = "tickpipe-processor"
    kafka_queue_max: int = Field(default=100_000, ge=1)

    database_url: str = "sqlite:///./tickpipe.db"
    redis_url: str | None = None
    redis_channel: str = "updates"
    redis_prefix: str = "tickpipe:"

    sma_window: int = Field(default=20, ge=1, le=100_000)
    batch_max_trades: int = Field(default=5_000, ge=1)
    batch_max_age_ms: float = Field(default=50.0, ge=0)

    ws_client_queue: int = Field(default=10_000, ge=1)  # frames a WebSocket client may lag

    http_host: str = "127.0.0.1"
    http_port: int = Field(default=8000, ge=0, le=65535)
    metrics_port: int | None = Field(default=None, ge=0, le=65535)
    log_format: Literal["plain", "json"] = "plain"
    log_level: str = "INFO"

    # Exposing the gateway (README "Security"): limits, CORS, paging links, read timeouts.
    ws_max_clients: int = Field(default=1000, ge=1)
    ws_max_clients_per_ip: int = Field(default=50, ge=1)
    trusted_proxies: str = ""  # IPs/CIDRs whose X-Forwarded-For is believed
    cors_origins: str = ""  # comma-separated origins or "*"; empty: no CORS headers
    public_url: str | None = None  # base of absolute paging links; unset: relative links
    http_max_connections: int | None = Field(default=None, ge=1)  # unset: ws clients + 500
    query_timeout_ms: int = Field(default=5_000, ge=1)
    candles_max_scan_days: float = Field(default=7.0, gt=0)  # raw-trade span per request

    @field_validator("trusted_proxies")
    @classmethod
    def _networks(cls, value: str) -> str:
        import ipaddress

        for entry in filter(None, (part.strip() for part in value.split(","))):
            ipaddress.ip_network(entry, strict=False)  # ValueError names the entry
        return value

    @field_validator("public_url")
    @classmethod
    def _base_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError(f"expected http(s)://host[:port][/path], got {value!r}")
        return value

    @field_validator("symbols")
    @classmethod
    def _strip(cls, value: str) -> str:
        return value.strip()

    def symbol_list(self) -> tuple[str, ...]:
        """The configured symbols in the exchange's own notation (defaults per source)."""
        return parse_symbol_list(self.symbols or DEFAULT_SYMBOLS[self.source])
