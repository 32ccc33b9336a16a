"""Builds the Grafana dashboards (dashboards/grafana/*.json) from compact panel specs.

`python -m dashboards.grafana_build` rewrites the JSON files; a test checks the files
are up to date and that every metric their PromQL names is one Turnout exports
(Ray's `ray_` prefix, `_total` on counters, `_bucket/_sum/_count` on histograms).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

OUT = Path(__file__).parent / "grafana"
RATE = "$__rate_interval"
DS = {"type": "prometheus", "uid": "${datasource}"}


@dataclass
class Panel:
    title: str
    exprs: list[tuple[str, str]]  # (PromQL, legend)
    unit: str = "short"
    kind: str = "timeseries"  # timeseries | stat | bargauge
    width: int = 12
    description: str = ""
    extra: dict = field(default_factory=dict)


def q(p: float, metric: str, by: str = "model", where: str = "") -> str:
    sel = f"{{{where}}}" if where else ""
    keys = f"le, {by}" if by else "le"
    return (f"histogram_quantile({p}, sum by ({keys}) "
            f"(rate(ray_{metric}_bucket{sel}[{RATE}])))")


def rate(metric: str, by: str, where: str = "") -> str:
    sel = f"{{{where}}}" if where else ""
    return f"sum by ({by}) (rate(ray_{metric}_total{sel}[{RATE}]))"


M = 'model=~"$model"'

FLEET = [
    Panel("Requests per second", [(rate("turnout_gateway_requests", "model", M), "{{model}}")], "reqps"),
    Panel("Errors per second", [(rate("turnout_gateway_errors", "model, status, code", M),
                                 "{{model}} {{status}} {{code}}")], "reqps"),
    Panel("Rate-limit store unreachable (requests/s)",
          [(rate("turnout_gateway_limiter_unavailable", "tenant, outcome", ""), "{{tenant}} {{outcome}}")],
          "reqps"),
    Panel("Replica failovers (requests/s: retried, resumed, exhausted)",
          [(rate("turnout_gateway_replica_failovers", "model, outcome", M), "{{model}} {{outcome}}")],
          "reqps"),
    Panel("Time to first token (p50, p95)",
          [(q(0.5, "turnout_gateway_time_to_first_token_seconds", where=M), "p50 {{model}}"),
           (q(0.95, "turnout_gateway_time_to_first_token_seconds", where=M), "p95 {{model}}")], "s"),
    Panel("Time per output token (p50, p95)",
          [(q(0.5, "turnout_gateway_time_per_output_token_seconds", where=M), "p50 {{model}}"),
           (q(0.95, "turnout_gateway_time_per_output_token_seconds", where=M), "p95 {{model}}")], "s"),
    Panel("End-to-end latency (p50, p95, p99)",
          [(q(p, "turnout_gateway_request_latency_seconds", where=M), f"p{int(p * 100)} {{{{model}}}}")
           for p in (0.5, 0.95, 0.99)], "s"),
    Panel("Tokens per second", [
        (rate("turnout_gateway_completion_tokens", "model", M), "generated {{model}}"),
        (rate("turnout_gateway_prompt_tokens", "model", M), "prompt {{model}}")]),
    Panel("Running requests per replica",
          [(f"sum by (model, replica) (ray_turnout_replica_running_requests{{{M}}})",
            "{{model}} {{replica}}")]),
    Panel("Waiting requests per replica",
          [(f"sum by (model, replica) (ray_turnout_replica_waiting_requests{{{M}}})",
            "{{model}} {{replica}}")]),
    Panel("KV cache use per replica",
          [(f"max by (model, replica) (ray_turnout_replica_kv_usage_ratio{{{M}}})",
            "{{model}} {{replica}}")], "percentunit", extra={"max": 1}),
    Panel("Freeness per replica (free KV blocks per running request)",
          [(f"max by (model, replica) (ray_turnout_replica_freeness_blocks{{{M}}})",
            "{{model}} {{replica}}")]),
    Panel("Tokens in flight per model",
          [(f"sum by (model) (ray_turnout_replica_in_flight_tokens{{{M}}})", "{{model}}")]),
    Panel("KV blocks used / capacity per model", [
        (f"sum by (model) (ray_turnout_replica_kv_used_blocks{{{M}}})", "used {{model}}"),
        (f"sum by (model) (ray_turnout_replica_kv_capacity_blocks{{{M}}})", "capacity {{model}}")]),
    Panel("Replicas draining", [("sum(ray_turnout_replica_draining)", "draining")], kind="stat", width=6),
    Panel("Aborted requests per second",
          [(rate("turnout_replica_aborted_requests", "model", M), "{{model}}")], "reqps", width=18),
]

SAVED = ("sum(increase(ray_turnout_router_baseline_cost_usd_total[$__range])) - "
         "sum(increase(ray_turnout_router_realised_cost_usd_total[$__range]))")
ROUTER = [
    Panel("Decisions per second by model", [(rate("turnout_router_decisions", "model"), "{{model}}")]),
    Panel("Decisions by category and model (range)",
          [("sum by (category, model) (increase(ray_turnout_router_decisions_total[$__range]))",
            "{{category}} -> {{model}}")], kind="bargauge"),
    Panel("Predicted vs realised cost (USD per hour)", [
        ("3600 * sum(rate(ray_turnout_router_predicted_cost_usd_total[$__rate_interval]))", "predicted"),
        ("3600 * sum(rate(ray_turnout_router_realised_cost_usd_total[$__rate_interval]))", "realised"),
        ("3600 * sum(rate(ray_turnout_router_baseline_cost_usd_total[$__rate_interval]))",
         "always-best")], "currencyUSD"),
    Panel("Money saved against always-best (range)", [(SAVED, "saved")], "currencyUSD", kind="stat", width=6),
    Panel("Saving ratio (range)", [(
        "1 - sum(increase(ray_turnout_router_realised_cost_usd_total[$__range])) / "
        "sum(increase(ray_turnout_router_baseline_cost_usd_total[$__range]))", "saved share")],
        "percentunit", kind="stat", width=6),
    Panel("Decision latency (p50, p95)", [
        (q(0.5, "turnout_router_decision_latency_seconds", by=""), "p50"),
        (q(0.95, "turnout_router_decision_latency_seconds", by=""), "p95")],
        "s"),
    Panel("Decisions by mode", [(rate("turnout_router_decisions", "mode"), "{{mode}}")], width=12),
]

HIT_RATE = ("sum by (category) (rate(ray_turnout_cache_hits_total[$__rate_interval])) / "
            "sum by (category) (rate(ray_turnout_cache_lookups_total[$__rate_interval]))")
CACHE = [
    Panel("Hit rate per category", [(HIT_RATE, "{{category}}")], "percentunit", extra={"max": 1}),
    Panel("Lookups, hits and misses per second", [
        (rate("turnout_cache_lookups", "category"), "lookups {{category}}"),
        (rate("turnout_cache_hits", "tier"), "hits {{tier}}"),
        ("sum(rate(ray_turnout_cache_misses_total[$__rate_interval]))", "misses")], "ops"),
    Panel("Lookup latency (p50, p95, p99)",
          [(q(p, "turnout_cache_lookup_latency_seconds", by="category"), f"p{int(p * 100)} {{{{category}}}}")
           for p in (0.5, 0.95, 0.99)], "s"),
    Panel("Entries per category", [("sum by (category) (ray_turnout_cache_entries)", "{{category}}")]),
    Panel("Evictions per second", [(rate("turnout_cache_evictions", "category, reason"),
                                    "{{category}} {{reason}}")], "ops"),
    Panel("Similarity threshold in force",
          [("max by (category) (ray_turnout_cache_similarity_threshold)", "{{category}}")]),
    Panel("Stores per second", [(rate("turnout_cache_stores", "category"), "{{category}}")], "ops"),
    Panel("Redis failures per second", [(rate("turnout_cache_redis_failures", "operation"),
                                         "{{operation}}")], "ops"),
    Panel("Responses served from cache (gateway)",
          [(rate("turnout_gateway_cache_hit_responses", "category, tier"), "{{category}} {{tier}}")],
          "reqps", width=24),
]

MIGRATION = [
    Panel("Migrations per second", [
        (rate("turnout_migration_started", "reason"), "started {{reason}}"),
        (rate("turnout_migration_completed", "reason"), "completed {{reason}}"),
        (rate("turnout_migration_aborted", "reason"), "aborted {{reason}}")], "ops"),
    Panel("Aborts by cause (range)",
          [("sum by (cause) (increase(ray_turnout_migration_aborted_total[$__range]))", "{{cause}}")],
          kind="bargauge"),
    Panel("Downtime (p50, p99)", [
        (q(0.5, "turnout_migration_downtime_seconds"), "p50 {{model}}"),
        (q(0.99, "turnout_migration_downtime_seconds"), "p99 {{model}}")], "s"),
    Panel("Migration duration (p50, p95)", [
        (q(0.5, "turnout_migration_duration_seconds"), "p50 {{model}}"),
        (q(0.95, "turnout_migration_duration_seconds"), "p95 {{model}}")], "s"),
    Panel("KV bytes moved per second", [(rate("turnout_migration_transferred_bytes", "model"),
                                         "{{model}}")], "Bps"),
    Panel("Migrations in flight", [("sum by (model) (ray_turnout_migration_in_flight)", "{{model}}")]),
    Panel("Success ratio (range)", [(
        "sum(increase(ray_turnout_migration_completed_total[$__range])) / "
        "sum(increase(ray_turnout_migration_started_total[$__range]))", "completed / started")],
        "percentunit", kind="stat", width=24),
]

DASHBOARDS = {
    "fleet": ("Turnout / Fleet", FLEET, True),
    "router": ("Turnout / Router", ROUTER, False),
    "cache": ("Turnout / Semantic cache", CACHE, False),
    "migration": ("Turnout / Migration", MIGRATION, False),
}


def _panel(i: int, p: Panel, x: int, y: int) -> dict:
    defaults: dict = {"unit": p.unit, **p.extra}
    return {
        "id": i + 1, "type": p.kind, "title": p.title, "description": p.description,
        "datasource": DS, "gridPos": {"h": 8, "w": p.width, "x": x, "y": y},
        "fieldConfig": {"defaults": defaults, "overrides": []},
        "options": {"legend": {"displayMode": "list", "placement": "bottom"}} if p.kind == "timeseries"
        else {"reduceOptions": {"calcs": ["lastNotNull"]}},
        "targets": [{"refId": chr(65 + j), "datasource": DS, "expr": e, "legendFormat": legend}
                    for j, (e, legend) in enumerate(p.exprs)],
    }


def _templating(with_model: bool) -> dict:
    items: list[dict] = [{"name": "datasource", "type": "datasource", "query": "prometheus",
                          "label": "Prometheus"}]
    if with_model:
        items.append({"name": "model", "type": "query", "datasource": DS, "includeAll": True,
                      "multi": True, "allValue": ".*", "refresh": 2,
                      "query": {"query": "label_values(ray_turnout_replica_running_requests, model)",
                                "refId": "model"},
                      "definition": "label_values(ray_turnout_replica_running_requests, model)"})
    return {"list": items}


def build(key: str) -> dict:
    title, panels, with_model = DASHBOARDS[key]
    out, x, y = [], 0, 0
    for i, p in enumerate(panels):
        if x + p.width > 24:
            x, y = 0, y + 8
        out.append(_panel(i, p, x, y))
        x += p.width
    return {"uid": f"turnout-{key}", "title": title, "tags": ["turnout"], "editable": True,
            "schemaVersion": 39, "version": 1, "refresh": "10s", "timezone": "browser",
            "time": {"from": "now-1h", "to": "now"}, "templating": _templating(with_model),
            "annotations": {"list": []}, "panels": out}


def render(key: str) -> str:
    return json.dumps(build(key), indent=2) + "\n"


def main() -> None:
    OUT.mkdir(exist_ok=True)
    for key in DASHBOARDS:
        (OUT / f"{key}.json").write_text(render(key))
        print(f"wrote {OUT / (key + '.json')}")


if __name__ == "__main__":
    main()
