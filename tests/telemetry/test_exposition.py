"""Merging the Prometheus expositions of several workers into one."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from tickpipe.telemetry.exposition import merge_expositions


def _exposition(stored: int, lag: int) -> str:
    registry = CollectorRegistry()
    counter = Counter("trades_stored", "Trades stored.", ["exchange"], registry=registry)
    counter.labels("binance").inc(stored)
    counter.labels('we"ird}').inc(1)
    Gauge("consumer_lag", "Lag.", registry=registry).set(lag)
    return generate_latest(registry).decode()


def test_merged_exposition_parses_and_labels_every_sample_with_its_worker() -> None:
    """The merge is valid exposition text: each family once, every sample of every worker
    in it with its worker label and its own value (odd label values included)."""
    merged = merge_expositions({"0": _exposition(5, 7), "1": _exposition(9, 0)}, "worker")
    families = {family.name: family for family in text_string_to_metric_families(merged)}
    assert set(families) == {"trades_stored", "trades_stored_created", "consumer_lag"}
    stored = {
        (s.labels["worker"], s.labels["exchange"]): s.value
        for s in families["trades_stored"].samples
        if s.name == "trades_stored_total"
    }
    assert stored == {
        ("0", "binance"): 5,
        ("1", "binance"): 9,
        ("0", 'we"ird}'): 1,
        ("1", 'we"ird}'): 1,
    }
    lag = {s.labels["worker"]: s.value for s in families["consumer_lag"].samples}
    assert lag == {"0": 7, "1": 0}
    assert merged.count("# TYPE consumer_lag gauge") == 1


def test_merging_nothing_gives_an_empty_exposition() -> None:
    """No worker answered: nothing to serve, not a malformed line."""
    assert merge_expositions({}, "worker") == ""
