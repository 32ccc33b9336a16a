"""KubeRay manifest, Serve YAML and `turnout deploy` CLI (no cluster needed)."""

from __future__ import annotations

import importlib
from functools import cache
from pathlib import Path

import jsonschema
import pytest
import yaml

from deploy import k8s_addons
from deploy.cli import main
from deploy.kuberay import IMPORT_PATH, RenderOptions, dump, rayservice, render_serve_yaml

ROOT = Path(__file__).resolve().parent.parent
SCHEMA = ROOT / "deploy" / "kuberay" / "schema" / "ray.io_rayservices.yaml"
DEFAULT = ROOT / "deploy" / "default.yaml"
GPU = "deploy/kuberay/gpu-example.yaml"


@cache
def crd_schema() -> dict:
    crd = yaml.safe_load(SCHEMA.read_text())
    (v1,) = [v for v in crd["spec"]["versions"] if v["name"] == "v1"]
    return v1["schema"]["openAPIV3Schema"]


def validate(obj: dict) -> None:
    # OpenAPI v3 schemas are JSON Schema plus x-kubernetes-* keywords (ignored here).
    jsonschema.Draft7Validator(crd_schema()).validate(obj)


def render(path: Path | str = DEFAULT, **kw) -> dict:
    text = (ROOT / path).read_text()
    return yaml.safe_load(dump(rayservice(text, str(path), RenderOptions(**kw))))


def test_rayservice_validates_against_crd() -> None:
    for path in (DEFAULT, GPU):
        validate(render(path))


def test_schema_rejects_a_broken_manifest() -> None:
    obj = render()
    del obj["spec"]["rayClusterConfig"]["workerGroupSpecs"][0]["groupName"]
    with pytest.raises(jsonschema.ValidationError, match="groupName"):
        validate(obj)
    obj = render()
    obj["spec"]["rayClusterConfig"]["workerGroupSpecs"][0]["minReplicas"] = "one"
    with pytest.raises(jsonschema.ValidationError):
        validate(obj)


def test_serve_config_import_path_resolves_to_the_app_builder() -> None:
    serve_cfg = yaml.safe_load(render()["spec"]["serveConfigV2"])
    (app,) = serve_cfg["applications"]
    assert app["import_path"] == IMPORT_PATH
    module, _, attr = app["import_path"].partition(":")
    from deploy.app import build_app

    assert getattr(importlib.import_module(module), attr) is build_app
    cfg = yaml.safe_load(app["args"]["config_yaml"])
    assert [m["name"] for m in cfg["models"]] == ["smollm2-135m", "gemma3-270m"]
    # The cluster's cache points at the Redis rendered beside it.
    assert cfg["cache"]["redis_url"] == RenderOptions().cluster_redis_url
    assert any(o["kind"] == "Service" and o["metadata"]["name"] == "turnout-redis"
               for o in k8s_addons.redis(RenderOptions()))


def test_gpu_worker_groups_follow_the_model_specs() -> None:
    groups = {g["groupName"]: g for g in render(GPU)["spec"]["rayClusterConfig"]["workerGroupSpecs"]}
    llama, qwen = groups["gpu-llama-3-1-8b"], groups["gpu-qwen2-5-1-5b"]
    gpus = lambda g: g["template"]["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"]  # noqa: E731
    assert gpus(llama) == "1" and llama["rayStartParams"]["num-gpus"] == "1"
    assert (llama["minReplicas"], llama["maxReplicas"]) == (1, 4)  # autoscaling bounds
    assert gpus(qwen) == "1" and qwen["replicas"] == 1  # two half-GPU replicas share one GPU
    assert render(GPU)["spec"]["rayClusterConfig"]["enableInTreeAutoscaling"] is True
    for g in groups.values():
        ports = g["template"]["spec"]["containers"][0]["ports"]
        assert {"containerPort": 8080, "name": "metrics"} in ports
        assert g["rayStartParams"]["metrics-export-port"] == "8080"


