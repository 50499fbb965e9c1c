"""Shared fixtures: the real services (fixtures/*) and common trade builders."""

# fixtures.procs first: fixtures.kafka imports its free_port, and a plugin must be registered
# (assertion-rewritten) before another module imports it.
pytest_plugins = [
    "fixtures.procs",
    "fixtures.kafka",
    "fixtures.postgres",
    "fixtures.redis",
    "fixtures.trades",
]
