"""The monitoring files: alert rules and dashboard parse, cover what operators need, and use only
metric names tickpipe defines. The same check against the real services' /metrics runs in
tests/e2e/test_services_infra.py; the tests below prove that the check fails on a renamed metric."""

from __future__ import annotations

import json

import yaml
from prometheus_client import REGISTRY, generate_latest

import tickpipe.telemetry.metrics  # noqa: F401 - registers every tickpipe metric
from fixtures.monitoring import (
    ALERTS,
    DASHBOARD,
    ROOT,
    alert_expressions,
    dashboard_expressions,
    exported_names,
    metric_names,
    monitoring_expressions,
    unexported,
)

REQUIRED_ALERTS = {
    "TickpipeNoTrades": "tickpipe_trades_ingested_total",
    "TickpipeConsumerLagGrowing": "tickpipe_consumer_lag",
    "TickpipeDependencyDown": "tickpipe_dependency_up",
    "TickpipeDeadLetters": "tickpipe_dlq_messages_total",
    "TickpipeWebSocketClientsDropped": "tickpipe_websocket_dropped_total",
    "TickpipeLatencyOverBudget": "tickpipe_exchange_to_processed_seconds_bucket",
}
# What the dashboard must show, as metric names its queries use.
DASHBOARD_METRICS = {
    "throughput per venue": "tickpipe_trades_ingested_total",
    "lag": "tickpipe_consumer_lag",
    "latency percentiles": "tickpipe_exchange_to_processed_seconds_bucket",
    "batch size": "tickpipe_batch_size_bucket",
    "flush time": "tickpipe_flush_seconds_bucket",
    "outages": "tickpipe_dependency_outages_total",
    "retries": "tickpipe_store_retries_total",
    "websocket clients": "tickpipe_websocket_clients",
    "websocket drops": "tickpipe_websocket_dropped_total",
    "dlq": "tickpipe_dlq_messages_total",
}


def in_process_metrics() -> str:
    return generate_latest(REGISTRY).decode()


def test_promql_metric_names_exclude_functions_labels_ranges_and_keywords() -> None:
    """Only selectors count: not functions, aggregations, label names or values, durations."""
    expr = (
        'histogram_quantile(0.99, sum by (le, job) (rate(a_seconds_bucket{job=~"x|y"}[5m])))'
        " > 2 and on (job) b_total offset 1h unless sum without (le) (c:rate5m) > bool 1e3"
        ' or vector(0) + count(d{label="e_total"}[$__rate_interval:1m])'
    )
    assert metric_names(expr) == {"a_seconds_bucket", "b_total", "c:rate5m", "d"}


def test_exported_names_include_the_series_of_each_declared_family() -> None:
    """A counter with labels but no sample yet still exports `<name>_total`; a histogram its
    `_bucket`, `_sum` and `_count`."""
    text = (
        "# HELP t_dlq_total x\n# TYPE t_dlq_total counter\n"
        "# HELP t_flush_seconds x\n# TYPE t_flush_seconds histogram\n"
        't_flush_seconds_bucket{le="1.0"} 3.0\n'
    )
    names = exported_names(text)
    assert {"t_dlq_total", "t_flush_seconds_bucket", "t_flush_seconds_sum"} <= names
    assert "t_dlq_bucket" not in names


def test_every_monitoring_metric_is_defined_by_tickpipe() -> None:
    """Each name in the alert rules and the dashboard is a metric tickpipe registers."""
    expressions = monitoring_expressions()
    assert len(expressions) >= 30
    assert unexported(expressions, exported_names(in_process_metrics())) == {}


def test_a_metric_renamed_in_the_code_fails_the_check() -> None:
    """Renaming a metric in the services (here: in their /metrics text) makes the check name
    every alert and panel that still uses the old name."""
    renamed = in_process_metrics().replace("tickpipe_consumer_lag ", "tickpipe_consumer_lag_msgs ")
    renamed = renamed.replace("tickpipe_consumer_lag\n", "tickpipe_consumer_lag_msgs\n")
    assert "tickpipe_consumer_lag " not in renamed
    missing = unexported(monitoring_expressions(), exported_names(renamed))
    assert "alert TickpipeConsumerLagGrowing" in missing
    assert "panel Consumer lag / A" in missing
    assert set().union(*missing.values()) == {"tickpipe_consumer_lag"}


def test_a_metric_misspelled_in_a_rule_fails_the_check() -> None:
    """A typo in an expression (a name no service exports) is reported with its alert."""
    expressions = monitoring_expressions()
    expressions["alert TickpipeDeadLetters"] = expressions["alert TickpipeDeadLetters"].replace(
        "tickpipe_dlq_messages_total", "tickpipe_dlq_message_total"
    )
    missing = unexported(expressions, exported_names(in_process_metrics()))
    assert missing == {"alert TickpipeDeadLetters": {"tickpipe_dlq_message_total"}}


def test_alert_rules_cover_what_operators_must_hear_about() -> None:
    """No trades from a venue, growing lag, a dependency down, dead letters, WebSocket drops,
    latency over budget: each has a rule with a summary and a severity."""
    expressions = alert_expressions()
    for alert, metric in REQUIRED_ALERTS.items():
        assert metric in metric_names(expressions[alert]), alert
    for group in yaml.safe_load(ALERTS.read_text())["groups"]:
        for rule in group["rules"]:
            assert rule["labels"]["severity"] in {"warning", "critical"}, rule["alert"]
            assert rule["annotations"]["summary"], rule["alert"]
            assert rule["alert"] in (ROOT / "README.md").read_text(), "README explains it"


def test_no_trades_alert_is_per_venue() -> None:
    """The no-trades alert groups by exchange, so one silent venue fires while others trade."""
    assert "by (exchange)" in alert_expressions()["TickpipeNoTrades"]


def test_dashboard_shows_every_required_view() -> None:
    """Throughput per venue, lag, latency percentiles, batch size, flush time, outages, retries,
    WebSocket clients and drops, DLQ: each has a query on the dashboard."""
    used = set().union(*(metric_names(e) for e in dashboard_expressions().values()))
    for view, metric in DASHBOARD_METRICS.items():
        assert metric in used, view
    throughput = dashboard_expressions()["Trades per second by venue / A"]
    assert "by (exchange)" in throughput


def test_dashboard_queries_the_provisioned_datasource() -> None:
    """Every panel names the datasource uid that Grafana's provisioning creates."""
    provisioned = yaml.safe_load(
        (ROOT / "deploy/grafana/provisioning/datasources/prometheus.yml").read_text()
    )["datasources"]
    assert [source["type"] for source in provisioned] == ["prometheus"]
    uid = provisioned[0]["uid"]
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["uid"] == "tickpipe"
    for panel in dashboard["panels"]:
        if panel["type"] == "row":
            continue
        assert panel["datasource"]["uid"] == uid, panel["title"]
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == uid, panel["title"]
