"""Latency histograms (HdrHistogram, microseconds) and their percentiles."""

from __future__ import annotations

from hdrh.histogram import HdrHistogram

PERCENTILES = (50.0, 99.0, 99.9)
MAX_LATENCY_US = 60_000_000


def new_histogram() -> HdrHistogram:
    """1 us .. 60 s, 3 significant digits."""
    return HdrHistogram(1, MAX_LATENCY_US, 3)


def record_us(histogram: HdrHistogram, latency_us: float) -> None:
    histogram.record_value(min(max(int(latency_us), 1), MAX_LATENCY_US))


def percentiles_ms(histogram: HdrHistogram) -> dict[str, float]:
    """`p50`, `p99`, `p99.9` (and `max`, `count`) in milliseconds."""
    result = {f"p{p:g}": histogram.get_value_at_percentile(p) / 1000 for p in PERCENTILES}
    result["max"] = histogram.get_max_value() / 1000
    result["count"] = float(histogram.get_total_count())
    return result
