"""Shared fixtures: the real services (fixtures/*) and common trade builders."""

pytest_plugins = [
    "fixtures.kafka",
    "fixtures.postgres",
    "fixtures.redis",
    "fixtures.trades",
    "fixtures.procs",
]
