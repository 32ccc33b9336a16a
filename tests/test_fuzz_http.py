"""Schemathesis against the live gateway: every operation of its own OpenAPI document,
hundreds of generated requests (valid and invalid) over HTTP to a real app with a real
engine, auth, limits and the semantic cache. No 5xx, and every rejection is an OpenAI
error body.
"""

from __future__ import annotations

import json
import uuid

import httpx
import pytest
import redis

from tests.conftest import TESTS, deploy_app

pytestmark = [pytest.mark.engine, pytest.mark.timeout(900)]
schemathesis = pytest.importorskip("schemathesis")

CASES_PER_MODE = 30  # x 2 modes x every operation: several hundred requests
KEYS = {"/admin/": "Bearer fuzz-admin", "/v1/": "Bearer fuzz-key"}
REPAIRS = {"/v1/chat/completions": {"model": "auto", "messages": [{"role": "user", "content": "hi"}]},
           "/v1/completions": {"model": "auto", "prompt": "hi"}}


@pytest.fixture(scope="module")
def fuzz_app(serve_port: int):
    from ray import serve

    from replicas.fleet import kill_registry

    prefix = f"turnout-test-fuzz-{uuid.uuid4().hex[:8]}:"  # a fresh cache each run

    def mutate(cfg) -> None:
        cfg.models = cfg.models[:1]
        cfg.gateway = cfg.gateway.model_validate({
            **cfg.gateway.model_dump(), "require_auth": True, "admin_keys": ["fuzz-admin"],
            "tenants": [{"name": "fuzz", "api_keys": ["fuzz-key"]}],
            # Small answers keep hundreds of engine calls quick; limits are part of the fuzz.
            "limits": {"max_tokens": 8, "max_n": 2, "max_messages": 16, "max_body_bytes": 65536}})
        cfg.cache = cfg.cache.model_validate({"enabled": True, "redis_url": "redis://127.0.0.1:6379/0",
                                              "key_prefix": prefix})

    app = deploy_app(TESTS / "tiny.yaml", "fuzz", serve_port, mutate)
    yield app
    serve.delete("fuzz")
    kill_registry("fuzz")
    r = redis.Redis.from_url("redis://127.0.0.1:6379/0")
    for k in r.scan_iter(prefix + "*"):
        r.delete(k)


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
    from hypothesis.errors import Unsatisfiable
    from schemathesis.generation import GenerationMode

    doc = live_document(fuzz_app)
    schema = schemathesis.openapi.from_dict(doc)
    operations = [(path, method.upper()) for path, ops in doc["paths"].items() for method in ops]
    assert len(operations) >= 12
    seen: dict[tuple[str, str], dict[int, int]] = {}
    failures: list[str] = []

    def check(path: str, method: str, r) -> None:
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

    def fuzzer(path: str, method: str, headers: dict, strategy):
        @settings(max_examples=CASES_PER_MODE, deadline=None, database=None, derandomize=True,
                  suppress_health_check=list(HealthCheck))
        @given(case=strategy)
        def call(case) -> None:
            if "replica_id" in (case.path_parameters or {}):  # never a real replica
                case.path_parameters["replica_id"] = "fuzz-" + str(case.path_parameters["replica_id"])
            check(path, method, case.call(base_url=fuzz_app.base, headers=headers, timeout=60))
            if path in REPAIRS and isinstance(case.body, dict):
                # The same generated body made servable (a model that exists, a user turn,
                # small budgets), so the fuzz also reaches the engine and the answer path.
                body = {**case.body, **REPAIRS[path]}
                for k, cap in (("max_tokens", 8), ("max_completion_tokens", 8), ("n", 2)):
                    if isinstance(body.get(k), int) and not isinstance(body.get(k), bool):
                        body[k] = max(1, min(body[k], cap))
                check(path, method, httpx.post(fuzz_app.base + path, json=body, headers=headers, timeout=60))
        return call

    for path, method in operations:
        headers = next(({"authorization": v} for k, v in KEYS.items() if path.startswith(k)), {})
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            strategy = schema[path][method].as_strategy(generation_mode=mode)
            try:
                fuzzer(path, method, headers, strategy)()
            except Unsatisfiable:
                # An operation with no parameters and no body has no invalid form to send.
                assert mode == GenerationMode.NEGATIVE, (path, method)
                assert not schema[path][method].definition.raw.get("requestBody"), (path, method)

    total = sum(sum(c.values()) for c in seen.values())
    assert not failures, "\n".join(failures[:20])
    assert total >= 300, seen
    # The fuzz reached past validation: real answers (200) and real rejections (4xx) both.
    statuses = {s for c in seen.values() for s in c}
    assert 200 in statuses and any(400 <= s < 500 for s in statuses)
    chat = seen[("/v1/chat/completions", "POST")]
    assert chat.get(200, 0) > 0 and chat.get(400, 0) > 0, chat


def test_a_request_without_max_tokens_stops_at_the_configured_limit(fuzz_app) -> None:
    finished = []
    for prompt in ("once upon a time", "the gateway routes", "a replica decodes"):
        r = httpx.post(fuzz_app.base + "/v1/completions", headers={"authorization": "Bearer fuzz-key"},
                       json={"model": "auto", "prompt": prompt, "temperature": 0}, timeout=60)
        assert r.status_code == 200, r.text
        body = r.json()
        tokens = body["usage"]["completion_tokens"]
        assert 1 <= tokens <= 8  # limits.max_tokens, though the context leaves ~500
        finished.append((tokens, body["choices"][0]["finish_reason"]))
    assert (8, "length") in finished, finished
