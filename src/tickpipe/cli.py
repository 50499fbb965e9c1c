"""The `tickpipe` command. Flags mirror the TICKPIPE_* variables and win over them."""

from __future__ import annotations

import argparse
import logging
import math
import os
import sys
from collections.abc import Sequence
from typing import Any, NoReturn

import orjson
from pydantic import ValidationError
from pydantic_settings import SettingsError

from tickpipe import __version__

_COMMANDS = {
    "run": "ingestor + processor + gateway in one process (embedded defaults)",
    "migrate": "create or upgrade the database schema (safe to repeat)",
    "ingest": "exchange feed -> Kafka",
    "process": "Kafka -> SMA/signals -> database (batched) + Redis",
    "gateway": "HTTP + WebSocket API over the database and Redis",
    "replay": "recorded trades (JSON lines, Binance CSV archives) -> the pipeline",
    "export": "the stored trades of a symbol -> a JSON lines, CSV or Parquet file",
    "config": "print the effective settings (passwords redacted) as TOML, then exit",
}

# flag -> (settings field, type, help); which commands take it
_FLAGS: dict[str, tuple[str, type, str, set[str]]] = {
    "--source": (
        "source",
        str,
        "venue(s), comma-separated: simulated, binance, coinbase, kraken",
        {"run", "ingest"},
    ),
    "--symbols": (
        "symbols",
        str,
        "comma-separated symbols, exchange notation, venue:symbol with several venues",
        {"run", "ingest"},
    ),
    "--exchange-url": ("exchange_url", str, "WebSocket URL of the exchange", {"run", "ingest"}),
    "--sim-rate": ("sim_rate", float, "simulated trades per second", {"run", "ingest"}),
    "--sim-seed": ("sim_seed", int, "seed of the simulated market", {"run", "ingest"}),
    "--kafka": (
        "kafka_bootstrap_servers",
        str,
        "Kafka bootstrap servers",
        {"run", "ingest", "process", "replay"},
    ),
    "--topic": (
        "kafka_topic",
        str,
        "Kafka topic of trades",
        {"run", "ingest", "process", "replay"},
    ),
    "--database-url": (
        "database_url",
        str,
        "postgresql://... or sqlite:///path",
        {"run", "migrate", "process", "gateway", "replay", "export"},
    ),
    "--redis-url": (
        "redis_url",
        str,
        "redis://host:port/db",
        {"run", "process", "gateway", "replay"},
    ),
    "--sma-window": (
        "sma_window",
        int,
        "trades in the SMA window",
        {"run", "process", "gateway", "replay"},
    ),
    "--host": ("http_host", str, "HTTP listen address", {"run", "gateway", "ingest", "process"}),
    "--port": ("http_port", int, "HTTP port of the gateway", {"run", "gateway"}),
    "--metrics-port": (
        "metrics_port",
        int,
        "port of /healthz, /readyz, /metrics",
        {"ingest", "process", "run", "gateway"},
    ),
    "--log-format": ("log_format", str, "plain or json", set(_COMMANDS)),
}
# Help of the settings that _FLAGS does not name (their flag is --the-field-name).
_MORE_HELP = {
    "exchange_idle_timeout_s": "reconnect when an exchange sends nothing for this long (s)",
    "kafka_partitions": "partitions of the topic when tickpipe creates it",
    "kafka_group": "consumer group of the processors",
    "kafka_queue_max": "bound of the ingestor's local queue (and of the in-process bus)",
    "kafka_config_file": "Kafka client.properties file applied to every Kafka client",
    "kafka_security_protocol": "Kafka security.protocol (wins over the file)",
    "kafka_sasl_mechanism": "Kafka sasl.mechanism (wins over the file)",
    "kafka_sasl_username": "Kafka sasl.username (wins over the file)",
    "kafka_ssl_ca_location": "Kafka ssl.ca.location (wins over the file)",
    "redis_channel": "pub/sub channel of live updates",
    "redis_prefix": "prefix of tickpipe's Redis keys",
    "batch_max_trades": "a store batch is written at this many trades",
    "batch_max_age_ms": "... or when it is this old (ms)",
    "workers": "process only: processes, one consumer each in the same group",
    "ws_client_queue": "frames a WebSocket client may fall behind before it is dropped",
    "log_level": "DEBUG, INFO, WARNING, ERROR or CRITICAL",
    "ws_max_clients": "WebSocket clients served at once",
    "ws_max_clients_per_ip": "WebSocket clients served at once from one address",
    "trusted_proxies": "IPs/CIDRs of proxies whose X-Forwarded-For is believed",
    "cors_origins": "origins allowed to call the API from a browser, or *",
    "public_url": "public base URL of the gateway, for absolute paging links",
    "http_max_connections": "connections the gateway handles at once (unset: WebSockets + 500)",
    "query_timeout_ms": "a gateway read running longer answers 503 (ms)",
    "candles_max_scan_days": "days of raw trades one candles request may scan",
}
_METRICS_PORT_DEFAULT = {"ingest": 9100, "process": 9101}

