"""Shared fixtures: one local Ray per session, Serve apps per module, real Redis."""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# KV staging areas go in a directory of this session's own, so a leak check sees only
# what this session made (another run on the machine shares /dev/shm).
# Ray workers that import a test module import this file too: they inherit the session's
# directory through the environment and must neither make nor remove one of their own.
_OWN_STAGING = "TURNOUT_KV_STAGING_DIR" not in os.environ
if _OWN_STAGING:
    _SHM = "/dev/shm" if os.path.isdir("/dev/shm") else None
    os.environ["TURNOUT_KV_STAGING_DIR"] = tempfile.mkdtemp(prefix="turnout-test-staging-", dir=_SHM)
STAGING = os.environ["TURNOUT_KV_STAGING_DIR"]
# The session's Ray runs the gateway's default ingress (HAProxy, deploy/ingress.py).
os.environ.setdefault("RAY_SERVE_ENABLE_HA_PROXY", "1")

TESTS = Path(__file__).parent
ARTIFACTS = TESTS / "artifacts"


def pytest_sessionfinish(session, exitstatus) -> None:
    if _OWN_STAGING:
        shutil.rmtree(STAGING, ignore_errors=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def serve_port() -> Iterator[int]:
    """A local Ray with Serve's HTTP proxy on a free port, shared by every engine test."""
    import ray
    from ray import serve

    ray.init(num_cpus=16, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": {"HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
                                          "TURNOUT_KV_STAGING_DIR": STAGING}})
    port = free_port()
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    yield port
    serve.shutdown()
    ray.shutdown()


class ServeApp:
    """A Turnout application deployed under its own route prefix."""

    def __init__(self, name: str, port: int) -> None:
        self.name = name
        self.base = f"http://127.0.0.1:{port}/{name}"
        self.openai_base = self.base + "/v1"

    def handle(self, deployment: str):
        from ray import serve

        return serve.get_deployment_handle(deployment, app_name=self.name)

    def replica_stats(self, model: str) -> dict:
        from deploy.app import model_deployment_name

        return self.handle(model_deployment_name(model)).stats.remote().result()


def deploy_app(config_path: Path | str, name: str, port: int, mutate=None) -> ServeApp:
    from ray import serve

    from deploy.app import build_application
    from deploy.config import load_config

    cfg = load_config(config_path)
    if mutate:
        mutate(cfg)
    serve.run(build_application(cfg), name=name, route_prefix=f"/{name}")
    return ServeApp(name, port)


@pytest.fixture(scope="module")
def tiny_app(serve_port: int, request: pytest.FixtureRequest) -> Iterator[ServeApp]:
    """Two tiny-Llama models behind the gateway (tests/tiny.yaml)."""
    from ray import serve

    name = request.module.__name__.rsplit(".", 1)[-1].replace("_", "-")
    app = deploy_app(TESTS / "tiny.yaml", name, serve_port)
    yield app
    serve.delete(name)
