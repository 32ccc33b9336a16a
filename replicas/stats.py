"""Replica stats snapshot: the plain data every policy reads.

The replica fills it from its engine; the request router, the rescheduler, the
router's latency model and the fleet simulator all consume the same type, so the
same policy code runs live, in tests and in simulation.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field


@dataclass(frozen=True)
class RequestLoad:
    """One request on a replica, as the migration policies see it."""

    request_id: str
    num_tokens: int  # prompt + generated so far
    num_blocks: int  # KV blocks it holds
    priority: int = 0  # higher is more important
    generated: int = 0
    migrating: bool = False
    # Queued, not yet admitted: holds no KV; needs ceil(num_tokens / block_size) blocks.
    waiting: bool = False


@dataclass(frozen=True)
class ReplicaStats:
    replica_id: str
    model: str
    running: int = 0
    waiting: int = 0
    kv_blocks_used: int = 0
    kv_blocks_total: int = 0
    block_size: int = 16
    tokens_in_flight: int = 0
    # KV blocks the waiting queue needs to be admitted (its prompts' blocks).
    waiting_blocks_needed: int = 0
    # Blocks held back for high-priority requests (priority headroom).
    headroom_blocks: int = 0
    requests: tuple[RequestLoad, ...] = ()
    migrations_in: int = 0
    migrations_out: int = 0
    migration_bytes: int = 0
    migration_stage: str = ""
    draining: bool = False
    timestamp: float = field(default_factory=time.time)

    @property
    def free_blocks(self) -> int:
        return max(self.kv_blocks_total - self.kv_blocks_used, 0)

    @property
    def kv_usage(self) -> float:
        return self.kv_blocks_used / self.kv_blocks_total if self.kv_blocks_total else 0.0

    @property
    def freeness(self) -> float:
        """Llumnix freeness: free KV blocks per running request, after the queue's needs.

        Negative when the queue alone needs more than is free (an overloaded replica).
        A draining replica reports the lowest freeness so nothing new lands on it.
        """
        if self.draining:
            return float("-inf")
        free = self.free_blocks - self.waiting_blocks_needed - self.headroom_blocks
        return free / max(self.running, 1)

    def age(self, now: float | None = None) -> float:
        return (time.time() if now is None else now) - self.timestamp

    def to_dict(self) -> dict:
        d = asdict(self)
        d["freeness"] = self.freeness if not self.draining else None
        d["free_blocks"] = self.free_blocks
        return d

    @classmethod
    def from_dict(cls, d: dict) -> ReplicaStats:
        known = {f for f in cls.__dataclass_fields__}
        data = {k: v for k, v in d.items() if k in known}
        data["requests"] = tuple(
            r if isinstance(r, RequestLoad) else RequestLoad(**r) for r in data.get("requests", ())
        )
        return cls(**data)