# Passwords have no flag: a command line is visible to every user of the machine (`ps`).
_NO_FLAG = frozenset({"kafka_sasl_password", "database_password", "redis_password"})


class _Parser(argparse.ArgumentParser):
    """An invalid argument is one line and exit status 2, not the whole usage."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="tickpipe",
        description="Real-time market-data pipeline. Configuration: TICKPIPE_* variables "
        "(see the README) or the flags of each command.",
    )
    parser.add_argument("--version", action="version", version=f"tickpipe {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, summary in _COMMANDS.items():
        sub = commands.add_parser(name, help=summary, description=summary)
        _add_setting_flags(sub, name)
        if name == "replay":
            _add_replay_arguments(sub)
        if name == "export":
            _add_export_arguments(sub)
        if name == "process":
            # Set by `--workers N` on each child it starts (services/workers.py), for the logs.
            sub.add_argument(
                "--worker-index", dest="worker_index", type=int, help=argparse.SUPPRESS
            )
    return parser


def _add_setting_flags(sub: argparse.ArgumentParser, command: str) -> None:
    """The flags of `command` (see _FLAGS), then one for each other setting; each help names
    its variable and its default. Flags win over variables, `.env` and the --config file."""
    from tickpipe.config import Settings

    sub.add_argument(
        "--config",
        dest="config_file",
        metavar="FILE",
        help="TOML file of settings by name (sma_window = 50); variables, .env and flags win",
    )
    fields = Settings.model_fields
    named = {field for field, *_ in _FLAGS.values()}
    flags = [
        (flag, spec) for flag, spec in _FLAGS.items() if command in spec[3] or command == "config"
    ]
    for field, info in fields.items():
        if field not in named and field not in _NO_FLAG:
            kind = _flag_type(info.annotation)
            text = _MORE_HELP.get(field) or field.replace("_", " ")
            flags.append((f"--{field.replace('_', '-')}", (field, kind, text, {command})))
    more = sub.add_argument_group("more settings")
    for flag, (field, kind, text, _) in flags:
        target = sub if flag in _FLAGS else more
        default = fields[field].default
        shown = "unset" if default is None or default == "" else default
        if field == "metrics_port":
            shown = _METRICS_PORT_DEFAULT.get(command, "unset: on the public port")
        env = f"TICKPIPE_{field.upper()}"
        help_text = f"{text} (${env}; default: {shown})".replace("%", "%%")
        metavar = {int: "N", float: "X"}.get(kind) or field.split("_")[-1].upper()
        target.add_argument(flag, dest=field, type=kind, metavar=metavar, help=help_text)


def _flag_type(annotation: Any) -> type:
    """int, float or str: what argparse converts a flag's text to (pydantic checks the rest)."""
    for kind in (int, float):
        if annotation is kind or kind in getattr(annotation, "__args__", ()):
            return kind
    return str


