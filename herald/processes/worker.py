"""Start a Faust worker for one of Herald's roles, after checking its services answer."""

from __future__ import annotations

import asyncio
import gc
import itertools
import logging
import os
import time
from contextlib import suppress
from pathlib import Path
from typing import Any

import faust
import mode.loop

from herald.config import Settings
from herald.errors import HeraldError, ServiceUnavailable
from herald.kafka import admin
from herald.kafka.loop import RETRY_S
from herald.processes.app import ROLES, create_app, topics_to_create
from herald.sinks import clickhouse, migrations
from herald.telemetry import logs, outage

log = logging.getLogger(__name__)
YOUNG_PASS_EVERY = 50_000  # containers allocated and still alive (CPython's default: 700)


class HeraldWorker(faust.Worker):
    """Faust's worker, with Herald's log format put on the handlers Faust sets up."""

    def __init__(self, app: faust.App, settings: Settings, role: str, **kwargs: Any) -> None:
        super().__init__(app, **kwargs)
        self.herald_settings, self.role = settings, role
        if not self.stdout.isatty():  # its cursor escapes would break a log file's lines
            self.spinner = None

    async def on_startup_finished(self) -> None:
        await super().on_startup_finished()
        # What start-up built (modules, Faust's services, the loaded state) lives as long as
        # the process: out of the cycle collector's way, whose full passes otherwise walk it
        # again and again while the hot path allocates (see docs/architecture.md, Measurements).
        gc.freeze()
        # A batch keeps tens of thousands of containers alive while it is applied: at the
        # default (a young pass every 700 more of them) each batch's are walked many times
        # over and promoted, and full passes follow. Young passes every YOUNG_PASS_EVERY
        # walk a batch about once; garbage cycles still die young, a few seconds apart.
        gc.set_threshold(YOUNG_PASS_EVERY, *gc.get_threshold()[1:])

    def on_setup_root_logger(self, logger: logging.Logger, level: int) -> None:
        super().on_setup_root_logger(logger, level)
        logs.install(logger, self.herald_settings.log_format, self.role)
        outage.install()


def preflight(settings: Settings, role: str) -> None:
    """Fail with one line now, rather than with a traceback from inside the worker."""
    for where in ("", "state", "faust"):
        check_writable(settings.data_path / where)
    asyncio.run(admin.wait_for_broker(settings, settings.connect_timeout_s))
    # Faust subscribes its agents at start: their topics must exist by then.
    asyncio.run(admin.ensure_topics(settings, topics_to_create(settings, role)))
    if "sink" in ROLES[role]:
        prepare_clickhouse(settings)


def check_writable(directory: Path) -> None:
    """Shard state, Faust's tables and chDB are written under the data dir: a read-only or full
    disk there would otherwise fail later, inside a service, with a traceback."""
    probe = directory / ".herald-write-check"
    try:
        directory.mkdir(parents=True, exist_ok=True)
        with probe.open("wb") as handle:
            handle.write(bytes(4096))  # a block: an empty file takes no space on a full disk
            handle.flush()
            os.fsync(handle.fileno())
        probe.unlink()
    except OSError as exc:
        with suppress(OSError):  # left half-written by a full disk
            probe.unlink(missing_ok=True)
        raise HeraldError(
            f"cannot write to {directory} (HERALD_DATA_DIR or under it): {exc.strerror}"
        ) from exc


def prepare_clickhouse(settings: Settings) -> None:
    """A sink has nothing to do without ClickHouse and its schema, and a server may come up
    after it: wait, one line per try, with backoff, then migrate. Nothing is consumed
    meanwhile, so nothing is committed. Any other problem (a bad DSN, wrong credentials, a
    step the server refuses) fails at once, in one line."""
    for attempt in itertools.count():
        try:
            client = clickhouse.connect(settings.dsn)
            try:
                migrations.migrate(client, settings.raw_ttl_days,
                                   settings.escalations.tenant_quota.quotas)  # fmt: skip
            finally:
                client.close()
            return
        except ServiceUnavailable as exc:
            delay = RETRY_S[min(attempt, len(RETRY_S) - 1)]
            log.warning("sink: %s; retrying in %ss", exc, delay)
            time.sleep(delay)  # the backoff between two tries, before any service runs


def run_worker(settings: Settings, role: str, loglevel: str = "warn") -> None:
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(message)s")
    preflight(settings, role)
    # uvloop's event loop is Faust's documented option; here it cut CPU per event by ~12 %.
    mode.loop.use("uvloop")
    # Faust warns whenever its producer buffer holds over 100 messages, then flushes it: the
    # escalation table's changelog writes reach that in normal operation.
    logging.getLogger("faust.transport.producer").setLevel(logging.ERROR)
    app = create_app(settings, role)
    HeraldWorker(app, settings, role, loglevel=loglevel, quiet=True).execute_from_commandline()
