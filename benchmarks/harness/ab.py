"""Before/after in one run: `tickpipe process` from another git ref against this tree, in
interleaved pairs on the same pre-filled topic, beside the PostgreSQL idempotent insert ceiling.
With `--embedded`: `tickpipe run`'s processing on SQLite (benchmarks/harness/embedded_job.py),
in pairs, each pair beside the bare SQLite insert ceiling.

    .venv/bin/python -m benchmarks.harness.ab --baseline main --trades 100000 --pairs 3
    .venv/bin/python -m benchmarks.harness.ab --baseline main --embedded

On a shared machine the load drifts within minutes; pairs measured back to back, and their
ratio, are what can be compared.
"""

from __future__ import annotations

import argparse
import subprocess
import tempfile
from dataclasses import replace
from pathlib import Path

from benchmarks.harness import database, infra, pipeline, workload

DATABASE_NAME = "tickpipe_bench_ab"
PARTITIONS = 6
# The candidate side imports this tree's tickpipe explicitly: an installed (editable) tickpipe
# may point at another checkout, e.g. when this tree is a git worktree sharing a venv.
THIS_TREE_SRC = str(Path(__file__).resolve().parents[2] / "src")


def export_source(ref: str, into: Path) -> Path:
    """`src/` of `ref` (git archive), importable with PYTHONPATH=<returned path>."""
    archive = subprocess.run(["git", "archive", ref, "src"], check=True, capture_output=True)
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive.stdout, check=True)
    return into / "src"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--baseline", default="main", help="git ref of the 'before' processor")
    parser.add_argument("--trades", type=int, default=100_000)
    parser.add_argument("--pairs", type=int, default=3)
    parser.add_argument("--embedded", action="store_true", help="tickpipe run on SQLite instead")
    args = parser.parse_args()
    if args.embedded:
        embedded_pairs(args.baseline, args.trades, args.pairs)
        return
    with tempfile.TemporaryDirectory() as scratch:
        baseline_src = export_source(args.baseline, Path(scratch))
        processes = infra.Processes(Path("benchmarks/results/ab"))
        redis = infra.RedisNames.for_run("ab")
        try:
            with infra.tansu_broker(processes) as bootstrap:
                database_url = infra.fresh_database(DATABASE_NAME)
                try:
                    pipeline.migrate_database(database_url)
                    topic = "bench-ab"
                    infra.create_topics(bootstrap, [topic, f"{topic}.dlq"], PARTITIONS)
                    workload.prefill(bootstrap, topic, args.trades)
                    env = infra.TickpipeEnv(database_url, bootstrap, topic, "ab", redis)
                    rows: list[tuple[str, float, float, float]] = []
                    for pair in range(args.pairs):
                        for label, extra in (
                            (args.baseline, {"PYTHONPATH": str(baseline_src)}),
                            ("this tree", {"PYTHONPATH": THIS_TREE_SRC}),
                        ):
                            pipeline.truncate(database_url)
                            run_env = replace(env, group=f"ab-{pair}-{len(rows)}", extra=extra)
                            result = pipeline.processor_throughput(
                                processes, run_env, args.trades, timeout_s=600
                            )
                            if result.stored != args.trades:
                                raise RuntimeError(f"{label}: stored {result.stored} rows")
                            rows.append(
                                (label, result.trades_per_s, result.cpu_pct, result.peak_rss_mib)
                            )
                            cpu_us = 1e4 * result.cpu_pct / result.trades_per_s
                            print(
                                f"pair {pair + 1} {label:>10}: {result.trades_per_s:8,.0f} "
                                f"trades/s  CPU {result.cpu_pct:4.0f} % = {cpu_us:5.1f} us/trade"
                                f"  RSS {result.peak_rss_mib:4.0f} MiB",
                                flush=True,
                            )
                    ceiling = database.insert_rates(database_url, args.trades)
                    print(
                        f"PostgreSQL idempotent insert {ceiling['idempotent']:,.0f} rows/s, "
                        f"plain COPY {ceiling['copy']:,.0f} rows/s"
                    )
                    for label in (args.baseline, "this tree"):
                        runs = [(rate, cpu) for name, rate, cpu, _ in rows if name == label]
                        best = max(rate for rate, _ in runs)
                        cpu_us = min(1e4 * cpu / rate for rate, cpu in runs)
                        print(
                            f"{label:>10}: best {best:,.0f} trades/s = "
                            f"{best / ceiling['idempotent']:.2f}x the idempotent ceiling; "
                            f"least CPU {cpu_us:.1f} us/trade"
                        )
                finally:
                    infra.drop_database(DATABASE_NAME)
        finally:
            processes.stop_all()
            import asyncio

            asyncio.run(infra.delete_redis_keys(redis))


def embedded_pairs(baseline: str, trades: int, pairs: int) -> None:
    """Interleaved pairs of `run`'s processing on SQLite, each beside the SQLite ceiling."""
    from benchmarks.harness import embedded

    with tempfile.TemporaryDirectory() as scratch:
        baseline_src = export_source(baseline, Path(scratch))
        directory = Path(scratch) / "files"
        directory.mkdir()
        processes = infra.Processes(Path("benchmarks/results/ab"))
        try:
            for pair in range(pairs):
                ceiling = embedded.insert_ceilings(directory, trades)["executemany"]
                for label, extra in (
                    (baseline, {"PYTHONPATH": str(baseline_src)}),
                    ("this tree", {"PYTHONPATH": THIS_TREE_SRC}),
                ):
                    run = embedded.processing_throughput(
                        processes, directory, trades, timeout_s=600, extra_env=extra
                    )
                    if run.stored != trades or run.delivered != trades:
                        raise RuntimeError(f"{label}: {run.stored} stored, {run.delivered} sent")
                    cpu_us = 1e4 * run.cpu_pct / run.trades_per_s
                    print(
                        f"pair {pair + 1} {label:>10}: {run.trades_per_s:8,.0f} trades/s "
                        f"= {run.trades_per_s / ceiling:.2f}x SQLite executemany "
                        f"{ceiling:,.0f}/s  CPU {run.cpu_pct:4.0f} % = {cpu_us:5.1f} us/trade",
                        flush=True,
                    )
        finally:
            processes.stop_all()


if __name__ == "__main__":
    main()
