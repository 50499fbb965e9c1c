"""The run's results: one table (figure, value, ceiling, ratio, target), JSON, a PNG chart and
the markdown of the latest run (benchmarks/latest.md)."""

from __future__ import annotations

import os
import platform
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson


@dataclass(frozen=True, slots=True)
class Row:
    figure: str
    value: str
    ceiling: str
    ratio: str
    target: str

    def cells(self) -> tuple[str, str, str, str, str]:
        return (self.figure, self.value, self.ceiling, self.ratio, self.target)


HEADER = ("figure", "value", "ceiling (same run)", "ratio", "target")


def machine() -> dict[str, Any]:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "nproc": os.cpu_count(),
        "cpu": cpu,
        "python": platform.python_version(),
        "load_avg_1m": os.getloadavg()[0],
    }


def _rate(value: float) -> str:
    return f"{value:,.0f}/s"


def _ratio(value: float, ceiling: float) -> str:
    return f"{value / ceiling:.2f}x" if ceiling > 0 else "n/a"


def _check(ok: bool) -> str:
    return "met" if ok else "NOT met"


def rows(results: dict[str, Any]) -> list[Row]:
    """The table of a run's results (the `results` dict that run.py writes as JSON)."""
    ceiling, tickpipe, peer = results["ceilings"], results["tickpipe"], results["peer"]
    table: list[Row] = []
    processor = tickpipe["processor_trades_per_s"]
    idempotent, copy = ceiling["pg_idempotent_rows_per_s"], ceiling["pg_copy_rows_per_s"]
    table.append(
        Row(
            "processor throughput (trades/s stored, Kafka -> PostgreSQL + Redis)",
            _rate(processor),
            f"PostgreSQL idempotent insert {_rate(idempotent)}",
            _ratio(processor, idempotent),
            f">= 1.0x: {_check(processor >= idempotent)}",
        )
    )
    table.append(
        Row(
            "  same, against plain COPY",
            _rate(processor),
            f"PostgreSQL plain COPY {_rate(copy)}",
            _ratio(processor, copy),
            "",
        )
    )
    table.append(
        Row(
            "  same, against the broker",
            _rate(processor),
            f"confluent-kafka consume {_rate(ceiling['broker_consume_msgs_per_s'])}",
            _ratio(processor, ceiling["broker_consume_msgs_per_s"]),
            "",
        )
    )
    quix = peer.get("quix_trades_per_s")
    if quix:
        table.append(
            Row(
                "  same, against the peer",
                _rate(processor),
                f"Quix Streams, same work {_rate(quix)}",
                _ratio(processor, quix),
                f">= 2x: {_check(processor >= 2 * quix)}",
            )
        )
    committed = tickpipe.get("processor_committed_per_s")
    if committed:
        table.append(
            Row(
                "  same, timed by offset commits (first to last)",
                _rate(committed),
                f"PostgreSQL idempotent insert {_rate(idempotent)}",
                _ratio(committed, idempotent),
                "",
            )
        )
    delivered = tickpipe.get("redis_delivered")
    if delivered is not None:
        table.append(
            Row(
                "updates delivered to Redis in the throughput run",
                f"{delivered:,}",
                f"trades stored {tickpipe['stored']:,}",
                "",
                f"all: {_check(delivered == tickpipe['stored'])}",
            )
        )
    two = tickpipe.get("workers_2")
    if two and committed:
        table.append(
            Row(
                "processor with --workers 2, timed by offset commits (stored rows: see README)",
                _rate(two["committed_per_s"]),
                f"one worker, same timing {_rate(committed)}",
                _ratio(two["committed_per_s"], committed),
                f"delivered {two['delivered']:,} of {two['stored']:,}",
            )
        )
        table.append(
            Row(
                "  one command on both cores (--workers 2), against the database",
                _rate(two["committed_per_s"]),
                f"PostgreSQL idempotent insert {_rate(idempotent)}",
                _ratio(two["committed_per_s"], idempotent),
                f">= 1.0x: {_check(two['committed_per_s'] >= idempotent)}",
            )
        )
    table += _end_to_end_rows(tickpipe)
    table += _embedded_rows(ceiling, tickpipe)
    rtt = ceiling["broker_round_trip_ms"]
    latency = tickpipe["latency"]
    for label, key in (("ingest", "ingest_to_client_ms"), ("exchange", "exchange_to_client_ms")):
        for p in ("p50", "p99", "p99.9"):
            value_ms = latency[key][p]
            target = ""
            if label == "ingest" and p == "p99":
                bound_ms = rtt["p99"] + 10
                target = f"<= {bound_ms:.1f} ms: {_check(value_ms <= bound_ms)}"
            table.append(
                Row(
                    f"{label} -> WebSocket client latency {p} at "
                    f"{results['params']['latency_rate_per_s']:,.0f} trades/s",
                    f"{value_ms:.1f} ms",
                    f"broker round trip {p} {rtt[p]:.1f} ms",
                    f"+{value_ms - rtt[p]:.1f} ms",
                    target,
                )
            )
    if "first_trade_s" in latency:
        table.append(
            Row(
                "cold start: services launched -> first trade on a WebSocket client",
                f"{latency['first_trade_s']:.2f} s",
                *_join_cells(ceiling, latency["first_trade_s"]),
                f"<= 3 s: {_check(latency['first_trade_s'] <= 3)}",
            )
        )
        cold = latency["cold_start_ms"]
        cold_p99 = f"{cold['p99']:.1f}" if cold["count"] else "no frame yet"
        table.append(
            Row(
                "ingest -> WebSocket client p99, first 5 s after launch / steady state",
                f"{cold_p99} / {latency['ingest_to_client_ms']['p99']:.1f} ms",
                f"broker round trip p99 {rtt['p99']:.1f} ms",
                "",
                "",
            )
        )
    to_redis = latency.get("ingest_to_redis_ms")
    if to_redis:
        table.append(
            Row(
                "  of which ingest -> Redis (processor done) p50 / p99",
                f"{to_redis['p50']:.1f} / {to_redis['p99']:.1f} ms",
                f"broker round trip {rtt['p50']:.1f} / {rtt['p99']:.1f} ms",
                f"+{to_redis['p50'] - rtt['p50']:.1f} / +{to_redis['p99'] - rtt['p99']:.1f} ms",
                "",
            )
        )
    gateway = tickpipe["gateway"]
    ws_ceiling = ceiling["ws_broadcast"]["deliveries_per_s"]
    clients = results["params"]["ws_clients"]
    table.append(
        Row(
            f"gateway fan-out ({clients} WebSocket clients, deliveries/s)",
            _rate(gateway["deliveries_per_s"]),
            f"websockets broadcast {_rate(ws_ceiling)}",
            _ratio(gateway["deliveries_per_s"], ws_ceiling),
            f">= 1.0x: {_check(gateway['deliveries_per_s'] >= ws_ceiling)}",
        )
    )
    table.append(
        Row(
            "gateway drops (frames lost / clients disconnected)",
            f"{gateway['dropped']:,} / {gateway['disconnected']}",
            f"offered {gateway['offered_per_s']:,.0f} trades/s x {clients} clients",
            "",
            "0 / 0",
        )
    )
    if "processor_cpu_pct" in tickpipe:
        table.append(
            Row(
                "processor CPU, throughput run (100 % = one core)",
                f"{tickpipe['processor_cpu_pct']:.0f} %",
                *_machine_cells(tickpipe),
                "",
            )
        )
    table.append(
        Row(
            "processor peak RSS (VmHWM, throughput run)",
            f"{tickpipe['peak_rss_mib']:.0f} MiB",
            "",
            "",
            "",
        )
    )
    growth = tickpipe.get("rss_growth_pct")
    if growth is not None:
        table.append(
            Row(
                f"processor RSS growth after warm-up ({results['params']['latency_s']:.0f} s "
                "latency run)",
                f"{growth:+.1f} %",
                "",
                "",
                f"<= 10 %: {_check(growth <= 10)}",
            )
        )
    table.append(
        Row(
            "Redis pipelined PUBLISH (one trade frame each)",
            "",
            _rate(ceiling["redis_publish_msgs_per_s"]),
            "",
            "",
        )
    )
    return table


