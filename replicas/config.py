"""Config section for models and their replicas (owned by replicas/)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

# Sources a model pack can be built from with nothing but pip-installed wheels.
BUILTIN_SOURCES = ("smollm2-135m-instruct", "gemma3-270m", "tiny-llama")


class AutoscalingSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    min_replicas: int = Field(1, ge=0)
    max_replicas: int = Field(1, ge=1)
    target_ongoing_requests: float = Field(8.0, gt=0)

    @model_validator(mode="after")
    def _bounds(self) -> AutoscalingSpec:
        if self.max_replicas < self.min_replicas:
            raise ValueError("max_replicas must be >= min_replicas")
        return self


class ModelSpec(BaseModel):
    """One servable model: where its weights come from, how its engine runs, what it costs."""

    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9._:/-]+$")
    # A builtin pack name (see BUILTIN_SOURCES) or a path to a Hugging Face model folder.
    source: str
    # Passed to vllm AsyncEngineArgs (e.g. max_model_len, block_size, dtype).
    engine_args: dict[str, Any] = Field(default_factory=dict)
    price_input_per_m: float = Field(0.0, ge=0, description="USD per million prompt tokens")
    price_output_per_m: float = Field(0.0, ge=0, description="USD per million generated tokens")
    replicas: int = Field(1, ge=1)
    autoscaling: AutoscalingSpec | None = None
    max_ongoing_requests: int = Field(64, ge=1)
    # Scale-in, redeploy or shutdown: a stopping replica gets no new requests and
    # finishes its running ones for up to this long before it is killed.
    shutdown_grace_s: float = Field(300.0, ge=0)
    # CPU threads the engine may use (OMP); 0 lets vLLM decide.
    cpu_threads: int = Field(1, ge=0)
    # Ray resources per replica (GPU clusters: num_gpus: 1). 0 CPUs: engines share the node.
    num_cpus: float = Field(0.0, ge=0)
    num_gpus: float = Field(0.0, ge=0)
    # Extra environment for the engine (e.g. VLLM_CPU_KVCACHE_SPACE in GiB).
    env: dict[str, str] = Field(default_factory=dict)
    # Chat template for base models that ship none (a Jinja string).
    chat_template: str | None = None
    # How Ray Serve picks a replica: Llumnix freeness (replicas/request_router.py) or
    # Serve's default power-of-two choices.
    request_router: Literal["freeness", "power_of_two"] = "freeness"
    # The key of this model's quality scores in the router's training data.
    router_name: str | None = None

    @field_validator("source")
    @classmethod
    def _source(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("source must name a builtin pack or a model folder")
        return v

    @property
    def max_model_len(self) -> int:
        return int(self.engine_args.get("max_model_len", 2048))
