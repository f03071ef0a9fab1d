"""Herald's metrics exposition, read back with prometheus-client's own parser."""

from __future__ import annotations

from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from herald.streams.validate import reason
from herald.telemetry import metrics
from herald.telemetry.metrics import Meter


def scrape(meter: Meter) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    text = generate_latest(metrics.registry(meter)).decode()
    samples: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = sample.value
    return samples


def test_counters_histograms_and_gauges_as_prometheus_reads_them() -> None:
    meter = Meter("run", ("shards", "sink"))
    meter.count(metrics.EVENTS_IN, 20000, "deliveries")
    meter.count(metrics.EVENTS_IN, 5, "deliveries")
    meter.count(metrics.INVALID, 1, "acks", "not_json")
    meter.observe(metrics.BATCH_SECONDS, 0.03, "shards")
    meter.observe(metrics.BATCH_SECONDS, 3.0, "shards")
    meter.set(metrics.LAG, 7, "sink", "herald.aggregates", "2")
    meter.read_at_scrape(metrics.STATE_KEYS, lambda: {("1",): 1234})
    got = scrape(meter)
    assert got["herald_events_in_total"] == {(("topic", "deliveries"),): 20005}
    assert got["herald_invalid_events_total"] == {(("reason", "not_json"), ("topic", "acks")): 1}
    buckets = got["herald_batch_seconds_bucket"]
    assert buckets[(("le", "0.025"), ("stage", "shards"))] == 0
    assert buckets[(("le", "0.05"), ("stage", "shards"))] == 1
    assert buckets[(("le", "+Inf"), ("stage", "shards"))] == 2
    assert got["herald_batch_seconds_sum"][(("stage", "shards"),)] == 3.03
    assert got["herald_consumer_lag_records"] == {
        (("partition", "2"), ("stage", "sink"), ("topic", "herald.aggregates")): 7
    }
    assert got["herald_state_keys"] == {(("shard", "1"),): 1234}
    assert got["herald_process_info"] == {(("parts", "shards,sink"), ("role", "run")): 1}
    assert got["process_cpu_seconds_total"][()] > 0
    assert got["process_resident_memory_bytes"][()] > 0


def test_a_revoked_partition_has_no_lag_here_any_more() -> None:
    meter = Meter("worker")
    meter.set(metrics.LAG, 3, "ingest", "acks", "0")
    meter.set(metrics.LAG, 4, "ingest", "acks", "1")
    meter.forget(metrics.LAG, lambda labels: labels != ("ingest", "acks", "0"))
    assert scrape(meter)["herald_consumer_lag_records"] == {
        (("partition", "1"), ("stage", "ingest"), ("topic", "acks")): 4
    }


def test_switched_off_nothing_is_kept() -> None:
    meter = Meter("run", enabled=False)
    meter.count(metrics.EVENTS_IN, 10, "acks")
    meter.observe(metrics.BATCH_SECONDS, 1.0, "ingest")
    assert not meter.values and not meter.histograms


def test_invalid_reasons_are_a_few_labels_whatever_the_input() -> None:
    assert reason("missing field 'tenant_id'") == "missing_field"
    assert reason("field 'channel': must be one of ... (got 'fax')") == "bad_field"
    assert reason("field 'schema_version': unsupported version 9") == "unsupported_version"
    assert reason("not valid UTF-8 JSON: unexpected character") == "not_json"
    assert reason("occurred_at: 2030-01-01T00:00:00Z is 9 s ahead of the wall clock") == (
        "from_the_future"
    )
    assert reason("anything a future check says") == "other"
