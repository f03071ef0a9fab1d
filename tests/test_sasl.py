"""SASL_SSL on the local broker (SCRAM-SHA-512, TLS with a CA of its own), for real.

One broker for the module, started by `herald kafka start` with the password in a file. Herald
runs end to end over it with exact totals; clients without credentials or with a wrong password
are refused, Herald saying why in one line; the password shows in no log, output or error.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaConnectionError
from aiokafka.helpers import create_ssl_context
from pydantic import SecretStr

from herald.config import Settings
from herald.errors import HeraldError
from herald.kafka import admin, clients, local_broker, local_security
from herald.kafka.jars import kafka_version
from herald.kafka.local_security import Login, tls_dir
from herald.load.produce import produce_events
from herald.load.simulate import Scenario, generate
from herald.load.totals import expected_totals
from tests.e2e import assert_exact
from tests.harness import Herald

USER = "herald"
MECHANISM = "SCRAM-SHA-512"


@dataclass(frozen=True)
class SecureBroker:
    data_dir: Path
    port: int
    password: str
    password_file: Path
    started: str  # what `herald kafka start` printed

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def ca_file(self) -> Path:
        return local_security.ca_file(self.data_dir / "kafka")

    def login(self, **overrides: Any) -> dict[str, str]:
        """Herald's settings for this broker (lower-case names, as Herald() takes them)."""
        return {"kafka_bootstrap": self.bootstrap, "kafka_port": str(self.port),
                "kafka_security_protocol": "SASL_SSL", "kafka_sasl_mechanism": MECHANISM,
                "kafka_sasl_username": USER, "kafka_sasl_password_file": str(self.password_file),
                "kafka_ssl_cafile": str(self.ca_file), **overrides}  # fmt: skip

    def settings(self) -> Settings:
        return Settings.model_validate(self.login())


