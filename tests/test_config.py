"""Config validation: one-line errors naming the field; the CLI reports them and exits 2."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from deploy.config import ConfigError, load_config, parse_config
from gateway.config import hash_key

BASE = {"models": [{"name": "m1", "source": "tiny-llama"}]}


def test_embedded_default_is_valid_and_names_two_real_models() -> None:
    cfg = load_config(None)
    assert [m.source for m in cfg.models] == ["smollm2-135m-instruct", "gemma3-270m"]
    assert cfg.default_model == "smollm2-135m"


def test_test_config_is_valid() -> None:
    cfg = load_config(Path(__file__).parent / "tiny.yaml")
    assert [m.name for m in cfg.models] == ["tiny-a", "tiny-b"]
    assert cfg.model("tiny-b").max_model_len == 1024


@pytest.mark.parametrize("mutate, fragment", [
    (lambda d: d["models"][0].update(price_input_per_m=-1), "models.m1.price_input_per_m"),
    (lambda d: d["models"][0].update(replicas=0), "models.m1.replicas"),
    (lambda d: d["models"][0].pop("source"), "models.m1.source"),
    (lambda d: d["models"][0].update(colour="red"), "models.m1.colour"),
    (lambda d: d["models"].append({"name": "m1", "source": "x"}), "duplicate model name 'm1'"),
    (lambda d: d.update(models=[]), "models"),
    (lambda d: d.update(gateway={"default_model": "nope"}), "gateway.default_model"),
    (lambda d: d.update(gateway={"port": 70000}), "gateway.port"),
    (lambda d: d.update(gateway={"tenants": [{"name": "t", "allowed_models": ["zz"]}]}),
     "gateway.tenants.t.allowed_models"),
    (lambda d: d.update(surprise=1), "surprise"),
])
def test_invalid_config_error_names_the_field(mutate, fragment: str) -> None:
    data = {"models": [dict(m) for m in BASE["models"]]}
    mutate(data)
    with pytest.raises(ConfigError) as e:
        parse_config(data, "cfg.yaml")
    msg = str(e.value)
    assert "\n" not in msg
    assert msg.startswith("cfg.yaml: ")
    assert fragment in msg


def test_keys_are_hashed_on_load() -> None:
    cfg = parse_config({**BASE, "gateway": {"admin_keys": ["secret-admin"],
                                            "tenants": [{"name": "t", "api_keys": ["k1"]}]}})
    assert cfg.gateway.admin_keys == [hash_key("secret-admin")]
    assert cfg.gateway.tenants[0].api_keys == [hash_key("k1")]
    assert "k1" not in cfg.model_dump_json()


def test_not_yaml_and_missing_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("models: [\n  - name: x\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)
    with pytest.raises(ConfigError, match="no such config file"):
        load_config(tmp_path / "missing.yaml")
    top = tmp_path / "list.yaml"
    top.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="top level must be a mapping"):
        load_config(top)


def test_cli_reports_one_line_and_exit_code_2(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("models:\n  - name: a\n    source: tiny-llama\n    replicas: -3\n")
    r = subprocess.run([sys.executable, "-m", "deploy.cli", "config", "check", str(bad)],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1
    assert "models.a.replicas" in lines[0]
    r = subprocess.run([sys.executable, "-m", "deploy.cli", "serve", "--config", str(bad)],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2
    assert "models.a.replicas" in r.stderr


@pytest.mark.parametrize("artifact,reason", [("missing.npz", "does not exist"), ("junk.npz", "corrupt")])
def test_a_bad_router_artifact_fails_before_anything_starts(tmp_path: Path, artifact: str,
                                                            reason: str) -> None:
    (tmp_path / "junk.npz").write_bytes(b"not an npz file")
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text("models:\n  - {name: a, source: tiny-llama}\n"
                   f"router: {{enabled: true, artifact: {tmp_path / artifact}}}\n")
    for argv in (["config", "check", str(cfg)], ["serve", "--config", str(cfg), "--no-block"]):
        r = subprocess.run([sys.executable, "-m", "deploy.cli", *argv],
                           capture_output=True, text=True, timeout=120)
        assert r.returncode == 2, r.stderr
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and "router.artifact" in lines[0] and reason in lines[0], lines
    good = tmp_path / "good.yaml"
    good.write_text("models:\n  - {name: a, source: tiny-llama}\nrouter: {enabled: true}\n")
    r = subprocess.run([sys.executable, "-m", "deploy.cli", "config", "check", str(good)],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
