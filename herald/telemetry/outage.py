"""Kafka going away, in two readable lines instead of thousands.

aiokafka logs every failed reconnect, metadata refresh, fetch and heartbeat at ERROR: with the
broker SIGKILLed, a worker wrote 5 000 such lines in 15 s here, and every client retries by
itself anyway. `OUTAGE` holds those records back and counts them; `report()`, called about
once a second, says once that Kafka is unreachable and once that it answers again.
"""

from __future__ import annotations

import logging
import time

log = logging.getLogger("herald.kafka")
# What aiokafka repeats while it cannot reach a broker (its own wording): these start an
# outage. Its group messages (coordinator, heartbeats) are held back only during one: alone,
# as when a fresh broker has no coordinator yet, they are shown.
UNREACHABLE = (
    "Unable connect to",
    "Unable to update metadata",
    "Failed fetch messages",
    "Failed fetch offsets",
    "Cannot send",
    "Could not send",
)
CONNECTION_NOISE = (
    *UNREACHABLE,
    "Group Coordinator Request failed",
    "FindCoordinator Request failed",
    "Heartbeat session expired",
    "Heartbeat send request failed",
    "Error sending",
)
# A group message that names one of these is about reaching the broker too (the first line
# after a SIGKILL of the broker was "Error sending OffsetCommitRequest to node 1
# [KafkaConnectionError: Connection at 127.0.0.1:34183 closed]").
CONNECTION_CAUSES = ("KafkaConnectionError", "NodeNotReadyError", "[Errno")
QUIET_S = 3.0  # this long without such a record, and Kafka counts as back


class KafkaOutage(logging.Filter):
    """A filter for aiokafka's loggers: drops (and counts) its connection errors."""

    def __init__(self, quiet_s: float = QUIET_S) -> None:
        super().__init__()
        self.quiet_s = quiet_s
        self.held = 0  # since the outage began
        self.first_held = self.last_held = 0.0
        self.cause = ""
        self.reported = False

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if record.levelno < logging.WARNING or not message.startswith(CONNECTION_NOISE):
            return True
        if not self._unreachable(message) and not self._in_outage():
            return True
        self.last_held = time.monotonic()
        if not self.held:
            self.first_held = self.last_held
        self.held += 1
        # "Unable connect to node 1: [Errno 111] Connection refused" says why; the others
        # ("Unable to update metadata from [1]") only that something failed.
        if not self.cause or message.startswith("Unable connect to"):
            self.cause = message.strip()
        return False

    @staticmethod
    def _unreachable(message: str) -> bool:
        return message.startswith(UNREACHABLE) or any(c in message for c in CONNECTION_CAUSES)

    def _in_outage(self) -> bool:
        return self.held > 0 and time.monotonic() - self.last_held < self.quiet_s

    def report(self) -> None:
        """One line when held records begin, one once none came for `quiet_s`."""
        if not self.reported and self.held:
            self.reported = True
            log.warning("Kafka is unreachable (%s): the clients retry by themselves and "
                        "Herald resumes where it was", self.cause)  # fmt: skip
        elif self.reported and time.monotonic() - self.last_held >= self.quiet_s:
            log.warning("Kafka answers again after %.0f s (%d client errors held back)",
                        self.last_held - self.first_held, self.held)  # fmt: skip
            self.reported, self.held, self.cause = False, 0, ""


OUTAGE = KafkaOutage()  # one per process: the aiokafka loggers are too


def install() -> None:
    """Put OUTAGE on every aiokafka logger (a logger's filters see only its own records)."""
    for name in list(logging.root.manager.loggerDict):
        if name == "aiokafka" or name.startswith("aiokafka."):
            logging.getLogger(name).addFilter(OUTAGE)