def herald_cli(
    *args: str, timeout_s: float = 60, **settings: str
) -> subprocess.CompletedProcess[str]:
    """Run `herald ARGS` with these settings, an empty one left unset (and no HERALD_* from
    the test's environment)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("HERALD_")}
    env.update({f"HERALD_{k.upper()}": v for k, v in settings.items() if v})
    return subprocess.run([sys.executable, "-m", "herald", *args], env=env, capture_output=True,
                          text=True, timeout=timeout_s)  # fmt: skip


def assert_no_secret(password: str, *texts: str) -> None:
    for text in texts:
        assert password not in text


@pytest.fixture(scope="module")
def secure(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecureBroker]:
    work = tmp_path_factory.mktemp("sasl")
    password = f"pw-{secrets.token_hex(16)}"
    password_file = work / "kafka-password"
    password_file.write_text(password + "\n")  # as `echo` or a mounted secret writes it
    port = local_broker.free_port()
    broker = SecureBroker(work / "data", port, password, password_file, started="")
    done = herald_cli("kafka", "start", timeout_s=120, data_dir=str(broker.data_dir),
                      **broker.login())  # fmt: skip
    try:
        assert done.returncode == 0, done.stderr
        yield replace(broker, started=done.stdout + done.stderr)
    finally:
        local_broker.stop(broker.data_dir)


def test_start_says_how_to_reach_it_and_keeps_secrets_off_disk(secure: SecureBroker) -> None:
    assert f"Kafka started at {secure.bootstrap} (SASL_SSL, CA {secure.ca_file})" in secure.started
    kdir = secure.data_dir / "kafka"
    # Readable by its owner only: the broker's key, its password, server.properties.
    for private in (tls_dir(kdir) / "broker.pem", tls_dir(kdir) / "broker.secret",
                    kdir / "server.properties"):  # fmt: skip
        assert private.stat().st_mode & 0o077 == 0, private
    # Kafka stores salted SCRAM hashes: the password is in no file of the broker's.
    for path in kdir.rglob("*"):
        if path.is_file():
            assert secure.password.encode() not in path.read_bytes(), path
    assert_no_secret(secure.password, secure.started)


@pytest.mark.slow
def test_herald_runs_end_to_end_over_sasl_ssl(secure: SecureBroker, tmp_path: Path) -> None:
    messages = generate(Scenario(seed=23, broadcasts=6, users_per_broadcast=80, invalid=10))
    totals = expected_totals(messages)
    settings = secure.settings()
    asyncio.run(admin.ensure_topics(settings, admin.herald_topics(settings)))
    asyncio.run(produce_events(settings, messages))  # Herald's producer, over SASL_SSL
    # Ingest in the process itself: an ingest child's start doubled this test's time on the
    # loaded 2 cores (88 s against 24 s); it reads the same settings from the same env.
    herald = Herald(tmp_path / "h", secure.bootstrap, ingest_processes=0, **secure.login())
    herald.start()
    try:
        assert_exact(herald, totals)
        status = herald_cli("status", web_port=str(herald.settings.web_port), **secure.login())
        assert status.returncode == 0, status.stderr
        assert "shards,sink" in status.stdout
    finally:
        herald.stop()
    assert_no_secret(secure.password, herald.log_path.read_text(), status.stdout, status.stderr,
                     (secure.data_dir / "kafka" / "server.log").read_text())  # fmt: skip


async def test_clients_without_the_login_are_refused(secure: SecureBroker) -> None:
    tls = create_ssl_context(cafile=str(secure.ca_file))
    attempts: dict[str, dict[str, Any]] = {
        "no TLS, no login": {},
        "TLS, no login": {"security_protocol": "SSL", "ssl_context": tls},
        "a wrong password": {
            "security_protocol": "SASL_SSL", "ssl_context": tls, "sasl_mechanism": MECHANISM,
            "sasl_plain_username": USER, "sasl_plain_password": "not-the-password",
        },
    }  # fmt: skip
    outcome = {}
    for what, kwargs in attempts.items():
        producer = AIOKafkaProducer(bootstrap_servers=secure.bootstrap, **kwargs)
        try:
            await producer.start()
            outcome[what] = "accepted"
        except KafkaConnectionError as exc:
            outcome[what] = "refused" if "Unable to bootstrap" in str(exc) else str(exc)
        finally:
            await producer.stop()
    assert outcome == dict.fromkeys(attempts, "refused")
    await admin.ensure_topics(secure.settings(), {"sasl-check": admin.TopicSpec(1)})
    async with AIOKafkaProducer(bootstrap_servers=secure.bootstrap, security_protocol="SASL_SSL",
                                ssl_context=tls, sasl_mechanism=MECHANISM,
                                sasl_plain_username=USER,
                                sasl_plain_password=secure.password) as producer:  # fmt: skip
        await producer.send_and_wait("sasl-check", b"the login works")


def test_a_misconfigured_herald_says_why_in_one_line(secure: SecureBroker, tmp_path: Path) -> None:
    """`herald run`, Herald's longest start, fails fast and in one line for each mistake."""
    where = f"Kafka at {secure.bootstrap}"
    cases = {
        "a wrong password": (
            {"kafka_sasl_password_file": "", "kafka_sasl_password": "wrong-password"}, 1,
            f"herald: {where} refused the {MECHANISM} login of user 'herald': Authentication"
            f" failed during authentication due to invalid credentials with SASL mechanism"
            f" {MECHANISM}",
        ),
        "no password": (
            {"kafka_sasl_password_file": ""}, 2,
            "herald: config: SASL_SSL needs HERALD_KAFKA_SASL_PASSWORD",
        ),
        "no SASL, no TLS": (
            {"kafka_security_protocol": "PLAINTEXT", "connect_timeout_s": "2"}, 1,
            f"herald: {where} is unreachable: {secure.bootstrap} closed the connection (does its"
            " listener expect TLS? HERALD_KAFKA_SECURITY_PROTOCOL is PLAINTEXT)",
        ),
        "a CA that did not sign the broker's certificate": (
            {"kafka_ssl_cafile": ""}, 1,
            f"herald: TLS with {where} failed: CERTIFICATE_VERIFY_FAILED (HERALD_KAFKA_SSL_CAFILE"
            " names the CA that signed its certificate)",
        ),
    }  # fmt: skip
    for what, (overrides, code, line) in cases.items():
        done = herald_cli("run", data_dir=str(tmp_path / "h"), **secure.login(**overrides))
        assert (done.returncode, done.stdout, done.stderr) == (code, "", line + "\n"), what
        assert_no_secret(secure.password, done.stderr)
        assert_no_secret("wrong-password", done.stderr)