def _add_replay_arguments(sub: argparse.ArgumentParser) -> None:
    sub.description = (
        f"{_COMMANDS['replay']}. Into Kafka when it is configured (the running processors store"
        " the trades); otherwise through an in-process processor into the database (and Redis"
        " when configured). Re-running a replay stores nothing twice."
    )
    sub.add_argument(
        "replay_files",
        nargs="+",
        metavar="FILE",
        help="*.jsonl (tickpipe.v1.Trade fields) or Binance *.csv / *.zip trade archives",
    )
    sub.add_argument(
        "--speed",
        dest="replay_speed",
        metavar="N|max",
        type=_speed,
        default=1.0,
        help="N x the original pace (default 1), or 'max' for as fast as possible",
    )
    sub.add_argument(
        "--symbol",
        dest="replay_symbol",
        metavar="SYMBOL",
        help="symbol of Binance CSV files (default: from names like BTCUSDT-trades-2024-01-01.csv)",
    )
    sub.add_argument(
        "--format",
        dest="replay_format",
        choices=["jsonl", "binance-csv"],
        help="format of every FILE (default: from each file's extension)",
    )
    sub.add_argument(
        "--strict",
        dest="replay_strict",
        action="store_true",
        help="stop at the first invalid line instead of skipping it",
    )


def _add_export_arguments(sub: argparse.ArgumentParser) -> None:
    sub.description = (
        f"{_COMMANDS['export']}, oldest first, with exact decimals, from $TICKPIPE_DATABASE_URL."
        " Its JSON lines are exactly what `tickpipe replay` reads."
    )
    sub.add_argument("export_symbol", metavar="SYMBOL", help="symbol (BTCUSDT, BTC-USD, ...)")
    sub.add_argument("--exchange", dest="export_exchange", help="only this venue's trades")
    for bound, text in (("start", "from (inclusive)"), ("end", "until (exclusive)")):
        sub.add_argument(
            f"--{bound}",
            dest=f"export_{bound}",
            metavar="T",
            type=_moment_us,
            help=f"{text}: ISO-8601 (2024-05-01, 2024-05-01T12:00:00Z) or epoch milliseconds",
        )
    sub.add_argument(
        "--format",
        dest="export_format",
        choices=["jsonl", "csv", "parquet"],
        required=True,
        help="parquet needs the extra: pip install 'tickpipe[parquet]'",
    )
    sub.add_argument("--out", dest="export_out", metavar="PATH", required=True)


def _moment_us(text: str) -> int:
    from datetime import UTC, datetime

    if text.strip().isdigit():
        return int(text) * 1000
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not ISO-8601 or epoch ms") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)  # times without a zone are UTC, as stored
    return round(moment.timestamp() * 1_000_000)


def _speed(text: str) -> float:
    if text.strip().lower() == "max":
        return math.inf
    try:
        speed = float(text)
    except ValueError:
        speed = 0.0
    if not 0 < speed < math.inf:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive number or 'max'")
    return speed


