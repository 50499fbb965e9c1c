"""The peer's figure: trades/s of the Quix Streams SMA-20 job (benchmarks/harness/quix_job.py)
on the same pre-filled topic, counted by the results it has written to its output topic."""

from __future__ import annotations

import subprocess
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


def quix_throughput(
    processes: infra.Processes,
    bootstrap: str,
    topic: str,
    count: int,
    *,
    partitions: int,
    run_id: str,
    state_dir: Path,
    timeout_s: float,
) -> tuple[float, pipeline.Progress]:
    """Trades/s of the Quix job over `count` trades of `topic`, from its first output to its
    last (its output topic is created with `partitions` and an explicit retention)."""
    output_topic = f"bench-{run_id}-quix-sma"
    infra.create_topics(bootstrap, [output_topic], partitions)
    argv = [str(PEER_PYTHON), "-m", "benchmarks.harness.quix_job", bootstrap, topic, output_topic]
    argv += [f"bench-{run_id}-quix", str(state_dir)]
    child = processes.start("quix", argv)
    try:
        with pipeline.messages_in(bootstrap, output_topic) as produced:
            progress = pipeline.watch(produced, count, child, timeout_s)
    finally:
        processes.stop(child, timeout_s=15)
    return progress.rate_per_s(), progress
