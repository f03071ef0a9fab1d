"""The config file is checked strictly (SPEC §5, §7): an unknown rule, channel or key, a value
of the wrong type or out of range, or inverted hysteresis fails at start with one line that
names the key; a valid override takes effect and leaves the other defaults alone."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from herald import config
from herald.errors import HeraldError

BAD = {
    "[escalations.region_failure_rat]\nopen_above = 0.3": "escalations.region_failure_rat",
    '[escalations.region_failure_rate]\nopen_above = "high"': "region_failure_rate.open_above",
    "[escalations.region_failure_rate]\nopen_above = 2": "region_failure_rate.open_above",
    "[escalations.dead_letter_spike]\nopen_at = true": "dead_letter_spike.open_at",
    "[escalations.pending_backlog]\nolder_than_s = 0": "pending_backlog.older_than_s",
    "[escalations.region_failure_rate]\nresolve_below = 0.5": "region_failure_rate",
    "[escalations.region_failure_rate]\nthreshold = 0.5": "region_failure_rate.threshold",
    "[escalations.tenant_quota.quotas]\nacme = -1": "tenant_quota.quotas",
    "[retry.fax]\nbase_s = 1\ncap_s = 2\nmax_attempts = 1": "unknown channel 'fax'",
    "[retry.push]\nbase_s = 1\ncap_s = 2": "retry.push.max_attempts",
    "grace = 5": "unknown key 'grace'",
}


def load(tmp_path: Path, text: str, monkeypatch: pytest.MonkeyPatch) -> config.Settings:
    path = tmp_path / "herald.toml"
    path.write_text(text + "\n")
    monkeypatch.setenv("HERALD_CONFIG", str(path))
    return config.load()


@pytest.mark.parametrize(("text", "named"), BAD.items(), ids=list(BAD.values()))
def test_a_bad_config_file_fails_naming_the_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, text: str, named: str
) -> None:
    with pytest.raises(HeraldError) as failed:
        load(tmp_path, text, monkeypatch)
    message = str(failed.value)
    assert named in message and "\n" not in message


def test_an_override_changes_only_what_it_names(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    text = "[escalations.region_failure_rate]\nopen_above = 0.3\n[retry.push]\nbase_s = 10\n" \
           "cap_s = 60\nmax_attempts = 3"  # fmt: skip
    settings = load(tmp_path, text, monkeypatch)
    assert settings.escalations.region_failure_rate.open_above == 0.3
    assert settings.escalations.region_failure_rate.min_attempts == 50
    assert settings.retry["push"].max_attempts == 3
    assert settings.retry["sms"] == config.DEFAULT_RETRY["sms"]


def test_the_command_line_says_it_in_one_line(tmp_path: Path) -> None:
    path = tmp_path / "herald.toml"
    path.write_text("[escalations.critical_unread]\nratio = 1.5\n")
    env = {**os.environ, "HERALD_CONFIG": str(path)}
    done = subprocess.run([sys.executable, "-m", "herald", "kafka", "status"], env=env,
                          capture_output=True, text=True)  # fmt: skip
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "herald: config: escalations.critical_unread.ratio: Input should be less than or"
        " equal to 1"
    ]


SECRET = "hunter2-not-to-be-seen"
SASL = {"HERALD_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
        "HERALD_KAFKA_SASL_MECHANISM": "SCRAM-SHA-512", "HERALD_KAFKA_SASL_USERNAME": "herald"}


def test_the_sasl_password_comes_from_a_file_and_prints_as_stars(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from herald.kafka import clients

    secret = tmp_path / "password"
    secret.write_text(SECRET + "\n")  # a trailing newline, as `echo` and mounted secrets have
    for name, value in {**SASL, "HERALD_KAFKA_SASL_PASSWORD_FILE": str(secret)}.items():
        monkeypatch.setenv(name, value)
    settings = config.load()
    assert clients.connection(settings)["sasl_plain_password"] == SECRET
    assert SECRET not in f"{settings!r} {settings} {settings.model_dump()}"
    monkeypatch.delenv("HERALD_KAFKA_SASL_PASSWORD_FILE")
    monkeypatch.setenv("HERALD_KAFKA_SASL_PASSWORD", SECRET)
    settings = config.load()
    assert clients.connection(settings)["sasl_plain_password"] == SECRET
    assert SECRET not in f"{settings!r} {settings} {settings.model_dump()}"


def login_errors(tmp_path: Path) -> dict[str, tuple[dict[str, str], str]]:
    empty = tmp_path / "empty"
    empty.write_text("\n")
    return {
        "no password": ({}, "config: SASL_SSL needs HERALD_KAFKA_SASL_PASSWORD"),
        "no user": ({"HERALD_KAFKA_SASL_USERNAME": "", "HERALD_KAFKA_SASL_MECHANISM": "",
                     "HERALD_KAFKA_SASL_PASSWORD": SECRET},
                    "config: SASL_SSL needs HERALD_KAFKA_SASL_MECHANISM, "
                    "HERALD_KAFKA_SASL_USERNAME"),
        "both": ({"HERALD_KAFKA_SASL_PASSWORD": SECRET,
                  "HERALD_KAFKA_SASL_PASSWORD_FILE": str(empty)},
                 "config: set HERALD_KAFKA_SASL_PASSWORD or HERALD_KAFKA_SASL_PASSWORD_FILE, "
                 "not both"),
        "missing file": ({"HERALD_KAFKA_SASL_PASSWORD_FILE": str(tmp_path / "nowhere")},
                         f"config: cannot read HERALD_KAFKA_SASL_PASSWORD_FILE {tmp_path}/nowhere:"
                         " No such file or directory"),
        "empty file": ({"HERALD_KAFKA_SASL_PASSWORD_FILE": str(empty)},
                       f"config: HERALD_KAFKA_SASL_PASSWORD_FILE {empty} is empty"),
        "unknown mechanism": ({"HERALD_KAFKA_SASL_MECHANISM": "GSSAPI",
                               "HERALD_KAFKA_SASL_PASSWORD": SECRET},
                              "config: kafka_sasl_mechanism: Input should be 'PLAIN', "
                              "'SCRAM-SHA-256' or 'SCRAM-SHA-512'"),
    }  # fmt: skip


def test_an_incomplete_kafka_login_is_one_line_without_the_password(tmp_path: Path) -> None:
    for what, (env, line) in login_errors(tmp_path).items():
        merged = {k: v for k, v in {**os.environ, **SASL, **env}.items() if v}
        done = subprocess.run([sys.executable, "-m", "herald", "kafka", "status"], env=merged,
                              capture_output=True, text=True)  # fmt: skip
        assert (done.returncode, done.stderr) == (2, f"herald: {line}\n"), what


def test_help_names_the_password_settings_and_never_shows_one() -> None:
    env = {**os.environ, **SASL, "HERALD_KAFKA_SASL_PASSWORD": SECRET}
    done = subprocess.run([sys.executable, "-m", "herald", "--help"], env=env,
                          capture_output=True, text=True)  # fmt: skip
    assert done.returncode == 0
    assert "HERALD_KAFKA_SASL_PASSWORD " in done.stdout
    assert "HERALD_KAFKA_SASL_PASSWORD_FILE" in done.stdout
    assert SECRET not in done.stdout + done.stderr
