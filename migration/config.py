"""Config section for live migration and the rescheduler (owned by migration/)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class MigrationSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    enabled: bool = False
    # Rescheduler: apply the policies on its own (balance, defrag, priority); when false
    # it only drains replicas and runs admin migrations.
    rescheduler_auto: bool = True
    # Rescheduler: how often it reads stats and applies the policies (Llumnix: ~20 Hz).
    rescheduler_interval_s: float = Field(0.05, gt=0)
    # Stats older than this are stale: dispatch falls back to power-of-two, the
    # rescheduler skips the replica.
    max_stats_age_s: float = Field(0.5, gt=0)
    # At most this many migrations in flight into or out of one replica.
    max_migrations_per_replica: int = Field(1, ge=1)
    # Load balancing: only pair replicas whose freeness differs by more than this
    # (free blocks per running request), and only take from a source below
    # `balance_source_freeness` (a replica with plenty of room needs no help).
    balance_min_gap: float = Field(4.0, ge=0)
    balance_source_freeness: float = 8.0
    # Never move a request with fewer blocks than this (nothing to gain) or more
    # than this (too long a copy); 0 = no upper bound.
    min_request_blocks: int = Field(1, ge=0)
    max_request_blocks: int = Field(0, ge=0)
    defragment: bool = True
    # Priority headroom: KV blocks each replica keeps free for requests at or above
    # `high_priority` (tenant config sets priorities, a request may override).
    high_priority: int = 1
    headroom_blocks: int = Field(0, ge=0)
    # ---- live KV migration (migration/agent.py, migration/connector.py) ----
    # "kv" moves the KV cache; "recompute" re-prefills prompt + generated tokens at the
    # destination (the baseline).
    mode: str = Field("kv", pattern="^(kv|recompute)$")
    # Stop-and-copy once at most this many full KV blocks are not yet copied.
    stop_copy_blocks: int = Field(2, ge=0)
    # Stop anyway after this long in pre-copy (a request decoding faster than we copy).
    max_precopy_s: float = Field(2.0, gt=0)
    # Blocks one engine step copies at most (bounds the hiccup for other requests).
    max_blocks_per_step: int = Field(256, ge=1)
    # Deadline of every call to the other replica's agent and to the engine's connector.
    call_timeout_s: float = Field(2.0, gt=0)
    # Pre-copy makes no progress for this long -> give up, the request stays.
    stall_timeout_s: float = Field(5.0, gt=0)
    # The destination's reservation lives this long without an admit (source died).
    lease_s: float = Field(10.0, gt=0)
    # The destination aborts a migrated-in request nobody streams within this time.
    attach_timeout_s: float = Field(30.0, gt=0)
    # Free KV blocks the destination keeps beyond the request's own need.
    dest_margin_blocks: int = Field(0, ge=0)
    poll_interval_s: float = Field(0.002, gt=0)
    # Where agents listen for each other (same host for the shared-memory transfer).
    peer_host: str = "127.0.0.1"
