"""The Faust application: worker lifecycle, web, and Herald's batch services.

Roles: `worker` (ingest + aggregation shards, or one of them), `sink` (ClickHouse writer),
`run` (both, the embedded default: chDB allows one process per data directory, so the process
that writes it also answers `herald query` through the `/query` page of Faust's web server).
"""

from __future__ import annotations

import asyncio
import logging
import socket
from pathlib import Path
from typing import Any

import faust
import mode
import orjson
from aiokafka import AIOKafkaProducer
from faust.types.auth import CredentialsT
from prometheus_client import generate_latest

from herald.config import Settings
from herald.kafka import admin, clients, faust_transport
from herald.kafka.loop import LoopService
from herald.model import topics
from herald.processes import webtoken
from herald.processes.ingest_children import IngestProcesses
from herald.processes.query import Readers, report_here
from herald.sinks.service import ClickHouseWriter, SinkService
from herald.streams import escalate
from herald.streams.aggregate import ShardService, pack_rows
from herald.streams.ingest import IngestService
from herald.streams.publish import TransitionPublisher
from herald.telemetry import logs, metrics, outage
from herald.telemetry.stats import PipelineStats

log = logging.getLogger(__name__)
ROLES = {
    "worker": ("ingest", "shards"),
    "ingest": ("ingest",),
    "shards": ("shards",),
    "sink": ("sink",),
    "run": ("ingest", "shards", "sink"),
}
STATS_INTERVAL_S = 5.0
# The text exposition format (aiohttp takes the charset apart from the content type).
METRICS_CONTENT_TYPE = "text/plain; version=0.0.4"