def main(argv: Sequence[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    overrides: dict[str, Any] = {
        key: value for key, value in vars(args).items() if key != "command" and value is not None
    }
    replay_args = {key: overrides.pop(key) for key in list(overrides) if key.startswith("replay_")}
    export_args = {key: overrides.pop(key) for key in list(overrides) if key.startswith("export_")}
    config_file = overrides.pop("config_file", None)
    worker_index = overrides.pop("worker_index", None)
    # Imported here so that `tickpipe --help` stays instant.
    from tickpipe.commands import run_command
    from tickpipe.config import Settings, load_settings
    from tickpipe.core.symbols import InvalidSymbol
    from tickpipe.services.export import ExportFailed
    from tickpipe.services.replay import ReplayFailed, ReplayOptions
    from tickpipe.services.runtime import ServiceFailed
    from tickpipe.telemetry.logs import configure_logging
    from tickpipe.telemetry.tracing import setup_tracing, shutdown_tracing
    from tickpipe.wiring import InvalidConfiguration, MissingDependency

    try:
        settings = load_settings(overrides, config_file)
    except ValidationError as exc:
        problems = "; ".join(
            f"TICKPIPE_{'.'.join(str(p) for p in e['loc']).upper()}: "
            + e["msg"].removeprefix("Value error, ")
            for e in exc.errors()
        )
        _fail(f"invalid configuration: {problems}", code=2)
    except SettingsError as exc:  # TICKPIPE_<NAME>_FILE unreadable, or set with TICKPIPE_<NAME>
        _fail(f"invalid configuration: {exc}", code=2)
    service = os.environ.get("OTEL_SERVICE_NAME") or f"tickpipe-{args.command}"
    if args.command == "config":
        print_settings(settings)
        return
    configure_logging(settings.log_format, settings.log_level, service, worker_index)
    for line in Settings.unknown_variables(os.environ):
        logging.getLogger("tickpipe").warning("%s", line)
    setup_tracing(f"tickpipe-{args.command}")
    replay_options = None
    if args.command == "replay":
        replay_options = ReplayOptions(
            files=tuple(replay_args["replay_files"]),
            speed=replay_args["replay_speed"],
            symbol=replay_args.get("replay_symbol"),
            replay_format=replay_args.get("replay_format"),
            strict=replay_args["replay_strict"],
        )
    export_options = _export_options(export_args) if args.command == "export" else None
    try:
        command_argv = list(sys.argv[1:] if argv is None else argv)
        run_command(args.command, settings, replay_options, export_options, command_argv)
    except (MissingDependency, ServiceFailed, ReplayFailed, ExportFailed) as exc:
        _fail(str(exc))
    except (InvalidSymbol, InvalidConfiguration) as exc:  # checked as the adapters open
        _fail(f"invalid configuration: {exc}", code=2)
    except KeyboardInterrupt:
        pass
    finally:
        shutdown_tracing()  # exports the spans still buffered


def _export_options(export_args: dict[str, Any]) -> Any:
    from pathlib import Path

    from tickpipe.adapters.export_files import ExportFormat
    from tickpipe.adapters.store.export_reads import ExportQuery
    from tickpipe.core.symbols import InvalidSymbol, normalize_symbol
    from tickpipe.services.export import ExportOptions

    try:
        symbol = normalize_symbol(export_args["export_symbol"])
    except InvalidSymbol as exc:
        _fail(str(exc), code=2)
    exchange = export_args.get("export_exchange")
    query = ExportQuery(
        symbol,
        exchange.lower() if exchange else None,
        export_args.get("export_start", 0),
        export_args.get("export_end", 2**62),
    )
    return ExportOptions(
        query, ExportFormat(export_args["export_format"]), Path(export_args["export_out"])
    )


def print_settings(settings: Any) -> None:
    """The effective settings as TOML (usable as a --config file), passwords redacted."""
    from tickpipe.config import redacted

    for name, value in redacted(settings).items():
        if value is None:
            print(f"# {name} = (unset)")
        elif isinstance(value, dict):  # TICKPIPE_<VENUE>_URL: a TOML inline table
            entries = ", ".join(f"{k} = {orjson.dumps(str(v)).decode()}" for k, v in value.items())
            print(f"{name} = {{{' ' + entries + ' ' if entries else ''}}}")
        elif isinstance(value, bool | int | float):
            print(f"{name} = {str(value).lower() if isinstance(value, bool) else value}")
        else:
            print(f"{name} = {orjson.dumps(str(value)).decode()}")


def _fail(message: str, code: int = 1) -> None:
    logging.getLogger("tickpipe").debug("exiting: %s", message)
    print(f"tickpipe: error: {message}", file=sys.stderr)
    sys.exit(code)
