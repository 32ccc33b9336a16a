"""`turnout serve`: local Ray, the Serve application, progress while engines start."""

from __future__ import annotations

import os
import secrets
import signal
import sys
import threading
import time

from deploy import ingress
from deploy.config import TurnoutConfig
from gateway.config import hash_key

APP_NAME = "turnout"


def say(msg: str) -> None:
    print(f"[turnout] {msg}", file=sys.stderr, flush=True)


def build_packs(cfg: TurnoutConfig) -> None:
    """Build every model pack up front, so the long first-run step shows its progress here."""
    from replicas.packs import resolve

    for i, m in enumerate(cfg.models, 1):
        say(f"model pack {i}/{len(cfg.models)}: {m.name} ({m.source})")
        resolve(m.source, progress=say)


def _watch(stop: threading.Event, started: float) -> None:
    from ray import serve

    last = ""
    while not stop.wait(5.0):
        try:
            app = serve.status().applications.get(APP_NAME)
        except Exception:
            continue
        if app is None:
            continue
        parts = [f"{name}: {d.status.value.lower()}" for name, d in sorted(app.deployments.items())]
        line = ", ".join(parts)
        if line != last:
            say(f"starting engines ({time.time() - started:.0f} s): {line}")
            last = line


def redis_answers(url: str, timeout_s: float = 1.0) -> bool:
    import redis

    try:
        return bool(redis.Redis.from_url(url, socket_timeout=timeout_s,
                                         socket_connect_timeout=timeout_s).ping())
    except redis.RedisError:
        return False


def local_defaults(cfg: TurnoutConfig) -> str | None:
    """Embedded-run conveniences: Redis only if one answers, and an admin key for the page.

    Returns the generated admin key (printed once), or None when the config has its own."""
    if cfg.cache.enabled and cfg.cache.redis_url and not redis_answers(cfg.cache.redis_url):
        say(f"no Redis at {cfg.cache.redis_url}: the cache keeps its documents in process memory")
        cfg.cache.redis_url = None
    if cfg.router.enabled and cfg.router.feedback_redis_url is None and cfg.cache.redis_url:
        cfg.router.feedback_redis_url = cfg.cache.redis_url
    if cfg.gateway.admin_keys:
        return None
    key = "tadm-" + secrets.token_urlsafe(18)
    cfg.gateway.admin_keys = [hash_key(key)]
    return key


def start(cfg: TurnoutConfig, address: str | None = None) -> str:
    """Start Ray + Serve and deploy; return the gateway URL once every replica is ready."""
    import ray
    from ray import serve

    from deploy.app import build_application

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    build_packs(cfg)
    if not ray.is_initialized():
        say("starting Ray" if address is None else f"connecting to Ray at {address}")
        if address is None:
            ingress.apply(cfg.gateway.ingress)
        else:  # Serve's processes there read the flag their nodes were started with
            say(f"gateway.ingress {cfg.gateway.ingress!r} applies where that cluster's nodes "
                f"run with {ingress.ray_env(cfg.gateway.ingress)}")
        ray.init(address=address, include_dashboard=False, log_to_driver=False,
                 ignore_reinit_error=True)
    serve.start(http_options={"host": cfg.gateway.host, "port": cfg.gateway.port})
    started = time.time()
    stop = threading.Event()
    watcher = threading.Thread(target=_watch, args=(stop, started), daemon=True)
    watcher.start()
    try:
        serve.run(build_application(cfg), name=APP_NAME, route_prefix="/")
    finally:
        stop.set()
    url = f"http://{cfg.gateway.host}:{cfg.gateway.port}"
    say(f"ready in {time.time() - started:.0f} s")
    return url


def serve_forever(cfg: TurnoutConfig, block: bool = True) -> int:
    admin_key = local_defaults(cfg)
    url = start(cfg)
    key = " -H 'Authorization: Bearer YOUR_KEY'" if cfg.gateway.require_auth else ""
    print(f"Turnout is serving {', '.join(m.name for m in cfg.models)} at {url}/v1")
    if admin_key:
        print(f"Operator dashboard: {url}/dashboard/ (admin key for this run: {admin_key})")
    else:
        print(f"Operator dashboard: {url}/dashboard/ (sign in with an admin key from the config)")
    print(f"Try: curl -s {url}/v1/chat/completions -H 'Content-Type: application/json'{key} "
          f"-d '{{\"model\": \"auto\", \"messages\": [{{\"role\": \"user\", \"content\": "
          f"\"What is the capital of France?\"}}]}}'", flush=True)
    if not block:
        return 0
    # SIGTERM stops like Ctrl-C: Serve shuts down in order, so its HAProxy (a child
    # process of a Ray actor, not of Ray itself) stops too instead of keeping the port.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        from ray import serve

        say("shutting down")
        serve.shutdown()
    return 0
