"""The app builder: one Turnout config -> one Ray Serve application.

`build_app` is the import path the Ray Serve YAML and the RayService manifest use
(`deploy.app:build_app`, args: {config: PATH} or {config_yaml: TEXT}); `turnout serve`
calls `build_application` directly.
"""

from __future__ import annotations

from typing import Any

import yaml
from ray import serve
from ray.serve import Application
from ray.serve.config import RequestRouterConfig

from deploy.config import TurnoutConfig, load_config, parse_config
from gateway.app import GatewayIngress, app
from migration.protocol import kv_transfer_config
from migration.rescheduler import Rescheduler
from replicas import packs
from replicas.config import ModelSpec
from replicas.deployment import ModelReplica

GATEWAY_NAME = "gateway"
RESCHEDULER_NAME = "rescheduler"
FREENESS_ROUTER = "replicas.request_router:FreenessRequestRouter"


def model_deployment_name(model: str) -> str:
    return "model-" + model.replace("/", "-").replace(":", "-")


def model_deployment(spec: ModelSpec, cfg: TurnoutConfig) -> Any:
    options: dict[str, Any] = {
        "name": model_deployment_name(spec.name),
        "max_ongoing_requests": spec.max_ongoing_requests,
        "ray_actor_options": {"num_cpus": spec.num_cpus, "num_gpus": spec.num_gpus},
        "health_check_period_s": 5,
        "health_check_timeout_s": 30,
        # Serve stops routing to a stopping replica, then waits for its requests.
        "graceful_shutdown_timeout_s": spec.shutdown_grace_s,
        "graceful_shutdown_wait_loop_s": 0.5,
    }
    if spec.autoscaling:
        a = spec.autoscaling
        options["autoscaling_config"] = {
            "min_replicas": a.min_replicas, "max_replicas": a.max_replicas,
            "target_ongoing_requests": a.target_ongoing_requests}
    else:
        options["num_replicas"] = spec.replicas
    if spec.request_router == "freeness":
        options["request_router_config"] = RequestRouterConfig(
            request_router_class=FREENESS_ROUTER, request_routing_stats_period_s=0.1,
            request_routing_stats_timeout_s=1.0)
    extensions, headroom = [], 0
    if cfg.migration.enabled:
        extensions = [{"name": "migration", "import_path": "migration.agent:MigrationAgent",
                       "kwargs": {"spec": cfg.migration.model_dump()}}]
        headroom = cfg.migration.headroom_blocks
    dep = serve.deployment(ModelReplica).options(**options)
    return dep.bind(spec.name, spec.source, engine_args_for(spec, cfg), spec.cpu_threads, extensions,
                    dict(spec.env), headroom)


def engine_args_for(spec: ModelSpec, cfg: TurnoutConfig) -> dict[str, Any]:
    """The vLLM engine arguments a model's replicas start with: the pack's defaults, then
    the config's, then (with migration on) our KV connector unless the config names one."""
    engine_args = {**packs.engine_defaults(spec.source), **spec.engine_args}
    if cfg.migration.enabled:
        # Our KV connector, loaded by module path (no patching of vLLM).
        engine_args = {"kv_transfer_config": kv_transfer_config(cfg.migration.max_blocks_per_step),
                       **engine_args}
    return engine_args


def build_application(cfg: TurnoutConfig) -> Application:
    handles = {m.name: model_deployment(m, cfg) for m in cfg.models}
    rescheduler = None
    if cfg.migration.enabled:
        rescheduler = serve.deployment(Rescheduler).options(
            name=RESCHEDULER_NAME, num_replicas=1, ray_actor_options={"num_cpus": 0},
            max_ongoing_requests=100).bind(cfg.migration.model_dump(), handles, None,
                                           cfg.migration.rescheduler_auto)
    ingress = serve.deployment(serve.ingress(app)(GatewayIngress)).options(
        name=GATEWAY_NAME, num_replicas=cfg.gateway.num_replicas,
        ray_actor_options={"num_cpus": 0}, max_ongoing_requests=1000,
        graceful_shutdown_timeout_s=cfg.gateway.shutdown_grace_s, graceful_shutdown_wait_loop_s=0.5)
    return ingress.bind(cfg.gateway.model_dump(), [m.model_dump() for m in cfg.models], handles,
                        cfg.cache.model_dump(), cfg.router.model_dump(by_alias=True), rescheduler)


def build_app(args: dict[str, Any]) -> Application:
    """Ray Serve application builder (`serve run deploy.app:build_app config=FILE`)."""
    if args.get("config_yaml"):
        cfg = parse_config(yaml.safe_load(args["config_yaml"]), "config_yaml")
    else:
        cfg = load_config(args.get("config"))
    return build_application(cfg)
