"""Grafana dashboards: up to date with their builder, and every PromQL metric is exported."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from dashboards import grafana_build
from deploy.metrics_catalog import exported_series, load_all

GRAFANA = Path(grafana_build.__file__).parent / "grafana"
FUNCTIONS = {"rate", "irate", "increase", "sum", "max", "min", "avg", "count", "topk", "bottomk",
             "histogram_quantile", "clamp_min", "clamp_max", "abs", "delta", "deriv", "label_values",
             "sum_over_time", "avg_over_time", "max_over_time", "vector", "scalar", "time"}
KEYWORDS = {"and", "or", "unless", "bool", "offset"}


def promql_metrics(expr: str) -> set[str]:
    """Metric names an expression reads (functions, labels, ranges and keywords removed)."""
    s = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    s = re.sub(r"\{[^}]*\}", "", s)
    s = re.sub(r"\[[^\]]*\]", "", s)
    s = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", s)
    s = re.sub(r"\$\w+", "", s)
    s = re.sub(r"(?<![A-Za-z_:])\d+(\.\d+)?([eE][+-]?\d+|ms|[smhdwy])?", "", s)  # numbers, durations
    names = set()
    for m in re.finditer(r"[A-Za-z_:][A-Za-z0-9_:]*", s):
        word, rest = m.group(), s[m.end():].lstrip()
        if rest.startswith("("):
            assert word in FUNCTIONS, f"unknown PromQL function {word!r} in {expr}"
        elif word not in KEYWORDS:
            names.add(word)
    return names


def dashboard_exprs() -> list[tuple[str, str]]:
    out = []
    for path in sorted(GRAFANA.glob("*.json")):
        board = json.loads(path.read_text())
        for panel in board["panels"]:
            out += [(f"{path.name}: {panel['title']}", t["expr"]) for t in panel["targets"]]
        for var in board["templating"]["list"]:
            if var["type"] == "query":
                # label_values(METRIC, LABEL): only the metric is a series name.
                query = re.sub(r"label_values\((.*),\s*\w+\)", r"\1", var["query"]["query"])
                out.append((f"{path.name}: ${var['name']}", query))
    return out


def test_parser_finds_metrics_and_rejects_typos() -> None:
    expr = ('histogram_quantile(0.95, sum by (le, model) (rate(ray_a_bucket{model=~"$model"}'
            '[$__rate_interval]))) / 1e6 + on(model) group_left(x) b_total offset 5m')
    assert promql_metrics(expr) == {"ray_a_bucket", "b_total"}
    with pytest.raises(AssertionError, match="rat"):
        promql_metrics("rat(x[5m])")


def test_dashboards_are_built_from_the_builder() -> None:
    assert sorted(p.stem for p in GRAFANA.glob("*.json")) == sorted(grafana_build.DASHBOARDS)
    for key in grafana_build.DASHBOARDS:
        assert (GRAFANA / f"{key}.json").read_text() == grafana_build.render(key), \
            f"{key}.json is stale: python -m dashboards.grafana_build"


def test_every_dashboard_metric_is_exported() -> None:
    exported = exported_series()
    exprs = dashboard_exprs()
    assert len(exprs) > 40
    used = set()
    for where, expr in exprs:
        names = promql_metrics(expr)
        assert names, f"{where}: no metric in {expr}"
        unknown = names - exported
        assert not unknown, f"{where}: {sorted(unknown)} not exported by the code"
        used |= names
    # And the other way: every metric the code defines is on some dashboard.
    unused = {spec.name for spec in load_all().values() if not used & set(spec.series)}
    assert not unused, f"metrics on no dashboard: {sorted(unused)}"


def test_panels_have_unique_ids_and_fit_the_grid() -> None:
    for path in GRAFANA.glob("*.json"):
        panels = json.loads(path.read_text())["panels"]
        assert len({p["id"] for p in panels}) == len(panels)
        assert all(p["gridPos"]["x"] + p["gridPos"]["w"] <= 24 for p in panels)


def test_readme_metrics_table_matches_the_code() -> None:
    from deploy.metrics_catalog import reference_table

    readme = (GRAFANA.parent / "README.md").read_text()
    assert reference_table() in readme, "dashboards/README.md: rerun python -m deploy.metrics_catalog"
