"""Tenants and API keys: keys are compared as SHA-256 digests, never stored or logged plain."""

from __future__ import annotations

import hmac
from dataclasses import dataclass

from gateway.config import GatewaySpec, TenantSpec, hash_key
from gateway.errors import APIError

DEFAULT_TENANT = TenantSpec(name="default")


@dataclass(frozen=True)
class Caller:
    tenant: TenantSpec
    is_admin: bool = False


class KeyRing:
    def __init__(self, spec: GatewaySpec) -> None:
        self.require_auth = spec.require_auth
        self._tenants = {digest: t for t in spec.tenants for digest in t.api_keys}
        self._admin = set(spec.admin_keys)

    def _bearer(self, authorization: str | None) -> str | None:
        if not authorization:
            return None
        scheme, _, token = authorization.partition(" ")
        return token.strip() if scheme.lower() == "bearer" and token.strip() else None

    def _find(self, digest: str) -> TenantSpec | None:
        for known, tenant in self._tenants.items():
            if hmac.compare_digest(known, digest):
                return tenant
        return None

    def caller(self, authorization: str | None) -> Caller:
        key = self._bearer(authorization)
        if key is None:
            if self.require_auth:
                raise APIError(401, "You didn't provide an API key. Pass it as 'Authorization: Bearer KEY'.",
                               None, "missing_api_key")
            return Caller(DEFAULT_TENANT)
        digest = hash_key(key)
        if any(hmac.compare_digest(a, digest) for a in self._admin):
            return Caller(DEFAULT_TENANT, is_admin=True)
        tenant = self._find(digest)
        if tenant is None:
            if not self.require_auth:
                return Caller(DEFAULT_TENANT)
            raise APIError(401, "Incorrect API key provided.", None, "invalid_api_key")
        return Caller(tenant)

    def admin(self, authorization: str | None) -> Caller:
        """Admin calls need an admin key; tenant keys never open them (see dashboards/API.md)."""
        if not self._admin:
            raise APIError(403, "The admin API is disabled: no gateway.admin_keys are configured.",
                           None, "admin_disabled")
        key = self._bearer(authorization)
        digest = hash_key(key) if key else ""
        if not any(hmac.compare_digest(a, digest) for a in self._admin):
            raise APIError(401, "A valid admin key is required for this endpoint.", None,
                           "invalid_admin_key")
        return Caller(DEFAULT_TENANT, is_admin=True)
