"""Schemathesis against the live gateway: every operation of its own OpenAPI document,
hundreds of generated requests (valid and invalid) over HTTP to a real app with a real
engine, auth, limits and the semantic cache. No 5xx, and every rejection is an OpenAI
error body.
"""

from __future__ import annotations

import json

import httpx
import pytest

from tests.conftest import TESTS, deploy_app

pytestmark = [pytest.mark.engine, pytest.mark.timeout(900)]
schemathesis = pytest.importorskip("schemathesis")

CASES_PER_MODE = 30  # x 2 modes x every operation: several hundred requests
KEYS = {"/admin/": "Bearer fuzz-admin", "/v1/": "Bearer fuzz-key"}


@pytest.fixture(scope="module")
def fuzz_app(serve_port: int):
    from ray import serve

    from replicas.fleet import kill_registry

    def mutate(cfg) -> None:
        cfg.models = cfg.models[:1]
        cfg.gateway = cfg.gateway.model_validate({
            **cfg.gateway.model_dump(), "require_auth": True, "admin_keys": ["fuzz-admin"],
            "tenants": [{"name": "fuzz", "api_keys": ["fuzz-key"]}],
            # Small answers keep hundreds of engine calls quick; limits are part of the fuzz.
            "limits": {"max_tokens": 8, "max_n": 2, "max_messages": 16, "max_body_bytes": 65536}})
        cfg.cache = cfg.cache.model_validate({"enabled": True, "redis_url": "redis://127.0.0.1:6379/0",
                                              "key_prefix": "turnout-test-fuzz:"})

    app = deploy_app(TESTS / "tiny.yaml", "fuzz", serve_port, mutate)
    yield app
    serve.delete("fuzz")
    kill_registry("fuzz")


def live_document(app) -> dict:
    r = httpx.get(app.base + "/openapi.json", timeout=30)
    r.raise_for_status()
    return r.json()


def is_openai_error(body: object) -> bool:
    if not isinstance(body, dict) or set(body) != {"error"}:
        return False
    err = body["error"]
    return isinstance(err, dict) and set(err) == {"message", "type", "param", "code"} and bool(err["message"])


def test_every_operation_survives_generated_requests(fuzz_app) -> None:
    from hypothesis import HealthCheck, given, settings
    from schemathesis.generation import GenerationMode

    doc = live_document(fuzz_app)
    schema = schemathesis.openapi.from_dict(doc)
    operations = [(path, method.upper()) for path, ops in doc["paths"].items() for method in ops]
    assert len(operations) >= 12
    seen: dict[tuple[str, str], dict[int, int]] = {}
    failures: list[str] = []

    for path, method in operations:
        headers = next(({"authorization": v} for k, v in KEYS.items() if path.startswith(k)), {})
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            strategy = schema[path][method].as_strategy(generation_mode=mode)

            @settings(max_examples=CASES_PER_MODE, deadline=None, database=None, derandomize=True,
                      suppress_health_check=list(HealthCheck))
            @given(case=strategy)
            def call(case, path=path, method=method, headers=headers) -> None:
                if "replica_id" in (case.path_parameters or {}):
                    case.path_parameters["replica_id"] = "fuzz-" + str(case.path_parameters["replica_id"])
                r = case.call(base_url=fuzz_app.base, headers=headers, timeout=60)
                counts = seen.setdefault((path, method), {})
                counts[r.status_code] = counts.get(r.status_code, 0) + 1
                if r.status_code >= 500:
                    failures.append(f"{method} {path} -> {r.status_code}: {r.text[:200]}")
                elif r.status_code >= 400 and not path.startswith("/dashboard"):
                    try:
                        body = json.loads(r.content)
                    except ValueError:
                        body = None
                    if not is_openai_error(body):
                        failures.append(f"{method} {path} -> {r.status_code} not an OpenAI error: {r.text[:200]}")

            try:
                call()
            except schemathesis.core.errors.InvalidSchema as e:  # an operation it cannot generate for
                failures.append(f"{method} {path}: {e}")

    total = sum(sum(c.values()) for c in seen.values())
    assert not failures, "\n".join(failures[:20])
    assert total >= 300, seen
    # The fuzz reached past validation: real answers (200) and real rejections (4xx) both.
    statuses = {s for c in seen.values() for s in c}
    assert 200 in statuses and any(400 <= s < 500 for s in statuses)
    chat = seen[("/v1/chat/completions", "POST")]
    assert chat.get(200, 0) > 0 and chat.get(400, 0) > 0, chat
