"""Metric labels stay bounded however many symbols a topic carries."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tickpipe.telemetry import metrics


@pytest.fixture
def fresh_symbol_labels() -> Iterator[None]:
    """The label registry is process-wide: start empty, give the others theirs back after."""
    saved = set(metrics._symbol_labels)
    metrics._symbol_labels.clear()
    yield
    metrics._symbol_labels.clear()
    metrics._symbol_labels.update(saved)


@pytest.mark.usefixtures("fresh_symbol_labels")
def test_symbol_labels_stop_at_the_limit_and_known_ones_keep_theirs() -> None:
    """Past MAX_SYMBOL_LABELS streams, new symbols share OTHER_SYMBOL; seen ones keep theirs."""
    limit = metrics.MAX_SYMBOL_LABELS
    assert [metrics.symbol_label("v", f"S{n}") for n in range(limit)] == [
        f"S{n}" for n in range(limit)
    ]
    assert metrics.symbol_label("v", "ONEMORE") == metrics.OTHER_SYMBOL
    assert metrics.symbol_label("v", "S0") == "S0"
