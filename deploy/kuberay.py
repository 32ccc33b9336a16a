"""Turnout config -> Ray Serve YAML and a KubeRay RayService manifest.

Both carry the same application: import path `deploy.app:build_app` with the config
text inline (`args.config_yaml`), so the cluster needs no file besides the image.
The RayService gets one worker group per model (GPUs from the model spec), a CPU
group for the gateway, cache and router, and Ray's metrics port named `metrics`
on every pod (scraped by the PodMonitor in deploy/k8s_addons.py).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

import yaml

from deploy import ingress
from deploy.config import TurnoutConfig, parse_config
from replicas.config import ModelSpec

IMPORT_PATH = "deploy.app:build_app"
APP_NAME = "turnout"
SERVE_PORT = 8000
METRICS_PORT = 8080  # Ray's metrics export port (KubeRay's default)
RAY_VERSION = "2.60.0"
PART_OF = {"app.kubernetes.io/part-of": "turnout"}


@dataclass(frozen=True)
class RenderOptions:
    name: str = "turnout"
    namespace: str = "turnout"
    image: str = "turnout:0.1.0"  # rayproject/ray:2.60.0-py311-gpu + `pip install turnout[gpu]`
    # None: point the cache at the Redis rendered beside the RayService.
    redis_url: str | None = None
    head_cpu: str = "4"
    head_memory: str = "16Gi"
    cpu_group_replicas: int = 1
    gpu_memory: str = "48Gi"

    @property
    def cluster_redis_url(self) -> str:
        return f"redis://{self.name}-redis.{self.namespace}.svc.cluster.local:6379/0"


class _Literal(str):
    """A string dumped as a YAML literal block (keeps the config readable)."""


def _literal(dumper: yaml.SafeDumper, s: _Literal) -> yaml.Node:
    return dumper.represent_scalar("tag:yaml.org,2002:str", s, style="|")


class _Dumper(yaml.SafeDumper):
    def ignore_aliases(self, data: Any) -> bool:  # no &id001 anchors in manifests
        return True


_Dumper.add_representer(_Literal, _literal)


def dump(obj: Any) -> str:
    return yaml.dump(obj, Dumper=_Dumper, sort_keys=False, default_flow_style=False, width=100)


def parse_text(text: str, source: str) -> TurnoutConfig:
    """Validate config text (raises deploy.config.ConfigError with a one-line message)."""
    from deploy.config import ConfigError

    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError:
        raise ConfigError(f"{source}: is not valid YAML") from None
    return parse_config(data, source)


def _clean_text(text: str) -> str:
    # A literal block cannot keep trailing spaces or tabs; neither changes the YAML's meaning.
    return "\n".join(line.rstrip() for line in text.expandtabs(2).splitlines()) + "\n"


def serve_config(config_text: str) -> dict:
    """The Ray Serve config (what `serve deploy` reads and serveConfigV2 holds)."""
    return {
        "proxy_location": "EveryNode",
        "http_options": {"host": "0.0.0.0", "port": SERVE_PORT},
        "applications": [{
            "name": APP_NAME, "route_prefix": "/", "import_path": IMPORT_PATH,
            "args": {"config_yaml": _Literal(_clean_text(config_text))},
        }],
    }


def render_serve_yaml(config_text: str, source: str) -> str:
    parse_text(config_text, source)  # refuse to render an invalid config
    header = (f"# Generated from {source} by `turnout deploy serve-yaml`; do not edit.\n"
              "# Run on an existing Ray cluster: serve deploy deploy/serve.yaml (or serve run).\n")
    return header + dump(serve_config(config_text))


def cluster_config_text(config_text: str, opts: RenderOptions) -> str:
    """The config the cluster runs: the cache uses the in-cluster Redis unless set."""
    data = yaml.safe_load(config_text)
    cache = data.setdefault("cache", {}) or {}
    data["cache"] = cache
    url = cache.get("redis_url") or ""
    if url and not any(h in url for h in ("127.0.0.1", "localhost", "[::1]")):
        return config_text  # a real Redis address: keep it (a loopback one means "this machine")
    cache["redis_url"] = opts.redis_url or opts.cluster_redis_url
    return yaml.safe_dump(data, sort_keys=False)


def _slug(name: str) -> str:
    return re.sub(r"[^a-z0-9-]+", "-", name.lower()).strip("-")[:40] or "model"


def _container(name: str, image: str, resources: dict, ports: list[dict], ray_env: dict) -> dict:
    env = {"HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", **ray_env}
    return {"name": name, "image": image, "imagePullPolicy": "IfNotPresent",
            "ports": ports, "resources": {"requests": resources, "limits": resources},
            "env": [{"name": k, "value": v} for k, v in env.items()],
            "lifecycle": {"preStop": {"exec": {"command": ["/bin/sh", "-c", "ray stop"]}}}}


def _metrics_port() -> dict:
    return {"containerPort": METRICS_PORT, "name": "metrics"}


def _template(container: dict, gpu: bool) -> dict:
    spec: dict[str, Any] = {"containers": [container]}
    if gpu:
        spec["tolerations"] = [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
    return {"metadata": {"labels": dict(PART_OF)}, "spec": spec}


def gpu_pods(spec: ModelSpec) -> tuple[int, int, int, int]:
    """(gpus per pod, pods now, min pods, max pods) for a model's worker group."""
    per_pod = max(1, math.ceil(spec.num_gpus))
    replicas_per_pod = max(1, int(per_pod // spec.num_gpus)) if spec.num_gpus else 1
    lo = spec.autoscaling.min_replicas if spec.autoscaling else spec.replicas
    hi = spec.autoscaling.max_replicas if spec.autoscaling else spec.replicas
    pods = lambda n: math.ceil(n / replicas_per_pod)  # noqa: E731
    return per_pod, pods(max(lo, 1)), pods(lo), pods(hi)


def model_group(spec: ModelSpec, opts: RenderOptions, ray_env: dict) -> dict:
    gpu = spec.num_gpus > 0
    per_pod, now, lo, hi = gpu_pods(spec)
    cpus = max(math.ceil(spec.num_cpus), spec.cpu_threads, 1) + 1
    resources: dict[str, Any] = {"cpu": str(cpus), "memory": opts.gpu_memory if gpu else "8Gi"}
    params = {"metrics-export-port": str(METRICS_PORT), "num-cpus": str(cpus)}
    if gpu:
        resources["nvidia.com/gpu"] = str(per_pod)
        params["num-gpus"] = str(per_pod)
    container = _container("ray-worker", opts.image, resources, [_metrics_port()], ray_env)
    return {"groupName": f"{'gpu' if gpu else 'cpu'}-{_slug(spec.name)}", "replicas": now,
            "minReplicas": lo, "maxReplicas": max(hi, now), "rayStartParams": params,
            "template": _template(container, gpu)}


def cpu_group(opts: RenderOptions, ray_env: dict) -> dict:
    # Gateway, cache (embedder) and router replicas land here, never on GPU pods' CPUs.
    resources = {"cpu": "4", "memory": "8Gi"}
    container = _container("ray-worker", opts.image, resources, [_metrics_port()], ray_env)
    return {"groupName": "cpu-services", "replicas": opts.cpu_group_replicas,
            "minReplicas": opts.cpu_group_replicas, "maxReplicas": max(opts.cpu_group_replicas, 4),
            "rayStartParams": {"metrics-export-port": str(METRICS_PORT), "num-cpus": "4"},
            "template": _template(container, False)}


def head_group(opts: RenderOptions, ray_env: dict) -> dict:
    ports = [{"containerPort": 6379, "name": "gcs-server"}, {"containerPort": 8265, "name": "dashboard"},
             {"containerPort": 10001, "name": "client"}, {"containerPort": SERVE_PORT, "name": "serve"},
             _metrics_port()]
    container = _container("ray-head", opts.image, {"cpu": opts.head_cpu, "memory": opts.head_memory},
                           ports, ray_env)
    # num-cpus 0: no replica is scheduled on the head, it only runs Ray's control plane.
    return {"rayStartParams": {"dashboard-host": "0.0.0.0", "num-cpus": "0",
                               "metrics-export-port": str(METRICS_PORT)},
            "template": _template(container, False)}


def rayservice(config_text: str, source: str, opts: RenderOptions) -> dict:
    cfg = parse_text(config_text, source)
    text = cluster_config_text(config_text, opts)
    env = ingress.ray_env(cfg.gateway.ingress)  # every node: Serve reads it where it starts
    return {
        "apiVersion": "ray.io/v1", "kind": "RayService",
        "metadata": {"name": opts.name, "namespace": opts.namespace, "labels": dict(PART_OF)},
        "spec": {
            "serveConfigV2": _Literal(dump(serve_config(text))),
            "rayClusterConfig": {
                "rayVersion": RAY_VERSION,
                "enableInTreeAutoscaling": any(m.autoscaling for m in cfg.models),
                "headGroupSpec": head_group(opts, env),
                "workerGroupSpecs": [cpu_group(opts, env)] + [model_group(m, opts, env) for m in cfg.models],
            },
        },
    }
