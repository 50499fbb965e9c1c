"""The benchmark harness: ceilings of the machine's parts, tickpipe's figures and the Quix Streams
peer, measured in one run on our own Tansu broker, PostgreSQL database and Redis names.

    .venv/bin/python -m benchmarks.run            # full: 1,000,000 trades (about 6-10 min)
    .venv/bin/python -m benchmarks.run --quick    # 100,000 trades, shorter runs (about 2 min)
    .venv/bin/python -m benchmarks.run --profile  # adds a py-spy profile of the processor

Prints one table, writes benchmarks/results/<run>.json and .png (and its logs in <run>/),
copies the chart to docs/benchmarks.png and the table to benchmarks/latest.md.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, TypeVar

BENCHMARKS_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCHMARKS_DIR.parent
RESULTS_DIR = BENCHMARKS_DIR / "results"
DATABASE_NAME = "tickpipe_bench"
PARTITIONS = 6  # tickpipe's default TICKPIPE_KAFKA_PARTITIONS
# The embedded figures pre-fill an in-process bus with every trade: bounded, for memory.
EMBEDDED_MAX_TRADES = 200_000
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Params:
    trades: int
    rtt_s: float
    latency_rate_per_s: float
    latency_warmup_s: float
    latency_s: float
    ws_clients: int
    ws_updates: int
    redis_s: float
    gateway_offered_factor: float  # offered rate = this x the broadcast ceiling
    timeout_s: float
    repeat: int  # throughput runs of tickpipe and of the peer; the best of each counts


QUICK = Params(100_000, 10, 1000, 5, 15, 100, 3_000, 2, 1.5, 300, repeat=1)
FULL = Params(1_000_000, 30, 1000, 5, 60, 100, 10_000, 5, 1.5, 900, repeat=2)


def install_requirements(with_peer: bool) -> None:
    """Benchmark-only packages into this venv; Quix Streams into benchmarks/.venv-peer."""
    pip = [sys.executable, "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    subprocess.run([*pip, "-r", str(BENCHMARKS_DIR / "requirements.txt")], check=True)
    if with_peer:
        from benchmarks.harness import peer

        peer.ensure_peer_venv(getattr(sys, "_base_executable", sys.executable))


def step(name: str, work: Callable[[], T]) -> T:
    print(f"-- {name} ...", end="", flush=True)
    started_s = time.monotonic()
    result = work()
    print(f" {time.monotonic() - started_s:.1f} s", flush=True)
    return result


@contextlib.contextmanager
def stack_under_test(log_dir: Path) -> Iterator[tuple[Any, str, str]]:
    """Our broker and database for the run; every process is stopped and the database and
    Redis keys are dropped at the end, whatever happens."""
    from benchmarks.harness import infra

    processes = infra.Processes(log_dir)
    try:
        with infra.tansu_broker(processes) as bootstrap:
            database_url = infra.fresh_database(DATABASE_NAME)
            try:
                yield processes, bootstrap, database_url
            finally:
                processes.stop_all()
                infra.drop_database(DATABASE_NAME)
    finally:
        processes.stop_all()


def measure(
    params: Params, run_id: str, log_dir: Path, *, peer_on: bool, profile: bool
) -> dict[str, Any]:
    from benchmarks.harness import (
        broker,
        database,
        embedded,
        fanout,
        infra,
        peer,
        pipeline,
        profiling,
        workload,
    )

    redis = infra.RedisNames.for_run(run_id)
    results: dict[str, Any] = {"ceilings": {}, "tickpipe": {}, "peer": {}, "progress": {}}
    ceilings, tickpipe = results["ceilings"], results["tickpipe"]
    with stack_under_test(log_dir) as (processes, bootstrap, database_url):
        try:
            step("migrate", lambda: pipeline.migrate_database(database_url))
            topic = f"bench-{run_id}-trades"
            infra.create_topics(bootstrap, [topic, f"{topic}.dlq"], PARTITIONS)
            prefill = step(
                f"pre-fill {params.trades:,} trades (KafkaSink)",
                lambda: workload.prefill(bootstrap, topic, params.trades),
            )
            results["prefill_trades_per_s"] = prefill

            # Ceilings.
            ceilings["broker_consume_msgs_per_s"] = step(
                "ceiling: broker consume",
                lambda: broker.consume_rate(bootstrap, topic, params.trades),
            )
            rtt_topic = broker.round_trip_topic(bootstrap, run_id, "tickpipe")
            ceilings["broker_round_trip_ms"] = step(
                f"ceiling: broker round trip at {params.latency_rate_per_s:g}/s",
                lambda: broker.round_trip(
                    bootstrap,
                    rtt_topic,
                    rate_per_s=params.latency_rate_per_s,
                    duration_s=params.rtt_s,
                ),
            )
            ceilings["broker_group_join_s"] = step(
                "ceiling: a new consumer group's join",
                lambda: broker.group_join_s(bootstrap, rtt_topic),
            )
            pg = step(
                "ceiling: PostgreSQL idempotent insert and COPY",
                lambda: database.insert_rates(database_url, params.trades),
            )
            ceilings["pg_idempotent_rows_per_s"] = pg["idempotent"]
            ceilings["pg_copy_rows_per_s"] = pg["copy"]
            ceilings["redis_publish_msgs_per_s"] = step(
                "ceiling: Redis PUBLISH",
                lambda: database.publish_rate(infra.REDIS_URL, redis.channel, params.redis_s),
            )
            ceilings["ws_broadcast"] = step(
                f"ceiling: websockets broadcast to {params.ws_clients} clients",
                lambda: fanout.broadcast_ceiling(
                    processes, params.ws_clients, params.ws_updates
                ).as_dict(),
            )

            # tickpipe and the peer, alternately, `repeat` times each on the same topic; the
            # best run of each counts (noise on a shared machine only ever slows a run down).
            group = f"bench-{run_id}-process"
            env = infra.TickpipeEnv(database_url, bootstrap, topic, group, redis)
            runs: list[Any] = []
            quix_runs: list[Any] = []
            for attempt in range(1, params.repeat + 1):
                if attempt > 1:
                    pipeline.truncate(database_url)
                attempt_env = replace(env, group=f"{group}-{attempt}")
                throughput = step(
                    f"tickpipe process: throughput (run {attempt}/{params.repeat})",
                    lambda attempt_env=attempt_env: pipeline.processor_throughput(
                        processes, attempt_env, params.trades, timeout_s=params.timeout_s
                    ),
                )
                if throughput.stored != params.trades:
                    raise RuntimeError(f"stored {throughput.stored} rows of {params.trades} trades")
                runs.append(throughput)
                if peer_on:
                    pipeline.truncate(database_url)
                    peer_env = replace(env, group=f"{group}-quix-{attempt}")
                    peer_run = step(
                        f"peer: Quix Streams, same work (run {attempt}/{params.repeat})",
                        lambda peer_env=peer_env: peer.quix_throughput(
                            processes,
                            peer_env,
                            params.trades,
                            state_dir=log_dir / "quix-state",
                            timeout_s=params.timeout_s,
                        ),
                    )
                    if peer_run.stored != params.trades:
                        raise RuntimeError(f"peer stored {peer_run.stored} of {params.trades}")
                    quix_runs.append(peer_run)
            best = max(runs, key=lambda run: run.trades_per_s)
            tickpipe["processor_trades_per_s"] = best.trades_per_s
            tickpipe["processor_trades_per_s_runs"] = [run.trades_per_s for run in runs]
            tickpipe["peak_rss_mib"] = max(run.peak_rss_mib for run in runs)
            tickpipe["stored"] = best.stored
            tickpipe["processor_committed_per_s"] = best.committed_per_s
            tickpipe["redis_delivered"] = best.delivered
            tickpipe["processor_cpu_pct"] = best.cpu_pct
            tickpipe["machine_busy_pct"] = best.machine_busy_pct
            results["progress"]["processor"] = best.progress.samples
            if quix_runs:
                best_peer = max(quix_runs, key=lambda run: run.trades_per_s)
                results["peer"]["quix_trades_per_s"] = best_peer.trades_per_s
                results["peer"]["quix_trades_per_s_runs"] = [r.trades_per_s for r in quix_runs]
                results["peer"]["quix_redis_delivered"] = best_peer.delivered
                results["peer"]["quix_cpu_pct"] = best_peer.cpu_pct
                results["progress"]["quix"] = best_peer.progress.samples

            # Two workers in one command (`--workers 2`), on the same topic.
            pipeline.truncate(database_url)
            workers_env = replace(env, group=f"{group}-workers", extra={"TICKPIPE_WORKERS": "2"})
            two = step(
                "tickpipe process --workers 2: throughput",
                lambda: pipeline.processor_throughput(
                    processes, workers_env, params.trades, timeout_s=params.timeout_s
                ),
            )
            if two.stored != params.trades:
                raise RuntimeError(f"--workers 2 stored {two.stored} rows of {params.trades}")
            tickpipe["workers_2"] = {
                "trades_per_s": two.trades_per_s,
                "committed_per_s": two.committed_per_s,
                "delivered": two.delivered,
                "stored": two.stored,
            }

            # End to end: the ingestor at full speed beside the processor, on the same cores.
            pipeline.truncate(database_url)
            e2e_topic = f"bench-{run_id}-e2e"
            infra.create_topics(bootstrap, [e2e_topic, f"{e2e_topic}.dlq"], PARTITIONS)
            e2e_env = infra.TickpipeEnv(
                database_url, bootstrap, e2e_topic, f"bench-{run_id}-e2e", redis
            )
            e2e = step(
                "tickpipe ingest (simulated, full speed) + process: end to end",
                lambda: pipeline.end_to_end_throughput(
                    processes, e2e_env, params.trades, timeout_s=params.timeout_s
                ),
            )
            tickpipe["end_to_end"] = {
                "trades_per_s": e2e.trades_per_s,
                "ingested_per_s": e2e.ingested_per_s,
                "ingest_cpu_us_per_trade": e2e.ingest_cpu_us_per_trade,
                "ingest_cpu_pct": e2e.ingest_cpu_pct,
                "processor_cpu_pct": e2e.processor_cpu_pct,
                "broker_cpu_pct": e2e.broker_cpu_pct,
                "machine_busy_pct": e2e.machine_busy_pct,
                "dropped": e2e.dropped,
            }
            results["progress"]["end_to_end"] = e2e.progress.samples
            # The same, the exchange paced at 0.8x the processor's own figure: does the whole
            # pipeline keep up with that on these cores?
            pipeline.truncate(database_url)
            paced_topic = f"bench-{run_id}-e2e-paced"
            infra.create_topics(bootstrap, [paced_topic, f"{paced_topic}.dlq"], PARTITIONS)
            offered = 0.8 * best.trades_per_s
            paced = step(
                f"tickpipe ingest (simulated, {offered:,.0f}/s) + process: end to end",
                lambda: pipeline.end_to_end_throughput(
                    processes,
                    replace(e2e_env, topic=paced_topic, group=f"bench-{run_id}-e2e-paced"),
                    params.trades,
                    timeout_s=params.timeout_s,
                    rate_per_s=offered,
                ),
            )
            tickpipe["end_to_end_paced"] = {
                "offered_per_s": offered,
                "trades_per_s": paced.trades_per_s,
                "ingested_per_s": paced.ingested_per_s,
                "ingest_cpu_us_per_trade": paced.ingest_cpu_us_per_trade,
                "ingest_cpu_pct": paced.ingest_cpu_pct,
                "processor_cpu_pct": paced.processor_cpu_pct,
                "broker_cpu_pct": paced.broker_cpu_pct,
                "machine_busy_pct": paced.machine_busy_pct,
                "dropped": paced.dropped,
            }

            # The embedded default (`tickpipe run`, SQLite) against a bare SQLite insert.
            embedded_trades = min(params.trades, EMBEDDED_MAX_TRADES)
            sqlite_ceilings: list[dict[str, float]] = []
            processing_runs: list[Any] = []
            for attempt in range(1, params.repeat + 1):
                sqlite_ceilings.append(
                    step(
                        f"ceiling: SQLite batched INSERT OR IGNORE (run {attempt}/{params.repeat})",
                        lambda: embedded.insert_ceilings(log_dir, embedded_trades),
                    )
                )
                processing_runs.append(
                    step(
                        f"tickpipe run's processing on SQLite (run {attempt}/{params.repeat})",
                        lambda: embedded.processing_throughput(
                            processes, log_dir, embedded_trades, timeout_s=params.timeout_s
                        ),
                    )
                )
                if processing_runs[-1].stored != embedded_trades:
                    raise RuntimeError(
                        f"stored {processing_runs[-1].stored} rows of {embedded_trades} trades"
                    )
            run_full_speed = step(
                "tickpipe run, simulated exchange at full speed",
                lambda: embedded.run_throughput(
                    processes, log_dir, embedded_trades, timeout_s=params.timeout_s
                ),
            )
            ceilings["sqlite_executemany_rows_per_s"] = max(
                c["executemany"] for c in sqlite_ceilings
            )
            ceilings["sqlite_multirow_rows_per_s"] = max(c["multirow"] for c in sqlite_ceilings)
            best_embedded = max(processing_runs, key=lambda run: run.trades_per_s)
            tickpipe["embedded"] = {
                **embedded.as_dict(best_embedded),
                "trades": embedded_trades,
                "trades_per_s_runs": [run.trades_per_s for run in processing_runs],
            }
            tickpipe["embedded_run"] = embedded.as_dict(run_full_speed)
            results["progress"]["embedded"] = best_embedded.progress.samples

            pipeline.truncate(database_url)
            live_topic = f"bench-{run_id}-live"
            live_env = infra.TickpipeEnv(
                database_url, bootstrap, live_topic, f"bench-{run_id}-live", redis
            )
            latency = step(
                f"tickpipe ingest + process + gateway: latency at "
                f"{params.latency_rate_per_s:g} trades/s for {params.latency_s:g} s",
                lambda: pipeline.end_to_end_latency(
                    processes,
                    live_env,
                    rate_per_s=params.latency_rate_per_s,
                    warmup_s=params.latency_warmup_s,
                    duration_s=params.latency_s,
                ),
            )
            tickpipe["latency"] = {
                "ingest_to_client_ms": latency.ingest_to_client_ms,
                "exchange_to_client_ms": latency.exchange_to_client_ms,
                "ingest_to_redis_ms": latency.ingest_to_redis_ms,
                "processor_means": latency.processor_means,
                "worst_ms_per_s": latency.worst_ms_per_s,
                "frames": latency.frames,
                "first_trade_s": latency.first_trade_s,
                "cold_start_ms": latency.cold_ms,
            }
            tickpipe["rss_samples_mib"] = latency.rss_samples_mib
            tickpipe["rss_growth_pct"] = rss_growth_pct(latency.rss_samples_mib)

            gateway, gateway_port = pipeline.start_gateway(processes, env, "gateway-fanout")
            offered_per_s = (
                params.gateway_offered_factor
                * ceilings["ws_broadcast"]["deliveries_per_s"]
                / params.ws_clients
            )
            fan = step(
                f"tickpipe gateway: fan-out to {params.ws_clients} clients",
                lambda: fanout.gateway_fan_out(
                    processes,
                    f"ws://127.0.0.1:{gateway_port}/ws",
                    redis.channel,
                    clients=params.ws_clients,
                    updates=params.ws_updates,
                    rate_per_s=offered_per_s,
                ).as_dict(),
            )
            processes.stop(gateway)
            tickpipe["gateway"] = {**fan, "offered_per_s": offered_per_s}

            if profile:
                pipeline.truncate(database_url)
                raw = log_dir / "processor-py-spy.txt"
                profile_env = infra.TickpipeEnv(
                    database_url, bootstrap, topic, f"bench-{run_id}-profile", redis
                )
                profiled = step(
                    "profile: tickpipe process under py-spy",
                    lambda: pipeline.processor_throughput(
                        processes,
                        profile_env,
                        params.trades,
                        timeout_s=params.timeout_s,
                        profile_argv=profiling.py_spy_argv(raw),
                    ),
                )
                summary = profiling.summarize(raw)
                (log_dir / "processor-profile.txt").write_text(summary)
                results["profile"] = {
                    "trades_per_s_under_profiler": profiled.trades_per_s,
                    "collapsed_stacks": str(raw.relative_to(REPO_ROOT)),
                    "summary": summary,
                }
        finally:
            asyncio.run(infra.delete_redis_keys(redis))
    return results


def rss_growth_pct(samples: list[tuple[float, float]]) -> float | None:
    """Growth of RSS from the first sample after warm-up (t >= 0) to the last, in percent."""
    after = [rss for t, rss in samples if t >= 0]
    if len(after) < 2 or after[0] <= 0:
        return None
    return 100 * (after[-1] - after[0]) / after[0]


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.run", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--quick", action="store_true", help="100,000 trades, short runs")
    parser.add_argument("--trades", type=int, help="trades in the pre-filled topic")
    parser.add_argument("--latency-s", type=float, help="length of the latency (and RSS) run")
    parser.add_argument("--repeat", type=int, help="throughput runs of tickpipe and the peer")
    parser.add_argument("--profile", action="store_true", help="add a py-spy processor profile")
    parser.add_argument("--no-peer", action="store_true", help="skip the Quix Streams peer")
    parser.add_argument("--no-install", action="store_true", help="skip the pip installs")
    args = parser.parse_args()

    params = QUICK if args.quick else FULL
    if args.trades:
        params = replace(params, trades=args.trades)
    if args.latency_s:
        params = replace(params, latency_s=args.latency_s)
    if args.repeat:
        params = replace(params, repeat=args.repeat)
    peer_on = not args.no_peer
    if not args.no_install:
        step(
            "pip install benchmarks/requirements*.txt",
            lambda: install_requirements(not args.no_peer),
        )

    from benchmarks.harness import report

    started = dt.datetime.now(dt.UTC)
    run_id = started.strftime("%Y%m%dT%H%M%SZ")
    log_dir = RESULTS_DIR / run_id
    log_dir.mkdir(parents=True, exist_ok=True)
    host = report.machine()
    print(
        f"tickpipe benchmarks {run_id}: {host['nproc']} cores, {host['cpu']}, "
        f"Python {host['python']}, load {host['load_avg_1m']:.1f}; logs in {log_dir}"
    )
    results = measure(params, run_id, log_dir, peer_on=peer_on, profile=args.profile)
    results.update(
        {
            "run_id": run_id,
            "date": started.strftime("%Y-%m-%d %H:%M UTC"),
            "quick": args.quick,
            "command": " ".join(["python -m benchmarks.run", *sys.argv[1:]]),
            "params": asdict(params),
            "machine": host,
            "load_avg_1m_end": report.machine()["load_avg_1m"],
            "duration_s": (dt.datetime.now(dt.UTC) - started).total_seconds(),
        }
    )
    table = report.rows(results)
    results["table"] = [row.cells() for row in table]
    report.write_json(RESULTS_DIR / f"{run_id}.json", results)
    chart = RESULTS_DIR / f"{run_id}.png"
    report.draw_chart(results, chart, copy_to=REPO_ROOT / "docs" / "benchmarks.png")
    (BENCHMARKS_DIR / "latest.md").write_text(
        report.latest_markdown(results, table, "../docs/benchmarks.png")
    )
    print()
    print(report.render_text(table))
    if "profile" in results:
        print()
        print(results["profile"]["summary"])
    print(f"\nresults: {RESULTS_DIR / run_id}.json, chart: {chart}, table: benchmarks/latest.md")


if __name__ == "__main__":
    main()
