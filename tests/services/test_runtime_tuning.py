"""What every service sets in its interpreter before the first trade (services/runtime.py)."""

from __future__ import annotations

import gc
import sys
from collections.abc import Iterator

import pytest

from tickpipe.services.runtime import GC_THRESHOLDS, SWITCH_INTERVAL_S, tune_interpreter


@pytest.fixture
def restored_interpreter() -> Iterator[None]:
    thresholds, interval = gc.get_threshold(), sys.getswitchinterval()
    yield
    gc.unfreeze()
    gc.set_threshold(*thresholds)
    sys.setswitchinterval(interval)


@pytest.mark.usefixtures("restored_interpreter")
def test_tuning_sets_the_collector_and_the_switch_interval() -> None:
    sys.setswitchinterval(0.005)
    tune_interpreter()
    assert gc.get_threshold() == GC_THRESHOLDS
    assert gc.get_freeze_count() > 0  # start-up's objects are out of the collector's sight
    assert sys.getswitchinterval() == pytest.approx(SWITCH_INTERVAL_S)
    assert SWITCH_INTERVAL_S < 0.005  # shorter than Python's own
