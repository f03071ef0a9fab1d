"""What to simulate: a scenario's knobs, checked once, from which every byte is derived."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from herald.errors import HeraldError

Keying = Literal["broadcast", "user", "random", "none"]

GRACE_S = 600
OUTAGE_FAILURE_RATIO = 0.6


@dataclass(frozen=True)
class Scenario:
    """What to simulate. Everything is derived from `seed`: same scenario, same bytes."""

    seed: int = 7
    tenants: int = 3
    broadcasts: int = 20  # in total, spread over the tenants
    users_per_broadcast: int = 200
    regions: tuple[str, ...] = ("DE", "FR", "US", "BR", "JP", "eu-west")
    start_ms: int = 1_795_428_000_000  # 2026-11-23T10:00:00Z
    duration_s: float = 600
    offline_ratio: float = 0.1
    failure_ratio: float = 0.08
    duplicate_ratio: float = 0.02
    out_of_order_ratio: float = 0.05
    # How late an out-of-order or duplicate message may arrive, in event time. It must stay
    # under the grace period minus a window, or expected totals would include dropped events.
    max_delay_s: float = 180
    invalid: int = 0
    keying: Keying = "broadcast"
    # A regional outage: (region, start s, end s) from the scenario start, during which
    # most attempts in that region fail (`OUTAGE_FAILURE_RATIO`).
    outage: tuple[str, float, float] | None = None

    def __post_init__(self) -> None:
        ratios = ("offline_ratio", "failure_ratio", "duplicate_ratio", "out_of_order_ratio")
        for name in ratios:
            if not 0 <= getattr(self, name) <= 1:
                raise HeraldError(f"simulate: {name} must be between 0 and 1")
        if self.tenants < 1 or self.broadcasts < 0 or self.users_per_broadcast < 1:
            raise HeraldError("simulate: tenants and users must be ≥ 1, broadcasts ≥ 0")
        if not self.regions or self.duration_s <= 0 or self.invalid < 0:
            raise HeraldError("simulate: regions, a positive duration and invalid ≥ 0 needed")
        if not 0 <= self.max_delay_s <= GRACE_S - 60:
            raise HeraldError(f"simulate: max_delay_s must be within [0, {GRACE_S - 60}]")
        if self.keying not in ("broadcast", "user", "random", "none"):
            raise HeraldError(f"simulate: unknown keying {self.keying!r}")
        if self.outage is not None:
            region, begin, end = self.outage
            if region not in self.regions or not 0 <= begin < end:
                raise HeraldError("simulate: an outage needs one of the regions and start < end")

    def failure_ratio_at(self, region: str, ms: int, usual: float) -> float:
        """The chance an attempt fails: higher in an outage's region while it lasts."""
        if self.outage is None or region != self.outage[0]:
            return usual
        begin, end = (self.start_ms + int(s * 1000) for s in self.outage[1:])
        return max(usual, OUTAGE_FAILURE_RATIO) if begin <= ms < end else usual

    @property
    def end_ms(self) -> int:
        return self.start_ms + int(self.duration_s * 1000)
