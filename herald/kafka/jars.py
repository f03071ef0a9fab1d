"""The local broker's jars: fetched from Maven Central once per machine (deploy/kafka/pom.xml),
and the small helpers the broker's life cycle shares with that fetch."""

from __future__ import annotations

import fcntl
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import cache
from pathlib import Path

import herald
from herald.errors import HeraldError

Progress = Callable[[str], None]
POM_PLACES = ("_deploy/kafka/pom.xml", "../deploy/kafka/pom.xml")  # wheel, then source tree
MVN_TIMEOUT_S = 900


def pom_path() -> Path:
    """The pom that lists the broker's jars, in the installed wheel or the source tree."""
    package = Path(herald.__file__).parent
    for place in POM_PLACES:
        if (package / place).is_file():
            return (package / place).resolve()
    raise HeraldError(f"deploy/kafka/pom.xml is missing from the Herald install at {package}")


@cache
def kafka_version() -> str:
    match = re.search(r"<kafka.version>([^<]+)</kafka.version>", pom_path().read_text())
    if not match:
        raise HeraldError(f"{pom_path()} names no <kafka.version>")
    return match.group(1)


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "herald" / f"kafka-{kafka_version()}"


def ensure_jars(progress: Progress | None = None) -> Path:
    """The directory of the broker's jars, fetched with Maven once per machine."""
    libs = cache_dir() / "libs"
    if libs.is_dir():
        return libs
    require("java", "a Java 17+ runtime")
    require("mvn", "Maven")
    libs.parent.mkdir(parents=True, exist_ok=True)
    with locked(libs.parent / "fetch.lock"):
        if libs.is_dir():  # fetched by a parallel caller while we waited for the lock
            return libs
        say(progress, f"fetching Kafka {kafka_version()} jars with Maven (once, ~45 MB)")
        tmp = Path(tempfile.mkdtemp(prefix="libs.tmp-", dir=libs.parent))
        try:
            _mvn_copy_dependencies(tmp)
            tmp.rename(libs)  # atomic: nobody ever sees a half-filled libs/
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return libs


def require(tool: str, what: str) -> None:
    if shutil.which(tool) is None:
        raise HeraldError(f"`{tool}` is not on PATH: the local Kafka broker needs {what}")


def _mvn_copy_dependencies(out: Path) -> None:
    cmd = [
        "mvn", "-B", "-q", "-f", str(pom_path()), "dependency:copy-dependencies",
        "-DincludeScope=runtime", f"-DoutputDirectory={out}",
    ]  # fmt: skip
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=MVN_TIMEOUT_S)
    except subprocess.TimeoutExpired as exc:
        raise HeraldError(f"Maven did not fetch the Kafka jars within {MVN_TIMEOUT_S} s") from exc
    if done.returncode != 0:
        raise HeraldError(
            f"Maven could not fetch the Kafka jars: {tail(done.stdout + done.stderr)}"
        )


@contextmanager
def locked(path: Path) -> Iterator[None]:
    """An exclusive lock shared by every process on the machine (CLI, tests, workers)."""
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def tail(output: str | list[str], count: int = 3) -> str:
    lines = output.splitlines() if isinstance(output, str) else output
    kept = [line.strip() for line in lines if line.strip()][-count:]
    return " | ".join(line[:300] for line in kept) or "no output"


def say(progress: Progress | None, message: str) -> None:
    if progress is not None:
        progress(message)
