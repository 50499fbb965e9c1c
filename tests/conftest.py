"""Shared fixtures: the real services (fixtures/*) and common trade builders; the Hypothesis
profiles (HYPOTHESIS_PROFILE): `ci`, the default, runs the same examples every time; `explore`
searches far more, at random, and remembers what it found in .hypothesis/."""

import os
from pathlib import Path

import pytest
from hypothesis import settings

# fixtures.procs and .servers first: the service fixtures import them, and a plugin must be
# registered (assertion-rewritten) before another module imports it.
pytest_plugins = [
    "fixtures.procs",
    "fixtures.servers",
    "fixtures.kafka",
    "fixtures.postgres",
    "fixtures.redis",
    "fixtures.trades",
]

# Derandomized with no example database: a failure in CI is a defect, never a new random draw,
# and a re-run reproduces it. What `explore` finds becomes an @example regression.
settings.register_profile(
    "ci", derandomize=True, database=None, max_examples=100, deadline=None, print_blob=True
)
settings.register_profile("explore", max_examples=2_000, deadline=None, print_blob=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

# Under pytest-xdist (`--dist loadgroup`): a test file stays on one worker, so module fixtures (a
# browser, a running pipeline) are shared by its tests; and the fault scenarios, which time real
# processes against each other, run one after another on one worker, never two at once.
FAULT_SCENARIOS = Path(__file__).parent / "faults"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        path = Path(item.path)
        group = "faults" if path.is_relative_to(FAULT_SCENARIOS) else str(path)
        item.add_marker(pytest.mark.xdist_group(group))
