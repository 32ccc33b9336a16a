"""Every metric Turnout exports: imports each package's definitions and lists them.

deploy/ composes everything, so it is the one place allowed to import all the
definition modules (replicas.telemetry only holds the registry they fill).
`python -m deploy.metrics_catalog` prints the README's metrics reference table.
"""

from __future__ import annotations

import importlib

from replicas.telemetry import REGISTRY, MetricDef

DEFINITION_MODULES = ("gateway.metrics", "gateway.limits", "replicas.metrics", "router.live_metrics",
                      "cache.metrics", "migration.metrics")


def load_all() -> dict[str, MetricDef]:
    """Import every definition module and return the full registry (by defined name)."""
    for module in DEFINITION_MODULES:
        importlib.import_module(module)
    return dict(REGISTRY)


def exported_series() -> set[str]:
    """Every series name Turnout's metrics appear under in a scrape."""
    return {s for spec in load_all().values() for s in spec.series}


def reference_table() -> str:
    rows = ["| scraped name | type | labels | meaning |", "|---|---|---|---|"]
    for spec in sorted(load_all().values(), key=lambda s: s.name):
        labels = ", ".join(spec.labels) or "-"
        rows.append(f"| `{spec.exported}` | {spec.kind} | {labels} | {spec.description} |")
    return "\n".join(rows)


if __name__ == "__main__":
    print(reference_table())
