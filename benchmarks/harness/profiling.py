"""py-spy profiles of the processor: the command that records one, and a summary of its
collapsed stacks (top functions by own samples and by samples anywhere on the stack)."""

from __future__ import annotations

import shutil
import sys
from collections import Counter
from pathlib import Path

PYSPY_RATE_HZ = 250


def py_spy_argv(output: Path) -> list[str]:
    """`py-spy record` of all threads in collapsed-stack format; the pid is appended."""
    py_spy = shutil.which("py-spy", path=str(Path(sys.executable).parent)) or "py-spy"
    return [
        py_spy,
        "record",
        "--format",
        "raw",
        "--rate",
        str(PYSPY_RATE_HZ),
        "--nonblocking",
        "--output",
        str(output),
        "--pid",
    ]


_ENTRY_MODULES = ("tickpipe/__main__.py", "tickpipe/cli.py", "tickpipe/commands.py")


def _function(frame: str) -> tuple[str, str]:
    """`name (tickpipe/core/trade.py:123)` -> (`name (trade.py)`, `tickpipe/core/trade.py`)."""
    name, _, where = frame.partition(" (")
    path = where.rsplit(":", 1)[0].rstrip(")")
    module = path.rsplit("/", 1)[-1]
    return (f"{name} ({module})" if module else name), path


def summarize(collapsed: Path, top: int = 25) -> str:
    """Top functions by own (leaf) samples, and tickpipe's functions by inclusive samples (the
    entry points, which hold everything, left out), in percent of all samples."""
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for line in collapsed.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [_function(f) for f in stack.split(";") if f]
        if not frames:
            continue
        total += count
        own[frames[-1][0]] += count
        for function in {
            name
            for name, path in frames
            if path.startswith("tickpipe/") and not path.endswith(_ENTRY_MODULES)
        }:
            inclusive[function] += count
    if not total:
        return "no samples"
    lines = [f"{total} samples at {PYSPY_RATE_HZ} Hz (all threads, idle excluded)", ""]
    for title, counter in (("own time", own), ("inclusive time, tickpipe's code", inclusive)):
        lines.append(f"top {top} by {title}:")
        lines += [f"  {100 * n / total:5.1f} %  {name}" for name, n in counter.most_common(top)]
        lines.append("")
    return "\n".join(lines)