def _env_of_every_container(obj: dict) -> list[dict[str, str]]:
    cluster = obj["spec"]["rayClusterConfig"]
    groups = [cluster["headGroupSpec"], *cluster["workerGroupSpecs"]]
    return [{e["name"]: e["value"] for e in c["env"]}
            for g in groups for c in g["template"]["spec"]["containers"]]


def test_every_ray_node_runs_the_configured_ingress(tmp_path: Path) -> None:
    envs = _env_of_every_container(render())
    assert len(envs) == 4 and all(e["RAY_SERVE_ENABLE_HA_PROXY"] == "1" for e in envs)  # default
    cfg = yaml.safe_load(DEFAULT.read_text())
    cfg["gateway"] = {**(cfg.get("gateway") or {}), "ingress": "proxy"}
    (tmp_path / "proxy.yaml").write_text(yaml.safe_dump(cfg))
    assert all(e["RAY_SERVE_ENABLE_HA_PROXY"] == "0" for e in _env_of_every_container(render(tmp_path / "proxy.yaml")))
    cfg["gateway"]["ingress"] = "nginx"
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(cfg))
    with pytest.raises(Exception, match="gateway.ingress"):
        render(tmp_path / "bad.yaml")


def _deployments(app) -> dict[str, dict]:
    from ray.serve._private.build_app import build_app as serve_build

    built = serve_build(app, name="turnout")
    return {d.name: {"replicas": d.num_replicas, "actor": d.ray_actor_options,
                     "max_ongoing": d.max_ongoing_requests} for d in built.deployments}


def test_serve_yaml_is_generated_and_builds_the_same_application() -> None:
    text = DEFAULT.read_text()
    checked_in = (ROOT / "deploy" / "serve.yaml").read_text()
    assert checked_in == render_serve_yaml(text, "deploy/default.yaml"), \
        "deploy/serve.yaml is stale: turnout deploy serve-yaml --config deploy/default.yaml --out deploy/serve.yaml"
    (app,) = yaml.safe_load(checked_in)["applications"]
    from deploy.app import build_app, build_application
    from deploy.config import load_config

    from_yaml = _deployments(build_app(app["args"]))
    direct = _deployments(build_application(load_config(DEFAULT)))
    assert from_yaml == direct
    assert set(direct) == {"gateway", "model-smollm2-135m", "model-gemma3-270m"}


def test_checked_in_manifests_are_up_to_date(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(ROOT)
    assert main(["deploy", "render", "--config", GPU, "--out", str(tmp_path)]) == 0
    shipped = ROOT / "deploy" / "kuberay" / "manifests"
    for f in sorted(tmp_path.iterdir()):
        assert (shipped / f.name).read_text() == f.read_text(), f"{f.name} is stale: rerun the render"
    docs = [d for d in yaml.safe_load_all((tmp_path / "monitoring.yaml").read_text()) if d]
    assert {d["kind"] for d in docs} == {"PodMonitor", "ConfigMap"}
    dash = yaml.safe_load((tmp_path / "dashboards.yaml").read_text())
    assert dash["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert len(dash["data"]) == 4


@pytest.mark.parametrize("body,needle", [
    ("models: []\n", "models: List should have at least 1 item"),
    ("models:\n  - name: a\n    source: tiny-llama\n    num_gpus: -1\n", "models.a.num_gpus"),
    ("models: [\n", "is not valid YAML"),
])
def test_bad_config_gives_one_line_error(tmp_path: Path, capsys, body: str, needle: str) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(body)
    for cmd in (["deploy", "render", "--config", str(bad)], ["deploy", "serve-yaml", "--config", str(bad)]):
        assert main(cmd) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and needle in err, err
    assert main(["deploy", "render", "--config", str(tmp_path / "missing.yaml")]) == 2
    assert "no such config file" in capsys.readouterr().err


def test_render_to_stdout_is_multi_document_yaml(capsys) -> None:
    assert main(["deploy", "render", "--config", str(DEFAULT)]) == 0
    kinds = [d["kind"] for d in yaml.safe_load_all(capsys.readouterr().out) if d]
    assert kinds == ["Namespace", "RayService", "Deployment", "Service", "PodMonitor", "ConfigMap", "ConfigMap"]