def _join_cells(ceiling: dict[str, Any], first_trade_s: float) -> tuple[str, str]:
    """The broker's own group join beside the cold start, and what is left for tickpipe."""
    join_s = ceiling.get("broker_group_join_s")
    if join_s is None:
        return "", ""
    return f"a new group's join on this broker {join_s:.2f} s", f"+{first_trade_s - join_s:.2f} s"


def _machine_cells(tickpipe: dict[str, Any]) -> tuple[str, str]:
    """How busy the whole machine was meanwhile (broker, database, Redis and all)."""
    busy = tickpipe.get("machine_busy_pct")
    if busy is None:
        return "", ""
    return f"the whole machine busy {busy:.0f} % of its {os.cpu_count()} cores", ""


def _cpu_beside(run: dict[str, Any]) -> str:
    text = f"processor CPU {run['processor_cpu_pct']:.0f} %"
    if "broker_cpu_pct" in run:  # runs before the broker's CPU was read have none
        text += f", broker {run['broker_cpu_pct']:.0f} %"
    if "machine_busy_pct" in run:
        text += f"; machine busy {run['machine_busy_pct']:.0f} %"
    return text


def _end_to_end_rows(tickpipe: dict[str, Any]) -> list[Row]:
    e2e = tickpipe.get("end_to_end")
    if not e2e:
        return []
    processor = tickpipe["processor_trades_per_s"]
    rows = [
        Row(
            "end to end: ingest (simulated, full speed) -> Kafka -> process -> PostgreSQL",
            _rate(e2e["trades_per_s"]),
            f"processor alone (above) {_rate(processor)}",
            _ratio(e2e["trades_per_s"], processor),
            f">= 0.8x: {_check(e2e['trades_per_s'] >= 0.8 * processor)}",
        ),
        Row(
            "  ingestor meanwhile: trades accepted / CPU per trade / CPU",
            f"{_rate(e2e['ingested_per_s'])} / {e2e['ingest_cpu_us_per_trade']:.1f} us"
            f" / {e2e['ingest_cpu_pct']:.0f} %",
            _cpu_beside(e2e),
            "",
            f"dropped: {e2e['dropped']}",
        ),
    ]
    paced = tickpipe.get("end_to_end_paced")
    if paced:
        offered = paced["offered_per_s"]
        rows += [
            Row(
                "end to end, the exchange paced at 0.8x the processor alone",
                _rate(paced["trades_per_s"]),
                f"offered {_rate(offered)} ({_ratio(offered, processor)} processor alone)",
                _ratio(paced["trades_per_s"], offered),
                f"keeps up (>= 0.98x offered): {_check(paced['trades_per_s'] >= 0.98 * offered)}",
            ),
            Row(
                "  ingestor meanwhile: CPU per trade / CPU",
                f"{paced['ingest_cpu_us_per_trade']:.1f} us / {paced['ingest_cpu_pct']:.0f} %",
                _cpu_beside(paced),
                "",
                f"dropped: {paced['dropped']}",
            ),
        ]
    return rows


