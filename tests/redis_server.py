"""A redis-server of a test's own on a free port (never the shared one at 6379)."""

from __future__ import annotations

import socket
import subprocess
import time


def start_redis(port: int, workdir: str) -> subprocess.Popen:
    """Start redis-server (no persistence) and return once it accepts connections."""
    proc = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                             "--appendonly", "no", "--dir", workdir],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 10
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.1).close()
            return proc
        except OSError:
            if time.time() > deadline:
                proc.kill()
                raise RuntimeError("redis-server did not start") from None
            time.sleep(0.05)
