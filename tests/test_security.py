"""Keys never leak: not in config dumps, logs, error bodies or metric labels (no engines)."""

from __future__ import annotations

import json
import logging

import pytest
from fastapi import Request

from deploy.config import load_config
from gateway import app as gateway_app
from gateway.app import GatewayCore
from gateway.errors import APIError
from gateway.protocol import ChatCompletionRequest
from replicas import telemetry
from tests.conftest import TESTS, free_port

TENANT_KEY, ADMIN_KEY = "sk-tenant-9f8e7d6c5b4a", "sk-admin-1a2b3c4d5e6f"


def test_config_dump_holds_only_digests() -> None:
    cfg = load_config(TESTS / "smart.yaml")
    dumped = cfg.model_dump_json() + json.dumps(cfg.model_dump(mode="json"))
    for plain in ("alpha-key", "beta-key", "gamma-key", "test-admin-key"):
        assert plain not in dumped
    assert all(k.startswith("sha256:") for t in cfg.gateway.tenants for k in t.api_keys)
    assert cfg.gateway.admin_keys[0].startswith("sha256:")


def core(**gateway) -> GatewayCore:
    spec = {"require_auth": True, "admin_keys": [ADMIN_KEY],
            "tenants": [{"name": "acme", "api_keys": [TENANT_KEY], "requests_per_minute": 1}]} | gateway
    models = [{"name": "m", "source": "tiny-llama"}]
    return GatewayCore(spec, models, handles={})


def request(key: str, body: dict) -> Request:
    raw = json.dumps(body).encode()
    scope = {"type": "http", "method": "POST", "path": "/v1/chat/completions", "query_string": b"",
             "headers": [(b"authorization", f"Bearer {key}".encode()),
                         (b"content-type", b"application/json")]}

    async def receive() -> dict:
        return {"type": "http.request", "body": raw, "more_body": False}

    return Request(scope, receive)


async def answer(c: GatewayCore, key: str, body: dict) -> tuple[int, str]:
    """What the HTTP layer would send for a request that fails before any engine work."""
    req = request(key, body)
    with pytest.raises(APIError) as e:
        await c.handle(req, ChatCompletionRequest)
    response = await gateway_app._api_error(req, e.value)
    return response.status_code, response.body.decode() + json.dumps(dict(response.headers))


CHAT = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}


async def test_keys_never_reach_logs_or_error_bodies(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    c = core(limits_redis_url=f"redis://127.0.0.1:{free_port()}/0", limits_fail_open=False)
    seen = [await answer(c, "sk-wrong-0000", CHAT),                     # unknown key: 401
            await answer(c, ADMIN_KEY, CHAT | {"model": "nope"}),       # unknown model: 404
            await answer(c, TENANT_KEY, CHAT)]                          # limits store down: 503
    assert [s for s, _ in seen] == [401, 404, 503]
    local = core()
    over = CHAT | {"max_tokens": 10**6}  # admitted (counts toward the budget), then refused: 400
    seen += [await answer(local, TENANT_KEY, over), await answer(local, TENANT_KEY, CHAT)]
    assert [s for s, _ in seen[3:]] == [400, 429]
    assert "rate-limit store unavailable" in caplog.text  # the logs did record the outage
    text = caplog.text + "".join(b for _, b in seen) + telemetry.local_exposition()
    for secret in (TENANT_KEY, ADMIN_KEY, "sk-wrong-0000"):
        assert secret not in text


def test_metrics_refuse_secret_like_labels() -> None:
    for label in ("api_key", "authorization", "token"):
        with pytest.raises(ValueError, match="secret"):
            telemetry.counter(f"turnout_test_bad_{label}", "never defined", ("tenant", label))
    import gateway.limits  # noqa: F401 - registers its metrics
    import gateway.metrics  # noqa: F401

    labels = {lab for spec in telemetry.REGISTRY.values() for lab in spec.labels}
    assert "tenant" in labels
    assert not labels & telemetry.FORBIDDEN_LABELS
