"""One versioned schema step."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str
    # Users, roles and row policies: chDB has no access control, so embedded mode records
    # the step without running it.
    server_only: bool = False

    @property
    def label(self) -> str:
        return f"{self.version:04d}_{self.name}"
