"""How HTTP reaches the gateway replicas: Ray Serve's HAProxy ingress or its Python proxy.

With `haproxy` (the default) Serve runs HAProxy on each node and every gateway replica
serves HTTP itself ("direct ingress"): a request goes client -> HAProxy -> the replica's
own server, and the replica reads the body locally. With `proxy`, Serve's Python proxy
actor takes the request and the replica fetches the body back from it over an RPC,
2-6 ms here (bench/cache.py, bench/gateway_overhead.py measure both). Serve reads the flag
when its processes start, so it is set in the environment before Ray starts (local
runs) or on every Ray container (KubeRay).
"""

from __future__ import annotations

import os
from typing import Literal

Ingress = Literal["haproxy", "proxy"]
HAPROXY_FLAG = "RAY_SERVE_ENABLE_HA_PROXY"


def ray_env(ingress: Ingress) -> dict[str, str]:
    """The environment every Ray process needs for this ingress."""
    return {HAPROXY_FLAG: "1" if ingress == "haproxy" else "0"}


def apply(ingress: Ingress) -> None:
    """Set the flag in this process, before it starts Ray (its processes inherit it)."""
    os.environ.update(ray_env(ingress))
