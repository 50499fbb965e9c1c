"""The `tickpipe` command. Flags mirror the TICKPIPE_* variables and win over them."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from typing import Any

from pydantic import ValidationError

from tickpipe import __version__

_COMMANDS = {
    "run": "ingestor + processor + gateway in one process (embedded defaults)",
    "migrate": "create or upgrade the database schema (safe to repeat)",
    "ingest": "exchange feed -> Kafka",
    "process": "Kafka -> SMA/signals -> database (batched) + Redis",
    "gateway": "HTTP + WebSocket API over the database and Redis",
}

# flag -> (settings field, type, help); which commands take it
_FLAGS: dict[str, tuple[str, type, str, set[str]]] = {
    "--source": ("source", str, "simulated, binance, coinbase or kraken", {"run", "ingest"}),
    "--symbols": ("symbols", str, "comma-separated symbols, exchange notation", {"run", "ingest"}),
    "--exchange-url": ("exchange_url", str, "WebSocket URL of the exchange", {"run", "ingest"}),
    "--sim-rate": ("sim_rate", float, "simulated trades per second", {"run", "ingest"}),
    "--sim-seed": ("sim_seed", int, "seed of the simulated market", {"run", "ingest"}),
    "--kafka": (
        "kafka_bootstrap_servers",
        str,
        "Kafka bootstrap servers",
        {"run", "ingest", "process"},
    ),
    "--topic": ("kafka_topic", str, "Kafka topic of trades", {"run", "ingest", "process"}),
    "--database-url": (
        "database_url",
        str,
        "postgresql://... or sqlite:///path",
        {"run", "migrate", "process", "gateway"},
    ),
    "--redis-url": ("redis_url", str, "redis://host:port/db", {"run", "process", "gateway"}),
    "--sma-window": ("sma_window", int, "trades in the SMA window", {"run", "process", "gateway"}),
    "--host": ("http_host", str, "HTTP listen address", {"run", "gateway", "ingest", "process"}),
    "--port": ("http_port", int, "HTTP port of the gateway", {"run", "gateway"}),
    "--metrics-port": (
        "metrics_port",
        int,
        "port of /healthz, /readyz, /metrics",
        {"ingest", "process"},
    ),
    "--log-format": ("log_format", str, "plain or json", set(_COMMANDS)),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tickpipe",
        description="Real-time market-data pipeline. Configuration: TICKPIPE_* variables "
        "(see the README) or the flags of each command.",
    )
    parser.add_argument("--version", action="version", version=f"tickpipe {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, summary in _COMMANDS.items():
        sub = commands.add_parser(name, help=summary, description=summary)
        for flag, (field, kind, text, where) in _FLAGS.items():
            if name in where:
                env = f"TICKPIPE_{field.upper()}"
                sub.add_argument(flag, dest=field, type=kind, help=f"{text} (${env})")
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    overrides: dict[str, Any] = {
        key: value for key, value in vars(args).items() if key != "command" and value is not None
    }
    # Imported here so that `tickpipe --help` stays instant.
    from tickpipe.commands import run_command
    from tickpipe.config import Settings
    from tickpipe.services.runtime import ServiceFailed
    from tickpipe.telemetry.logs import configure_logging
    from tickpipe.telemetry.tracing import setup_tracing, shutdown_tracing
    from tickpipe.wiring import MissingDependency

    try:
        settings = Settings(**overrides)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()
        )
        _fail(f"invalid configuration: {problems}", code=2)
    configure_logging(settings.log_format, settings.log_level)
    setup_tracing(f"tickpipe-{args.command}")
    try:
        run_command(args.command, settings)
    except (MissingDependency, ServiceFailed) as exc:
        _fail(str(exc))
    except KeyboardInterrupt:
        pass
    finally:
        shutdown_tracing()  # exports the spans still buffered


def _fail(message: str, code: int = 1) -> None:
    logging.getLogger("tickpipe").debug("exiting: %s", message)
    print(f"tickpipe: error: {message}", file=sys.stderr)
    sys.exit(code)
