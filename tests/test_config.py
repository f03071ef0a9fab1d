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
