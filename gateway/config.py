"""Config section for the gateway: listen address, tenants, keys and limits."""

from __future__ import annotations

import hashlib
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator


def hash_key(key: str) -> str:
    """Keys are stored and compared as salted-free SHA-256 digests; the plain key is never kept."""
    return "sha256:" + hashlib.sha256(key.encode()).hexdigest()


def _normalise_key(v: str) -> str:
    return v if v.startswith("sha256:") else hash_key(v)


class TenantSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9._-]+$")
    # Plain keys are hashed on load; "sha256:<hex>" entries are taken as digests.
    api_keys: list[str] = Field(default_factory=list)
    # Empty means every model.
    allowed_models: list[str] = Field(default_factory=list)
    priority: int = 0
    requests_per_minute: int | None = Field(None, ge=1)
    tokens_per_minute: int | None = Field(None, ge=1)
    max_concurrent_streams: int | None = Field(None, ge=1)

    @field_validator("api_keys")
    @classmethod
    def _hash(cls, keys: list[str]) -> list[str]:
        return [_normalise_key(k) for k in keys]


class LimitsSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    max_body_bytes: int = Field(1_000_000, ge=1024)
    max_messages: int = Field(256, ge=1)
    max_tokens: int = Field(4096, ge=1)
    max_n: int = Field(8, ge=1)


class GatewaySpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=1, le=65535)
    # haproxy: Serve's HAProxy hands requests to the gateway replicas' own HTTP servers;
    # proxy: Serve's Python proxy (one more hop, and the body fetched back over an RPC).
    # Applied when Turnout starts Ray (local) or renders the RayService (deploy/ingress.py).
    ingress: Literal["haproxy", "proxy"] = "haproxy"
    # Where `model: "auto"` goes when no router is configured.
    default_model: str | None = None
    # When false, requests need no key and run as the "default" tenant.
    require_auth: bool = False
    admin_keys: list[str] = Field(default_factory=list)
    tenants: list[TenantSpec] = Field(default_factory=list)
    limits: LimitsSpec = Field(default_factory=LimitsSpec)
    num_replicas: int = Field(1, ge=1)
    # A stopping gateway replica finishes its open streams for up to this long.
    shutdown_grace_s: float = Field(300.0, ge=0)
    # Seconds a request may wait for its first token before it fails with 504.
    request_timeout_s: float = Field(600.0, gt=0)
    # A replica that dies under a request: retry or resume it elsewhere this many times.
    replica_retries: int = Field(2, ge=0, le=10)
    # Per-tenant rate limits (gateway/limits.py): shared through this Redis when set,
    # otherwise counted per gateway replica in process.
    limits_redis_url: str | None = None
    limits_key_prefix: str = "turnout:limits:"
    # Redis unreachable: admit without limits (true) or refuse with 503 + Retry-After.
    limits_fail_open: bool = True
    # A stream's slot expires after this long even if its gateway replica died.
    limits_stream_lease_s: float = Field(900.0, gt=0)

    @field_validator("admin_keys")
    @classmethod
    def _hash(cls, keys: list[str]) -> list[str]:
        return [_normalise_key(k) for k in keys]