def test_kafka_status_never_shows_the_password(secure: SecureBroker) -> None:
    status = herald_cli("kafka", "status", data_dir=str(secure.data_dir), **secure.login())
    assert status.stdout.startswith(
        f"Kafka {kafka_version()} is running at {secure.bootstrap} (SASL_SSL)"
    )
    refused = herald_cli("kafka", "status", data_dir=str(secure.data_dir),
                         **secure.login(kafka_sasl_password_file="", kafka_sasl_password="x"))
    assert "refused the SCRAM-SHA-512 login of user 'herald'" in refused.stdout
    assert_no_secret(secure.password, status.stdout, status.stderr, refused.stdout)


def test_a_storage_formatted_without_the_user_is_one_line(tmp_path: Path) -> None:
    meta = tmp_path / "kafka" / "data" / "meta.properties"
    meta.parent.mkdir(parents=True)
    meta.write_text("version=1\nnode.id=1\ncluster.id=AAAAAAAAAAAAAAAAAAAAAA\n")
    login = Login(MECHANISM, USER, SecretStr("a-password"))
    with pytest.raises(HeraldError, match=r"^the Kafka storage in .* was formatted without a "
                       "SCRAM user 'herald': stop the broker and delete that directory"):
        local_broker.start(tmp_path, port=local_broker.free_port(), login=login)


def test_a_password_the_format_tool_cannot_take_is_one_line_without_it() -> None:
    login = Login(MECHANISM, USER, SecretStr("a,b]c-secret"))
    with pytest.raises(HeraldError) as refused:
        local_security.scram_arguments([login])
    assert str(refused.value) == ("the local broker cannot store a SASL user or password holding"
                                  ' , ] " or a line break')  # fmt: skip


@pytest.mark.slow
def test_a_restart_keeps_the_ca_and_the_logins(secure: SecureBroker) -> None:
    """Last in this module: it restarts the module's broker. Clients keep trusting the CA they
    were given, and both SCRAM users still log in: Herald's, and the broker's own, which it
    uses to reach itself (e.g. to check a transaction's partitions, KIP-890)."""
    ca_before = secure.ca_file.read_bytes()
    args = {"data_dir": str(secure.data_dir), **secure.login()}
    assert herald_cli("kafka", "stop", **args).stdout == "Kafka stopped\n"
    started = herald_cli("kafka", "start", timeout_s=120, **args)
    assert f"Kafka started at {secure.bootstrap} (SASL_SSL, CA {secure.ca_file})" in started.stdout
    assert secure.ca_file.read_bytes() == ca_before

    async def transaction() -> None:
        settings = secure.settings()
        await admin.ensure_topics(settings, {"sasl-check": admin.TopicSpec(1)})
        producer = clients.producer(settings, transactional_id="restart-check")
        await producer.start()
        try:
            async with producer.transaction():
                await producer.send_and_wait("sasl-check", b"after the restart")
        finally:
            await producer.stop()

    asyncio.run(transaction())
    # The log of this start only (the previous one is server.log.1).
    log = (secure.data_dir / "kafka" / "server.log").read_text()
    assert "failed authentication" not in log.lower(), "the broker could not log in to itself"
