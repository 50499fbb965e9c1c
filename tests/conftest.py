"""Shared fixtures: the real services (fixtures/*) and common trade builders."""

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
