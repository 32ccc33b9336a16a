"""Pure gateway logic: request validation, model resolution, limits, keys (no engines)."""

from __future__ import annotations

import pytest

from gateway.auth import KeyRing
from gateway.caller import ModelCaller
from gateway.config import GatewaySpec
from gateway.errors import APIError
from gateway.openai_format import Assembled
from gateway.protocol import ChatCompletionRequest, CompletionRequest, parse_request
from gateway.service import Completions
from replicas.config import ModelSpec

MODELS = [ModelSpec(name="small", source="tiny-llama", engine_args={"max_model_len": 512}),
          ModelSpec(name="big", source="tiny-llama")]


def completions(**gw) -> Completions:
    return Completions(GatewaySpec(**gw), MODELS, ModelCaller({}, 5))


def chat_req(**kw) -> ChatCompletionRequest:
    body = {"model": "small", "messages": [{"role": "user", "content": "hi"}]} | kw
    return parse_request(ChatCompletionRequest, body)


def test_parse_names_first_bad_parameter() -> None:
    with pytest.raises(APIError) as e:
        parse_request(ChatCompletionRequest, {"model": "x", "messages": [{"role": "user", "content": "a"}],
                                              "top_p": 5})
    assert (e.value.status, e.value.param) == (400, "top_p")
    with pytest.raises(APIError) as e:
        parse_request(ChatCompletionRequest, {"model": "x", "messages": [{"role": "system", "content": "a"}]})
    assert e.value.param == "messages"
    with pytest.raises(APIError) as e:
        parse_request(CompletionRequest, {"model": "x", "prompt": ["ok", ""]})
    assert e.value.param == "prompt"
    with pytest.raises(APIError) as e:
        parse_request(ChatCompletionRequest, {"model": "x", "messages": [{"role": "user", "content": "a"}],
                                              "stop": ["1", "2", "3", "4", "5"]})
    assert e.value.param == "stop"


@pytest.mark.parametrize("field,value", [("stop", ["ok", ""]), ("stop", ""), ("logit_bias", {"abc": 1}),
                                         ("logit_bias", {"12": 101}), ("logit_bias", {"-3": 1})])
def test_inputs_the_engine_would_choke_on_are_400s_naming_the_field(field: str, value: object) -> None:
    """Found by the HTTP fuzz: these reached vLLM and came back as 500s."""
    with pytest.raises(APIError) as e:
        parse_request(CompletionRequest, {"model": "x", "prompt": "a", field: value})
    assert (e.value.status, e.value.param) == (400, field)


def test_sampling_maps_openai_fields() -> None:
    s = chat_req(max_completion_tokens=7, logprobs=True, top_logprobs=3, seed=5, stop="x",
                 response_format={"type": "json_object"}).sampling()
    assert s["max_tokens"] == 7 and s["logprobs"] == 3 and s["seed"] == 5 and s["stop"] == "x"
    assert s["response_format"]["type"] == "json_object"
    assert chat_req().sampling()["temperature"] == 1.0  # OpenAI's default


def test_model_resolution_and_tenant_allow_list() -> None:
    c = completions(default_model="big", require_auth=True,
                    tenants=[{"name": "t", "api_keys": ["k"], "allowed_models": ["small"]}])
    keys = KeyRing(c.spec)
    tenant = keys.caller("Bearer k")
    assert c.resolve_model("small", tenant)[0] == "small"
    with pytest.raises(APIError) as e:
        c.resolve_model("big", tenant)
    assert (e.value.status, e.value.code) == (404, "model_not_found")
    with pytest.raises(APIError):
        c.resolve_model("auto", tenant)  # default "big" is not allowed for this tenant
    anyone = KeyRing(GatewaySpec()).caller(None)
    assert completions(default_model="big").resolve_model("auto", anyone)[0] == "big"


def test_limits_use_the_model_context_and_config() -> None:
    c = completions(limits={"max_tokens": 1000, "max_n": 2, "max_messages": 2})
    who = KeyRing(c.spec).caller(None)
    with pytest.raises(APIError) as e:  # found by the HTTP fuzz: vLLM refused it as a 500
        c.plan(chat_req(n=2, temperature=0), who)
    assert (e.value.status, e.value.param) == (400, "n")
    assert len(c.plan(chat_req(n=2, temperature=0.5), who).payloads) == 1
    with pytest.raises(APIError) as e:
        c.plan(chat_req(max_tokens=513), who)  # small's context is 512
    assert e.value.param == "max_tokens"
    c.plan(chat_req(model="big", max_tokens=1000), who)
    with pytest.raises(APIError) as e:
        c.plan(chat_req(model="big", max_tokens=1001), who)
    with pytest.raises(APIError) as e:
        c.plan(chat_req(n=3), who)
    assert e.value.param == "n"
    msgs = [{"role": "user", "content": "a"}] * 3
    with pytest.raises(APIError) as e:
        c.plan(chat_req(messages=msgs), who)
    assert e.value.param == "messages"


def test_plan_carries_priority_and_headers() -> None:
    c = completions(tenants=[{"name": "gold", "api_keys": ["g"], "priority": 5}])
    who = KeyRing(c.spec).caller("Bearer g")
    plan = c.plan(chat_req(), who)
    assert plan.payloads[0]["priority"] == 5
    assert plan.headers["x-turnout-model"] == "small"
    assert c.plan(chat_req(priority=1), who).payloads[0]["priority"] == 1
    multi = c.plan(parse_request(CompletionRequest, {"model": "big", "prompt": ["a", "b", "c"]}), who)
    assert [p["prompt"] for p in multi.payloads] == ["a", "b", "c"]
    # No max_tokens: the replica may fill the context, but never past the configured limit.
    capped = completions(limits={"max_tokens": 64}).plan(chat_req(), who)
    assert capped.payloads[0]["max_tokens_cap"] == 64 and "max_tokens" not in capped.payloads[0]["sampling"]


def test_keyring_requires_and_checks_keys() -> None:
    spec = GatewaySpec(require_auth=True, admin_keys=["adm"], tenants=[{"name": "t", "api_keys": ["k"]}])
    keys = KeyRing(spec)
    for header in (None, "Bearer", "Basic k", "Bearer wrong"):
        with pytest.raises(APIError) as e:
            keys.caller(header)
        assert e.value.status == 401
    assert keys.caller("Bearer k").tenant.name == "t"
    assert keys.admin("Bearer adm").is_admin
    for header in (None, "Bearer k", "Bearer wrong"):
        with pytest.raises(APIError) as e:
            keys.admin(header)
        assert (e.value.status, e.value.code) == (401, "invalid_admin_key")
    with pytest.raises(APIError) as e:
        KeyRing(GatewaySpec()).admin("Bearer anything")
    assert (e.value.status, e.value.code) == (403, "admin_disabled")


def test_assembled_body_counts_tokens_per_choice() -> None:
    out = Assembled("chat", "id1", "m", 0, prompt_tokens=3)
    out.choice(1).add({"text": "b", "token_ids": [5], "finish_reason": "stop"})
    out.choice(0).add({"text": "a", "token_ids": [1, 2], "finish_reason": None})
    out.choice(0).add({"text": "c", "token_ids": [3], "finish_reason": "length"})
    body = out.body()
    assert [c["message"]["content"] for c in body["choices"]] == ["ac", "b"]
    assert [c["finish_reason"] for c in body["choices"]] == ["length", "stop"]
    assert body["usage"] == {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7}
