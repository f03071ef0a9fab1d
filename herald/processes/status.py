"""`herald status`: one screen for operations, from the running processes' /status pages.

Embedded mode asks the `herald run` on HERALD_WEB_PORT, which names its ingest children's
ports; server mode asks the workers and sinks given with `--url`. Each process is read twice,
SAMPLE_S apart, so rates are of now rather than averages since start.
"""

from __future__ import annotations

import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson

from herald.config import Settings
from herald.errors import HeraldError
from herald.processes.query import ask_running_process, run_query

SAMPLE_S = 1.0
RATES = (
    ("events in", "herald_events_in"),
    ("invalid", "herald_invalid_events"),
    ("duplicates", "herald_duplicate_events"),
    ("sink rows", "herald_sink_rows"),
    ("retries", "herald_retries_published"),
    ("dead letters", "herald_dead_letters"),
)
OPEN_ESCALATIONS = "SELECT count() FROM open_escalations FORMAT TSV"


@dataclass
class Process:
    address: str
    first: dict[str, Any]
    last: dict[str, Any]

    def rate(self, counter: str, seconds: float) -> float:
        delta = self.last["counters"][counter] - self.first["counters"][counter]
        return float(delta) / seconds


def fetch(address: str) -> dict[str, Any] | None:
    """A process's /status, or None when nothing answers there."""
    try:
        with urllib.request.urlopen(f"http://{address}/status", timeout=5) as response:
            doc: dict[str, Any] = orjson.loads(response.read())
            return doc
    except (urllib.error.URLError, ConnectionError, TimeoutError, orjson.JSONDecodeError):
        return None


def discover(settings: Settings, addresses: list[str]) -> dict[str, dict[str, Any]]:
    """The processes that answer, with `herald run`'s ingest children found through it."""
    wanted = addresses or [f"127.0.0.1:{settings.web_port}"]
    found: dict[str, dict[str, Any]] = {}
    for address in wanted:
        doc = fetch(address)
        if doc is None:
            continue
        found[address] = doc
        host = address.rsplit(":", 1)[0]
        for port in doc.get("children_web_ports", []):
            child = fetch(f"{host}:{port}")
            if child is not None:
                found[f"{host}:{port}"] = child
    if not found:
        where = ", ".join(wanted)
        raise HeraldError(f"no Herald process answers at {where}: start `herald run` (or a "
                          "worker) or give its web port with HERALD_WEB_PORT or --url")  # fmt: skip
    return found


def sample(settings: Settings, addresses: list[str]) -> list[Process]:
    first = discover(settings, addresses)
    time.sleep(SAMPLE_S)  # the sampling interval of the rates, not a wait for a condition
    processes = []
    for address, doc in first.items():
        last = fetch(address)
        if last is not None:
            processes.append(Process(address, doc, last))
    return processes


def open_escalations(settings: Settings) -> str:
    """How many escalations are open, or why that is unknown (one line)."""
    try:
        if settings.embedded_clickhouse:
            answer = ask_running_process(settings, OPEN_ESCALATIONS)
            if answer is None:
                return "unknown (no `herald run` holds the embedded ClickHouse)"
        else:
            answer = run_query(settings, OPEN_ESCALATIONS)
    except HeraldError as exc:
        return f"unknown ({exc})"
    return f"{answer.strip()} (details: herald escalations)"


def render(processes: list[Process], escalations: str) -> str:
    lines = [f"Herald status, rates over {SAMPLE_S:.0f} s", "",
             f"{'process':<22} {'role':<7} {'runs':<18} {'pid':>7} {'up':>8}"]  # fmt: skip
    for p in processes:
        doc = p.last
        lines.append(f"{p.address:<22} {doc['role']:<7} {','.join(doc['parts']):<18} "
                     f"{doc['pid']:>7} {_duration(doc['uptime_s']):>8}")  # fmt: skip
    lag: dict[str, float] = {}
    for p in processes:
        for stage, value in p.last["lag"].items():
            lag[stage] = lag.get(stage, 0) + value
    lines += ["", "lag per stage:  " + _join(f"{s} {v:.0f}" for s, v in sorted(lag.items()))]
    rates = [(name, sum(p.rate(counter, SAMPLE_S) for p in processes)) for name, counter in RATES]
    lines.append("rates:          " + _join(f"{name} {value:.0f}/s" for name, value in rates))
    if not all(p.last.get("metrics_enabled", True) for p in processes):
        lines.append("                (HERALD_METRICS_ENABLED=false somewhere: its counts are 0)")
    lines += [f"open escalations: {escalations}", "", "last errors:"]
    errors = sorted((e[0], p.address, e[1], e[2]) for p in processes for e in p.last["errors"])
    lines += [f"  {_clock(t)} {address} {level}: {message[:120]}"
              for t, address, level, message in errors[-8:]] or ["  none"]  # fmt: skip
    return "\n".join(lines)


def status(settings: Settings, addresses: list[str]) -> str:
    processes = sample(settings, addresses)
    return render(processes, open_escalations(settings))


def _join(parts: Any) -> str:
    return " · ".join(parts) or "none"


def _clock(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%H:%M:%S")


def _duration(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s"
