"""The peer's figure: trades/s of the Quix Streams job doing tickpipe's work
(benchmarks/harness/quix_job.py) on the same pre-filled topic, into the same database table and
Redis, timed like tickpipe's processor (rows stored, first to last)."""

from __future__ import annotations

import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from benchmarks.harness import infra, pipeline

PEER_VENV = infra.REPO_ROOT / "benchmarks" / ".venv-peer"
PEER_PYTHON = PEER_VENV / "bin" / "python"
PEER_REQUIREMENTS = infra.REPO_ROOT / "benchmarks" / "requirements-peer.txt"


def ensure_peer_venv(base_python: str) -> None:
    """Creates benchmarks/.venv-peer with Quix Streams unless it is there."""
    if not PEER_PYTHON.exists():
        subprocess.run([base_python, "-m", "venv", str(PEER_VENV)], check=True)
    pip = [str(PEER_PYTHON), "-m", "pip", "install", "-q", "-r", str(PEER_REQUIREMENTS)]
    subprocess.run(pip, check=True)


@dataclass
class PeerRun:
    trades_per_s: float  # rows stored, from the first stored row to the last (polled)
    progress: pipeline.Progress
    stored: int
    delivered: int  # trade updates published to Redis
    cpu_pct: float


def quix_throughput(
    processes: infra.Processes,
    env: infra.TickpipeEnv,
    count: int,
    *,
    state_dir: Path,
    timeout_s: float,
) -> PeerRun:
    """The Quix job over the `count` trades of `env.topic` into `env.database_url` (an empty
    `trades`) and `env.redis`, timed exactly like tickpipe's processor: rows stored polled, from
    the first to the last."""
    argv = [str(PEER_PYTHON), "-m", "benchmarks.harness.quix_job", env.bootstrap, env.topic]
    argv += [env.group, str(state_dir), env.database_url, infra.REDIS_URL]
    argv += [env.redis.channel, env.redis.prefix]
    with pipeline.redis_deliveries(env.redis.channel) as delivered:
        child = processes.start("quix", argv)
        cpu_from: list[tuple[float, float]] = []
        try:
            with pipeline.stored_so_far(env.database_url) as stored:

                def counted() -> int:
                    done = stored()
                    if done and not cpu_from:
                        cpu_from.append((time.monotonic(), infra.cpu_seconds(child.pid)))
                    return done

                progress = pipeline.watch(counted, count, child, timeout_s)
            cpu_pct = (
                100
                * (infra.cpu_seconds(child.pid) - cpu_from[0][1])
                / (time.monotonic() - cpu_from[0][0])
            )
            deadline_s = time.monotonic() + 5.0
            while delivered() < count and time.monotonic() < deadline_s:
                time.sleep(pipeline.COMMIT_POLL_S)
        finally:
            processes.stop(child, timeout_s=15)
        return PeerRun(
            progress.rate_per_s(),
            progress,
            pipeline.stored_rows(env.database_url),
            delivered(),
            cpu_pct,
        )
