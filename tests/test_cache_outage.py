"""Redis down and back: the cache fails open, counts failures, and recovers.

Uses a redis-server of its own on a free port (never the shared one at 6379).
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile

import pytest
from cache_helpers import answer, keyed, make, prefix, spec, unit

from tests.conftest import free_port
from tests.redis_server import start_redis

pytestmark = [pytest.mark.timeout(60),
              pytest.mark.skipif(shutil.which("redis-server") is None, reason="needs redis-server")]


async def test_redis_down_fails_open_and_recovers():
    port, workdir = free_port(), tempfile.mkdtemp()
    proc = start_redis(port, workdir)
    c = None
    try:
        c = await make(spec(f"redis://127.0.0.1:{port}/0"), prefix())
        k, p = keyed("will it survive")
        v = unit(7)
        assert await c.store("t1", "auto", "chat", v, k, answer("before"), p)
        assert await c.lookup("t1", "auto", "chat", v, k, p) is not None

        proc.terminate()
        proc.wait(5)
        # Fail open: a miss (the index still knows the entry, but its document is unreachable).
        assert await c.lookup("t1", "auto", "chat", v, k, p) is None
        k2, p2 = keyed("written during the outage")
        assert await c.store("t1", "auto", "chat", unit(8), k2, answer("lost"), p2) is None
        st = c.stats()
        assert st["store"]["healthy"] is False and st["store"]["failures"] >= 1
        assert st["tenants"]["t1"]["chat"]["stores_dropped"] == 1

        proc = start_redis(port, workdir)  # back, but empty (no persistence)
        for _ in range(400):  # healthy first, then the rebuild from the (empty) Redis lands
            if c.stats()["store"]["healthy"] and c.stats()["total"]["entries"] == 0:
                break
            await asyncio.sleep(0.05)
        assert c.stats()["store"]["healthy"] is True
        # The rebuild dropped what Redis lost, and new entries work again.
        assert c.stats()["total"]["entries"] == 0
        assert await c.lookup("t1", "auto", "chat", v, k, p) is None
        assert await c.store("t1", "auto", "chat", v, k, answer("after"), p)
        hit = await c.lookup("t1", "auto", "chat", v, k, p)
        assert hit.response["choices"][0]["message"]["content"] == "after"
    finally:
        if c is not None:
            await c.close()
        proc.terminate()
        proc.wait(5)
        shutil.rmtree(workdir, ignore_errors=True)