def _embedded_rows(ceiling: dict[str, Any], tickpipe: dict[str, Any]) -> list[Row]:
    run = tickpipe.get("embedded")
    if not run:
        return []
    plain, multirow = (
        ceiling["sqlite_executemany_rows_per_s"],
        ceiling["sqlite_multirow_rows_per_s"],
    )
    rows = [
        Row(
            "embedded default: `tickpipe run`'s processing, in-process bus -> SQLite (trades/s)",
            _rate(run["trades_per_s"]),
            f"SQLite INSERT OR IGNORE, executemany {_rate(plain)}",
            _ratio(run["trades_per_s"], plain),
            f">= 1.0x: {_check(run['trades_per_s'] >= plain)}",
        ),
        Row(
            "  same, against multi-row INSERT (what the store sends)",
            _rate(run["trades_per_s"]),
            f"SQLite INSERT OR IGNORE, 500 rows a statement {_rate(multirow)}",
            _ratio(run["trades_per_s"], multirow),
            "",
        ),
        Row(
            "  updates handed to the in-process feed / CPU (100 % = one core) / peak RSS",
            f"{run['delivered']:,} / {run['cpu_pct']:.0f} % / {run['peak_rss_mib']:.0f} MiB",
            f"trades stored {run['stored']:,}",
            "",
            f"all: {_check(run['delivered'] == run['stored'])}",
        ),
    ]
    whole = tickpipe.get("embedded_run")
    if whole:
        rows.append(
            Row(
                "  `tickpipe run` itself, simulated exchange at full speed, one process",
                _rate(whole["trades_per_s"]),
                f"SQLite INSERT OR IGNORE, executemany {_rate(plain)}",
                _ratio(whole["trades_per_s"], plain),
                f"CPU {whole['cpu_pct']:.0f} %",
            )
        )
    return rows


