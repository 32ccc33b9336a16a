"""Kubernetes objects rendered beside the RayService: Redis, Prometheus scraping, dashboards.

- Redis: a Deployment + Service for the semantic cache's documents (no persistence:
  the cache is rebuildable, and losing it costs only misses).
- Prometheus: a PodMonitor (Prometheus Operator) for the `metrics` port every Ray
  pod exposes (one endpoint per node, Ray's convention), and the same as a plain
  `scrape_configs` entry in a ConfigMap for a Prometheus without the operator.
- Grafana: the dashboards as a ConfigMap labelled `grafana_dashboard: "1"` (the label
  Grafana's dashboard sidecar watches).
"""

from __future__ import annotations

import json
from pathlib import Path

from deploy.kuberay import PART_OF, RenderOptions, _Literal, dump

GRAFANA_DIR = Path(__file__).resolve().parent.parent / "dashboards" / "grafana"
REDIS_IMAGE = "redis:7.2-alpine"


def _meta(name: str, opts: RenderOptions, **labels: str) -> dict:
    return {"name": name, "namespace": opts.namespace, "labels": {**PART_OF, **labels}}


def redis(opts: RenderOptions) -> list[dict]:
    name = f"{opts.name}-redis"
    selector = {"app.kubernetes.io/name": name}
    container = {
        "name": "redis", "image": REDIS_IMAGE,
        "args": ["--save", "", "--appendonly", "no", "--maxmemory-policy", "noeviction"],
        "ports": [{"containerPort": 6379, "name": "redis"}],
        "resources": {"requests": {"cpu": "500m", "memory": "1Gi"}, "limits": {"memory": "4Gi"}},
        "readinessProbe": {"exec": {"command": ["redis-cli", "ping"]}, "periodSeconds": 5},
    }
    deployment = {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": _meta(name, opts, **selector),
        "spec": {"replicas": 1, "selector": {"matchLabels": selector},
                 "template": {"metadata": {"labels": {**PART_OF, **selector}},
                              "spec": {"containers": [container]}}},
    }
    service = {
        "apiVersion": "v1", "kind": "Service", "metadata": _meta(name, opts, **selector),
        "spec": {"selector": selector, "ports": [{"name": "redis", "port": 6379, "targetPort": 6379}]},
    }
    return [deployment, service]


def pod_monitor(opts: RenderOptions) -> dict:
    return {
        "apiVersion": "monitoring.coreos.com/v1", "kind": "PodMonitor",
        "metadata": _meta(f"{opts.name}-ray", opts),
        "spec": {"selector": {"matchLabels": dict(PART_OF)},
                 "podMetricsEndpoints": [{"port": "metrics", "interval": "15s",
                                          "relabelings": [{"sourceLabels": ["__meta_kubernetes_pod_name"],
                                                           "targetLabel": "pod"}]}]},
    }


def scrape_config(opts: RenderOptions) -> dict:
    """A plain Prometheus scrape job (kubernetes_sd pods, keep the `metrics` port)."""
    key, value = next(iter(PART_OF.items()))
    label = "__meta_kubernetes_pod_label_" + key.replace(".", "_").replace("/", "_").replace("-", "_")
    job = {
        "job_name": f"{opts.name}-ray",
        "scrape_interval": "15s",
        "kubernetes_sd_configs": [{"role": "pod", "namespaces": {"names": [opts.namespace]}}],
        "relabel_configs": [
            {"source_labels": [label], "regex": value, "action": "keep"},
            {"source_labels": ["__meta_kubernetes_pod_container_port_name"], "regex": "metrics",
             "action": "keep"},
            {"source_labels": ["__meta_kubernetes_pod_name"], "target_label": "pod"},
        ],
    }
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": _meta(f"{opts.name}-prometheus-scrape", opts),
            "data": {"scrape-turnout.yaml": _Literal(dump({"scrape_configs": [job]}))}}


def dashboards(opts: RenderOptions) -> dict:
    data = {}
    for path in sorted(GRAFANA_DIR.glob("*.json")):
        # Re-serialised compactly: ConfigMaps are limited to 1 MiB.
        data[f"turnout-{path.name}"] = json.dumps(json.loads(path.read_text()), separators=(",", ":"))
    return {"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": _meta(f"{opts.name}-grafana-dashboards", opts, grafana_dashboard="1"),
            "data": data}


def namespace(opts: RenderOptions) -> dict:
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": opts.namespace,
                                                                  "labels": dict(PART_OF)}}

