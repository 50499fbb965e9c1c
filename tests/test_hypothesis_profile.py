"""The `ci` Hypothesis profile (the default of scripts/test) tries the same examples every run."""

from __future__ import annotations

import os
from decimal import Decimal

import pytest
from hypothesis import given, settings

from core.strategies import prices


def _examples() -> list[Decimal]:
    drawn: list[Decimal] = []

    @given(prices())
    def record(price: Decimal) -> None:
        drawn.append(price)

    record()
    return drawn


@pytest.mark.skipif(
    os.environ.get("HYPOTHESIS_PROFILE", "ci") != "ci", reason="only the ci profile is fixed"
)
def test_ci_profile_draws_the_same_examples_every_time() -> None:
    """Derandomized, no example database: two runs of a property draw identical examples."""
    assert settings.default.derandomize
    assert settings.default.database is None
    first, second = _examples(), _examples()
    assert len(first) > settings.default.max_examples // 2
    assert first == second


def test_some_strategy_is_not_constant() -> None:
    """The check above is not vacuous: the examples it compares differ from one another."""
    assert len(set(map(str, _examples()))) > 10