class Pipeline(mode.Service):
    """Owns the shared producer and the batch services of this process's role."""

    def __init__(self, settings: Settings, role: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.settings = settings
        self.role = role
        self._producer: AIOKafkaProducer | None = None  # needs the running loop: made at start
        self.stats = PipelineStats(role)
        self.meter = metrics.Meter(role, self.parts(), settings.metrics_enabled)
        self.writer = ClickHouseWriter(settings.dsn) if "sink" in ROLES[role] else None
        self.loops: list[LoopService] = []
        self.children: IngestProcesses | None = None
        self.ready = asyncio.Event()  # set once topics exist and the schema is migrated

    @property
    def producer(self) -> AIOKafkaProducer:
        assert self._producer is not None, "producer used before the pipeline started"
        return self._producer

    def parts(self) -> tuple[str, ...]:
        """What runs in this process: `run` hands ingest to child processes if it has any."""
        if self.role == "run" and self.settings.ingest_children > 0:
            return ("shards", "sink")
        return ROLES[self.role]

    def _make_loops(self) -> list[LoopService]:
        common = {"settings": self.settings, "producer": self.producer, "stats": self.stats,
                  "meter": self.meter}  # fmt: skip
        loops: list[LoopService] = []
        parts = self.parts()
        if "ingest" in parts:
            loops.append(IngestService(**common, loop=self.loop, beacon=self.beacon))
        if "shards" in parts:
            loops.append(ShardService(**common, loop=self.loop, beacon=self.beacon))
        if escalating(self.settings, self.role):  # parts only ever drop ingest
            loops.append(TransitionPublisher(**common, loop=self.loop, beacon=self.beacon))
        if self.writer is not None:
            loops.append(SinkService(**common, writer=self.writer, loop=self.loop,
                                     beacon=self.beacon))  # fmt: skip
        return loops

    async def on_start(self) -> None:
        await admin.ensure_topics(self.settings, admin.herald_topics(self.settings))
        self._producer = clients.producer(self.settings)
        await self.producer.start()
        self.loops = self._make_loops()
        for loop_service in self.loops:
            await self.add_runtime_dependency(loop_service)
        if self.parts() != ROLES[self.role]:
            self.children = IngestProcesses(self.settings, loop=self.loop, beacon=self.beacon)
            await self.add_runtime_dependency(self.children)
        self.ready.set()

    async def on_stop(self) -> None:
        if self.children is not None:
            await self.children.stop()
        for loop_service in reversed(self.loops):
            await loop_service.stop()
        if self._producer is not None:
            await self._publish_stats()  # the last counts, for whichever sink runs next
            await self._producer.stop()
        if self.writer is not None:
            self.writer.close()

    @mode.Service.task
    async def _stats_timer(self) -> None:
        while not self.should_stop:
            await self.sleep(STATS_INTERVAL_S)
            await self._publish_stats()

    @mode.Service.task
    async def _outage_timer(self) -> None:
        while not self.should_stop:
            await self.sleep(1.0)
            outage.OUTAGE.report()

    def status(self) -> dict[str, Any]:
        """This process for `herald status`: role, counters, lag, last warnings, children."""
        children = self.children.web_ports() if self.children else []
        return {**metrics.status(self.meter), "role": self.role, "parts": list(self.parts()),
                "errors": list(logs.RECENT.lines), "children_web_ports": children}  # fmt: skip

    async def _publish_stats(self) -> None:
        rows = self.stats.take_rows()
        if rows:
            for message in pack_rows({"pipeline_stats_1m": rows}):
                await self.producer.send_and_wait(topics.AGGREGATES, message)


def app_id(settings: Settings, role: str) -> str:
    """The Faust app's id: its consumer group (not one of the batch services') and the prefix
    of its tables' changelog topics."""
    return f"{settings.group_prefix}-faust-{role}"


def topics_to_create(settings: Settings, role: str) -> dict[str, admin.TopicSpec]:
    """Herald's topics and, where the escalation agent runs, its table's changelog: made
    before Faust starts, whose own creation races its first write (the agent then crashes
    with PartitionsMismatch, seen here)."""
    specs = admin.herald_topics(settings)
    if escalating(settings, role):
        name = escalate.changelog_topic(app_id(settings, role))
        specs[name] = admin.TopicSpec(settings.shards, {"cleanup.policy": "compact"})
    return specs


def escalating(settings: Settings, role: str) -> bool:
    """Whether this role runs the escalation agent (with the shards, unless switched off)."""
    return "shards" in ROLES[role] and settings.escalations.enabled


def create_app(settings: Settings, role: str) -> faust.App:
    """A Faust app running Herald's `role` (worker, sink or run)."""
    (settings.data_path / "faust").mkdir(parents=True, exist_ok=True)
    app = faust_transport.App(  # its agent reads committed signals only
        app_id(settings, role),
        broker=f"kafka://{settings.kafka_bootstrap}",
        broker_credentials=_credentials(settings),
        datadir=str(settings.data_path / "faust" / f"{role}-{settings.web_port}"),
        # faust-streaming 0.15 has no rocksdict:// URL: rocksdb:// with the table option
        # driver=rocksdict (streams/escalate.py) runs on rocksdict.
        store="rocksdb://",
        web_port=settings.web_port,
        web_bind=settings.web_host,
        web_enabled=True,
        # Faust's own pages would show its tables' contents (escalation state) to anyone
        # reaching the port, token or not; Herald uses neither.
        web_router_enabled=False,
        web_tables_enabled=False,
        topic_replication_factor=1,
        # Static membership, as for Herald's own consumers: a restarted worker is back at once.
        consumer_group_instance_id=f"faust-{socket.gethostname()}-{settings.web_port}",
        broker_session_timeout=10,
    )
    pipeline = Pipeline(settings, role)
    app.service(pipeline)  # type: ignore[arg-type]  # Faust accepts instances too
    if escalating(settings, role):
        escalate.register(app, settings)
    _add_pages(app, pipeline)
    return app


def _credentials(settings: Settings) -> CredentialsT | None:
    """The security of Herald's own clients (`clients.connection`), as the Faust app takes it."""
    kwargs = clients.connection(settings)
    if "sasl_mechanism" in kwargs:
        return faust.SASLCredentials(
            username=kwargs["sasl_plain_username"],
            password=kwargs["sasl_plain_password"],
            mechanism=kwargs["sasl_mechanism"],
            ssl_context=kwargs.get("ssl_context"),  # None: SASL_PLAINTEXT
        )
    if "ssl_context" in kwargs:
        return faust.SSLCredentials(kwargs["ssl_context"])
    return None


def _add_pages(app: faust.App, pipeline: Pipeline) -> None:
    settings = pipeline.settings

    @app.page("/health")
    async def health(self: faust.web.View, request: faust.web.Request) -> faust.web.Response:
        return self.json({"role": pipeline.role, "ok": True})

    @app.page("/status")
    async def status(self: faust.web.View, request: faust.web.Request) -> faust.web.Response:
        return self.json(pipeline.status())

    if pipeline.meter.enabled:
        registry = metrics.registry(pipeline.meter)

        @app.page("/metrics")
        async def scrape(self: faust.web.View, request: faust.web.Request) -> faust.web.Response:
            if settings.web_token_metrics and not _authorized(settings, request):
                return _unauthorized(self)
            return self.bytes(generate_latest(registry), content_type=METRICS_CONTENT_TYPE)

    clients_for_reads = Readers(settings.dsn)

    class ClickHousePage(faust.web.View):
        """A POST answered by the process that holds ClickHouse (chDB: one per data dir),
        on a read-only client of its own (herald.sinks.readers); errors come back as one
        line. `?tenant=T` scopes the answer to tenant T."""

        async def post(self, request: faust.web.Request) -> faust.web.Response:
            if not _authorized(settings, request):
                return _unauthorized(self)
            if pipeline.writer is None:
                return self.error(404, "this process does not hold ClickHouse")
            await pipeline.ready.wait()
            body = (await self.read_request_content(request)).decode()
            try:
                return await self.answer(body, request.query.get("tenant"))
            except Exception as exc:  # the caller's SQL, tenant or path was wrong
                return self.bytes(orjson.dumps({"error": str(exc).splitlines()[0]}), status=400)

        async def answer(self, body: str, tenant: str | None) -> faust.web.Response:
            raise NotImplementedError

    @app.page("/query")
    class Query(ClickHousePage):
        """POST SQL, get ClickHouse's answer in the format the SQL names."""

        async def answer(self, body: str, tenant: str | None) -> faust.web.Response:
            result = await asyncio.to_thread(clients_for_reads.answer, body, tenant)
            return self.bytes(result, content_type="application/octet-stream")

    @app.page("/report")
    class Report(ClickHousePage):
        """POST an output path: this process writes the HTML report there."""

        async def answer(self, body: str, tenant: str | None) -> faust.web.Response:
            written = await asyncio.to_thread(report_here, settings.dsn, Path(body), tenant)
            return self.json({"path": str(written)})


def _authorized(settings: Settings, request: faust.web.Request) -> bool:
    return webtoken.authorized(settings, request.headers.get("Authorization"))


def _unauthorized(view: faust.web.View) -> faust.web.Response:
    return view.error(401, webtoken.REFUSED, headers={"WWW-Authenticate": "Bearer"})
