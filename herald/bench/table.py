"""The human-readable form of `herald bench`'s result."""

from __future__ import annotations

from typing import Any

ROWS = (
    ("Herald end to end (into ClickHouse)", "events_per_s", "ratio", "cpu_s_per_million"),
    ("raw aiokafka + orjson (limit)", "baseline_events_per_s", None, "baseline_cpu_s_per_million"),
    ("naive Faust agent + table", "faust_naive_events_per_s", "faust_naive_ratio",
     "faust_naive_cpu_s_per_million"),
    ("Quix Streams tumbling count", "quix_events_per_s", "quix_ratio", "quix_cpu_s_per_million"),
)  # fmt: skip


def _cell(value: Any, fmt: str) -> str:
    return "-" if value is None else format(value, fmt)


def render(result: dict[str, Any]) -> str:
    lines = [f"{'':38} {'events/s':>10} {'vs raw':>8} {'CPU-s/1M':>9}"]
    for label, rate, ratio, cpu in ROWS:
        ratio_text = "1.000" if ratio is None else _cell(result.get(ratio), ".3f")
        lines.append(
            f"{label:38} {_cell(result.get(rate), ',.0f'):>10} {ratio_text:>8}"
            f" {_cell(result.get(cpu), '.1f'):>9}"
        )
    if result.get("quix_skipped"):
        lines.append(f"Quix Streams skipped: {result['quix_skipped']}")
    lines.append(
        f"freshness at {result['freshness_rate_events_per_s']:,} events/s"
        f" (produce -> broadcast_summary): p50 {result['freshness_p50_s']:.2f} s,"
        f" p99 {result['freshness_p99_s']:.2f} s ({result['freshness_samples']} batches)"
    )
    lines.append(
        "escalation freshness (failing deliveries -> open_escalations):"
        f" p50 {result['escalation_freshness_p50_s']:.2f} s,"
        f" p99 {result['escalation_freshness_p99_s']:.2f} s"
        f" ({result['escalation_freshness_samples']} outages)"
    )
    return "\n".join(lines)
