"""Shared fixtures: the real services (fixtures/*) and common trade builders; the Hypothesis
profiles (HYPOTHESIS_PROFILE): `ci`, the default, runs the same examples every time; `explore`
searches far more, at random, and remembers what it found in .hypothesis/."""

import os

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
