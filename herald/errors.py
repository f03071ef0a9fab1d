"""Errors a user can act on: the CLI prints them as one line, never a traceback."""


class HeraldError(Exception):
    """A failure with a message that says what is wrong and what to do."""


class ServiceUnavailable(HeraldError):
    """Kafka or ClickHouse cannot be reached (callers retry with backoff)."""


class BadInput(HeraldError):
    """A command's arguments are wrong: exit code 2, as for usage errors."""
