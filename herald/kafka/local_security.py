"""The local broker's SASL_SSL listener: its TLS certificates and its SCRAM logins.

`herald kafka start` with HERALD_KAFKA_SECURITY_PROTOCOL=SASL_SSL (and a SCRAM mechanism,
user and password) starts the broker with one SASL_SSL listener for clients and the broker
itself (it connects to itself, e.g. to verify a transaction's partitions), and no plain-text
listener but the controller's (SCRAM credentials live in the metadata KRaft controllers
serve: Kafka does not take SCRAM on a controller listener).

Under `<data_dir>/kafka/tls/`, made once and kept across restarts: a CA (`ca.pem`, the file
clients name in HERALD_KAFKA_SSL_CAFILE) and the broker's key and certificate for 127.0.0.1
and localhost (`broker.pem`, readable by its owner only). Kafka stores the SCRAM credentials
itself, at format time (StorageTool `--add-scram`): Herald's user from the settings, and the
broker's own user, whose random password is in `tls/broker.secret`.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from pydantic import SecretStr

from herald.config import Settings
from herald.errors import HeraldError

SCRAM = ("SCRAM-SHA-256", "SCRAM-SHA-512")
BROKER_USER = "herald-broker"
LISTENER = "SASL_SSL"
CERT_DAYS = 3650


@dataclass(frozen=True)
class Login:
    """A SCRAM user of the local broker (the password prints as stars)."""

    mechanism: str
    username: str
    password: SecretStr


def login_of(settings: Settings) -> Login | None:
    """The login the local broker must accept, None for a plain-text broker; a one-line
    error for security the local broker does not offer."""
    protocol = settings.kafka_security_protocol
    if protocol == "PLAINTEXT":
        return None
    mechanism = settings.kafka_sasl_mechanism
    if protocol != LISTENER or mechanism not in SCRAM:
        raise HeraldError(
            f"the local broker runs PLAINTEXT or SASL_SSL with {' or '.join(SCRAM)}, "
            f"not {protocol} {mechanism or ''}".rstrip()
        )
    password = settings.sasl_password
    assert settings.kafka_sasl_username and password  # required with SASL (config.py)
    return Login(mechanism, settings.kafka_sasl_username, password)


def tls_dir(kdir: Path) -> Path:
    return kdir / "tls"


def ca_file(kdir: Path) -> Path:
    """The CA clients of this broker trust (HERALD_KAFKA_SSL_CAFILE)."""
    return tls_dir(kdir) / "ca.pem"


def ensure_certificates(kdir: Path) -> None:
    """Make the CA and the broker's key and certificate, unless they are there."""
    tls = tls_dir(kdir)
    broker_file = tls / "broker.pem"
    if ca_file(kdir).is_file() and broker_file.is_file():
        return
    tls.mkdir(mode=0o700, parents=True, exist_ok=True)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Herald local Kafka CA")])
    ca = (
        _certificate(ca_name, ca_name, ca_key.public_key())
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    hosts = [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
    broker_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    cert = (
        _certificate(broker_name, ca_name, key.public_key())
        .add_extension(x509.SubjectAlternativeName(hosts), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    # Kafka's PEM key store: an unencrypted PKCS#8 key, then the certificate chain.
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    ca_pem = ca.public_bytes(serialization.Encoding.PEM)
    write_private(broker_file, key_pem + cert.public_bytes(serialization.Encoding.PEM) + ca_pem)
    ca_file(kdir).write_bytes(ca_pem)


def broker_login(kdir: Path, mechanism: str) -> Login:
    """The broker's own SCRAM user (it connects to itself: KIP-890's check of a transaction's
    partitions fails without it), its password made once."""
    secret = tls_dir(kdir) / "broker.secret"
    if not secret.is_file():
        tls_dir(kdir).mkdir(mode=0o700, parents=True, exist_ok=True)
        write_private(secret, secrets.token_urlsafe(24).encode())
    return Login(mechanism, BROKER_USER, SecretStr(secret.read_text().strip()))


def scram_arguments(logins: list[Login]) -> list[str]:
    """StorageTool `format` arguments that store these SCRAM credentials."""
    args = []
    for login in logins:
        password = login.password.get_secret_value()
        # StorageTool's [name=...,password=...] has no quoting Herald relies on.
        if any(c in login.username + password for c in ",]\"\n"):
            raise HeraldError("the local broker cannot store a SASL user or password holding"
                              " , ] \" or a line break")  # fmt: skip
        args += ["--add-scram", f"{login.mechanism}=[name={login.username},password={password}]"]
    return args


def listener_properties(kdir: Path, broker: Login) -> dict[str, str]:
    """server.properties entries of the SASL_SSL listener (the broker's password is in
    server.properties, written readable by its owner only)."""
    tls = tls_dir(kdir)
    prefix = f"listener.name.{LISTENER.lower()}.{broker.mechanism.lower()}"
    jaas = (
        "org.apache.kafka.common.security.scram.ScramLoginModule required "
        f'username="{broker.username}" password="{broker.password.get_secret_value()}";'
    )
    return {
        "sasl.enabled.mechanisms": broker.mechanism,
        "sasl.mechanism.inter.broker.protocol": broker.mechanism,
        f"{prefix}.sasl.jaas.config": jaas,
        "ssl.keystore.type": "PEM",
        "ssl.keystore.location": str(tls / "broker.pem"),
        "ssl.truststore.type": "PEM",
        "ssl.truststore.location": str(ca_file(kdir)),
        "ssl.endpoint.identification.algorithm": "https",
    }


def client_settings(bootstrap: str, login: Login | None, ca_file: Path | None) -> Settings:
    """Settings for Herald's own checks of the local broker (is it up, does it answer)."""
    if login is None:
        # Plain text, whatever security the environment configures for Herald's clients.
        return Settings(kafka_bootstrap=bootstrap, kafka_security_protocol="PLAINTEXT",
                        kafka_sasl_mechanism=None, kafka_sasl_username=None,
                        kafka_sasl_password=None, kafka_sasl_password_file=None)  # fmt: skip
    return Settings(kafka_bootstrap=bootstrap, kafka_security_protocol=LISTENER,
                    kafka_sasl_mechanism=login.mechanism, kafka_sasl_username=login.username,
                    kafka_sasl_password=login.password, kafka_sasl_password_file=None,
                    kafka_ssl_cafile=ca_file)  # fmt: skip


def _certificate(
    subject: x509.Name, issuer: x509.Name, public_key: ec.EllipticCurvePublicKey
) -> x509.CertificateBuilder:
    now = datetime.datetime.now(datetime.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=CERT_DAYS))
    )


def write_private(path: Path, data: bytes) -> None:
    """Write a file only its owner can read (created so, never readable by others)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
