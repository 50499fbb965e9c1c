"""Capped exponential backoff with full jitter, for the services' retry loops."""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Backoff:
    initial_s: float = 0.1
    max_s: float = 5.0
    factor: float = 2.0

    def delay_s(self, attempt: int) -> float:
        """Delay before retry number `attempt` (0-based): uniform in [0, min(max, initial*f^n)]."""
        ceiling = min(self.max_s, self.initial_s * self.factor ** min(attempt, 32))
        return random.uniform(ceiling / 2, ceiling)
