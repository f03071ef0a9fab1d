"""Kafka topic names (SPEC §2, §3) and the internal ones Herald adds."""

BROADCASTS = "broadcasts"
DELIVERIES = "deliveries"
ACKS = "acks"
INPUT_TOPICS = (BROADCASTS, DELIVERIES, ACKS)

INVALID = "herald.invalid"
RETRIES = "herald.retries"
DEADLETTER = "herald.deadletter"
ESCALATIONS = "herald.escalations"
AGGREGATES = "herald.aggregates"

# Internal: valid events re-keyed by (tenant, broadcast), packed many to a message.
EVENTS = "herald.events"
# Internal: per-shard state changes, one message per applied batch (see docs/architecture.md).
CHANGELOG = "herald.changelog"
# Internal: what the shards tell the escalation agents (per-second counts and clocks).
SIGNALS = "herald.signals"
# Internal: escalation transitions as the Faust agent computes them (at least once), and the
# changelog of the publisher that passes each on once (streams/publish.py).
TRANSITIONS = "herald.transitions"
PUBLISHED = "herald.published"
