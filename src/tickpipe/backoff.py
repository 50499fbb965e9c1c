"""Capped exponential backoff with full jitter, for every retry and reconnect loop."""

from __future__ import annotations

import random
from dataclasses import dataclass


def backoff_delay_s(
    attempt: int, initial_s: float, max_s: float, rng: random.Random | None = None
) -> float:
    """Full jitter: uniform in [0, min(max, initial * 2**attempt)] for the 0-based `attempt`."""
    ceiling_s = min(max_s, initial_s * 2 ** min(attempt, 62))
    return (rng or random).uniform(0.0, ceiling_s)


@dataclass(frozen=True, slots=True)
class Backoff:
    initial_s: float = 0.1
    max_s: float = 5.0

    def delay_s(self, attempt: int) -> float:
        return backoff_delay_s(attempt, self.initial_s, self.max_s)
