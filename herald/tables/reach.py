"""Exact distinct recipients per broadcast (SPEC §6 `recipients_delivered`, `recipients_read`).

A recipient is a user. One RocksDB key per (tenant, broadcast, user) holds a bit mask: bit c
once a `delivered` on channel c was counted, bit 8 + c for a `read`, 16 + c for a
`responded` (a poll answer or a button). A batch reads the masks of the users it touches in
one multi-get and writes back those it changed, so memory stays flat however large the
audience: RocksDB holds it, not a Python set. The first bit of a kind
makes the user a recipient of the broadcast, the first bit of a channel a recipient on that
channel; each is counted into the window of the event that set it, so the sums over windows
are the exact distinct counts, under the same dedup and lateness rules as every counter.

A broadcast's masks are forgotten `horizon` of event time after its last delivery or read, in
one range delete. Keys: r<tenant>\\0<broadcast length, 2 bytes><broadcast><user>; the last
event time of each broadcast under t<the same broadcast prefix>.
"""

from __future__ import annotations

from collections.abc import Sequence

from herald.model.contracts import CHANNELS
from herald.model.event import Event
from herald.tables.store import Change, ShardStore

MASKS, LAST = b"r", b"t"
SHIFT = {"delivered": 0, "read": 8, "responded": 16}  # the event types that reach a recipient
CHANNEL_BITS = {channel: 1 << i for i, channel in enumerate(CHANNELS)}
UNKNOWN_CHANNEL = 1 << 7  # acks may omit their channel: still one recipient
MINUTE_MS = 60_000


def broadcast_prefix(tenant_id: str, broadcast_id: str) -> bytes:
    """The keys of one broadcast's masks start with this, and no other broadcast's do (the
    length makes "b1" and "b10" differ before the user begins)."""
    broadcast = broadcast_id.encode()
    return MASKS + tenant_id.encode() + b"\x00" + len(broadcast).to_bytes(2, "big") + broadcast


class Recipients:
    """The reach masks of one shard: loaded per batch, written with the batch's Change."""

    def __init__(self, store: ShardStore, horizon_s: int) -> None:
        self.store = store
        self.horizon_ms = horizon_s * 1000
        self.last: dict[bytes, int] = {key[1:]: ts for key, ts in store.scan(LAST)}
        self._masks: dict[bytes, int] = {}
        self._changed: set[bytes] = set()
        self._seen: dict[bytes, int] = {}  # broadcast prefix -> latest event time this batch
        self._expired_at = 0

    def keys(self, events: Sequence[Event]) -> list[bytes | None]:
        """Aligned with `events`: the mask key of each delivery or read, else None. Their
        masks are loaded in one multi-get."""
        prefixes: dict[tuple[str, str], bytes] = {}
        keys: list[bytes | None] = []
        for ev in events:
            if ev.type not in SHIFT or not ev.user_id:
                keys.append(None)
                continue
            broadcast = (ev.tenant_id, ev.broadcast_id)
            prefix = prefixes.get(broadcast)
            if prefix is None:
                prefix = prefixes[broadcast] = broadcast_prefix(*broadcast)
            self._seen[prefix] = max(self._seen.get(prefix, 0), ev.ts)
            keys.append(prefix + ev.user_id.encode())
        wanted = list({k for k in keys if k is not None})
        for key, raw in zip(wanted, self.store.get_many(wanted), strict=True):
            self._masks[key] = 0 if raw is None else int(raw)
        return keys

    def mark(self, ev: Event, key: bytes) -> tuple[bool, bool]:
        """Count `ev` (a delivery or read loaded by `keys`): whether it is the user's first
        of its type on any channel, and on its own channel."""
        shift = SHIFT[ev.type]
        bit = CHANNEL_BITS.get(ev.channel or "", UNKNOWN_CHANNEL) << shift
        mask = self._masks[key]
        if mask & bit:
            return False, False
        self._masks[key] = mask | bit
        self._changed.add(key)
        return not (mask >> shift) & 0xFF, True

    def persist(self, change: Change, clock_ms: int | None) -> None:
        """Put the masks and last event times the batch changed; forget the batch's masks;
        at most once a minute of event time, expire the broadcasts quiet for the horizon."""
        for key in self._changed:
            change.put(key, self._masks[key])
        for prefix, ts in self._seen.items():
            if ts > self.last.get(prefix, -1):
                self.last[prefix] = ts
                change.put(LAST + prefix, ts)
        self._masks.clear()
        self._changed.clear()
        self._seen.clear()
        if clock_ms is not None and clock_ms - self._expired_at >= MINUTE_MS:
            self._expired_at = clock_ms
            self._expire(clock_ms - self.horizon_ms, change)

    def _expire(self, before_ms: int, change: Change) -> None:
        for prefix in [p for p, ts in self.last.items() if ts < before_ms]:
            # UTF-8 never has a 0xff byte: the prefix's last byte + 1 bounds its keys.
            change.delete_range(prefix, prefix[:-1] + bytes([prefix[-1] + 1]))
            change.delete(LAST + prefix)
            del self.last[prefix]
