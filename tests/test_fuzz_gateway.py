"""The gateway's OpenAPI document, and generated bodies fuzzing the request path up to the
engine call (parse, model resolution, limits, planning). No engines are involved: a body
either becomes a plan or an OpenAI-format 4xx, never another exception (a 5xx).
The HTTP-level fuzz against a deployed app is left to the lead (see gateway/openapi_bodies.py).
"""

from __future__ import annotations

import copy
import json

import pytest

from gateway.app import app
from gateway.auth import Caller
from gateway.caller import ModelCaller
from gateway.config import GatewaySpec, TenantSpec
from gateway.errors import APIError
from gateway.limits import estimate_tokens
from gateway.protocol import ChatCompletionRequest, CompletionRequest, parse_request
from gateway.service import Completions
from replicas.config import ModelSpec


def openapi_doc() -> dict:
    """The document as Serve publishes it: class-based routes without the `self` parameter."""
    doc = copy.deepcopy(app.openapi())
    for ops in doc["paths"].values():
        for op in ops.values():
            op["parameters"] = [p for p in op.get("parameters", []) if p["name"] != "self"]
    return doc


def test_every_post_route_documents_its_json_body() -> None:
    doc = openapi_doc()
    posts = {path: ops["post"] for path, ops in doc["paths"].items() if "post" in ops}
    assert len(posts) == 6
    for path, op in posts.items():
        assert "schema" in op["requestBody"]["content"]["application/json"], path
    chat = posts["/v1/chat/completions"]["requestBody"]["content"]["application/json"]["schema"]
    assert set(chat["required"]) == {"model", "messages"}
    assert "$ref" not in json.dumps(chat)  # self-contained: no dangling pydantic $defs


@pytest.mark.parametrize("mode", ["positive", "negative"])
@pytest.mark.parametrize("path,cls", [("/v1/chat/completions", ChatCompletionRequest),
                                      ("/v1/completions", CompletionRequest)])
def test_generated_bodies_become_a_plan_or_an_openai_4xx(path: str, cls: type, mode: str) -> None:
    schemathesis = pytest.importorskip("schemathesis")
    from hypothesis import HealthCheck, given, settings
    from schemathesis.generation import GenerationMode

    op = schemathesis.openapi.from_dict(openapi_doc())[path]["POST"]
    strategy = op.as_strategy(generation_mode=GenerationMode(mode))
    spec = GatewaySpec(default_model="m")
    completions = Completions(spec, [ModelSpec(name="m", source="tiny-llama")], ModelCaller({}, 1.0))
    who = Caller(TenantSpec(name="t"))
    outcomes = {"plan": 0, "rejected": 0}

    def check(body: object) -> None:
        try:
            req = parse_request(cls, body)
            plan = completions.plan(req, who)
            assert estimate_tokens(100, req.sampling().get("max_tokens"), req.n) > 0
            assert plan.model == "m" and plan.payloads
            outcomes["plan"] += 1
        except APIError as e:
            assert 400 <= e.status < 500
            err = e.body()["error"]
            assert set(err) == {"message", "type", "param", "code"} and err["message"]
            outcomes["rejected"] += 1

    @settings(max_examples=150, deadline=None, database=None, derandomize=True,
              suppress_health_check=list(HealthCheck))
    @given(case=strategy)
    def fuzz(case) -> None:
        check(case.body)
        if isinstance(case.body, dict):  # the same body for a model that exists, one user turn
            fixed = {"model": "auto"} | ({"messages": [{"role": "user", "content": "hi"}]}
                                         if cls is ChatCompletionRequest else {})
            check(case.body | fixed)

    fuzz()
    assert outcomes["rejected"] > 0
    if mode == "positive":
        assert outcomes["plan"] > 0