def render_text(table: list[Row]) -> str:
    widths = [max(len(r.cells()[i]) for r in [Row(*HEADER), *table]) for i in range(5)]
    lines = []
    for index, row in enumerate([Row(*HEADER), *table]):
        lines.append("  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row.cells())))
        if index == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(line.rstrip() for line in lines)


def render_markdown(table: list[Row]) -> str:
    lines = ["| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    lines += ["| " + " | ".join(c.replace("|", "/") for c in r.cells()) + " |" for r in table]
    return "\n".join(lines)


def write_json(path: Path, results: dict[str, Any]) -> None:
    path.write_bytes(orjson.dumps(results, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS))


def latest_markdown(results: dict[str, Any], table: list[Row], chart_link: str) -> str:
    host = results["machine"]
    command = results.get("command") or "python -m benchmarks.run"
    return "\n".join(
        [
            "# Latest benchmark run",
            "",
            f"{results['date']} · `{command}` · {results['params']['trades']:,} trades over "
            "20 symbols",
            "",
            f"Machine: {host['nproc']} cores (`nproc`), {host['cpu']}, Python {host['python']}, "
            f"load average {host['load_avg_1m']:.1f} at the start (shared machine: compare "
            "ratios, not absolute numbers).",
            "",
            render_markdown(table),
            "",
            f"![throughput and latency]({chart_link})",
            "",
        ]
    )


def draw_chart(results: dict[str, Any], path: Path, copy_to: Path | None = None) -> None:
    """Three panels: throughput (log scale), latency percentiles, WebSocket fan-out."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ceiling, tickpipe, peer = results["ceilings"], results["tickpipe"], results["peer"]
    figure, (left, middle, right) = plt.subplots(1, 3, figsize=(16, 5.2))

    end_to_end, embedded_run = tickpipe.get("end_to_end", {}), tickpipe.get("embedded", {})
    bars = [
        ("tickpipe processor", tickpipe["processor_trades_per_s"], "tab:blue"),
        ("end to end (with ingest)", end_to_end.get("trades_per_s", 0), "tab:blue"),
        ("tickpipe run's processing, SQLite", embedded_run.get("trades_per_s", 0), "tab:cyan"),
        ("SQLite INSERT OR IGNORE", ceiling.get("sqlite_executemany_rows_per_s", 0), "tab:gray"),
        ("Quix Streams, same work", peer.get("quix_trades_per_s") or 0, "tab:orange"),
        ("PG idempotent insert", ceiling["pg_idempotent_rows_per_s"], "tab:gray"),
        ("PG plain COPY", ceiling["pg_copy_rows_per_s"], "tab:gray"),
        ("broker consume", ceiling["broker_consume_msgs_per_s"], "tab:gray"),
    ]
    names = [b[0] for b in bars]
    left.barh(names, [b[1] for b in bars], color=[b[2] for b in bars])
    left.set_xscale("log")
    left.set_xlim(left=1_000)
    left.invert_yaxis()
    left.set_xlabel("trades (rows, messages) per second, log scale")
    left.set_title("Throughput (grey: ceilings)")
    for index, (_, value, _) in enumerate(bars):
        left.text(value, index, f" {value:,.0f}", va="center", fontsize=8)

    percentiles = ("p50", "p99", "p99.9")
    series = [
        ("broker round trip", ceiling["broker_round_trip_ms"], "tab:gray"),
        ("ingest -> Redis", tickpipe["latency"].get("ingest_to_redis_ms"), "tab:green"),
        ("ingest -> client", tickpipe["latency"]["ingest_to_client_ms"], "tab:blue"),
        ("exchange -> client", tickpipe["latency"]["exchange_to_client_ms"], "tab:cyan"),
    ]
    series = [s for s in series if s[1]]
    width = 0.8 / len(series)
    for offset, (label, values, color) in enumerate(series):
        xs = [i + (offset - (len(series) - 1) / 2) * width for i in range(len(percentiles))]
        middle.bar(xs, [values[p] for p in percentiles], width, label=label, color=color)
    middle.set_xticks(range(len(percentiles)), percentiles)
    middle.set_yscale("log")
    middle.set_ylabel("ms, log scale")
    middle.set_title(f"Latency at {results['params']['latency_rate_per_s']:,.0f} trades/s")
    middle.legend(fontsize=8)

    fan = [
        ("websockets broadcast", ceiling["ws_broadcast"]["deliveries_per_s"], "tab:gray"),
        ("tickpipe gateway", tickpipe["gateway"]["deliveries_per_s"], "tab:blue"),
    ]
    right.bar([f[0] for f in fan], [f[1] for f in fan], color=[f[2] for f in fan])
    right.set_ylabel("deliveries per second")
    right.set_title(f"Fan-out to {results['params']['ws_clients']} WebSocket clients")
    for index, (_, value, _) in enumerate(fan):
        right.text(index, value, f"{value:,.0f}", ha="center", va="bottom", fontsize=8)

    figure.suptitle(
        f"tickpipe benchmarks {results['date']} · {results['machine']['nproc']} cores · "
        f"{results['params']['trades']:,} trades"
    )
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    if copy_to is not None:
        copy_to.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, copy_to)
