"""Control channel from a replica's migration agent to its engine's scheduler-side connector.

Why a socket of our own: with AsyncLLM the scheduler (and our connector's scheduler
half) runs in vLLM's engine-core process, not in the replica. `collective_rpc` only
reaches the *worker* half (and queues behind the engine's own input messages);
`KVConnectorOutput` only flows worker -> scheduler. A small zmq REP socket opened by the
scheduler-side connector answers queries at once (free blocks, KV layout) from its own
thread, and queues commands (start/cancel a migration) that the engine thread applies
at the next step boundary (`build_connector_meta`), so vLLM's loop is never touched
from another thread. Progress flows back through the staging header (see transfer.py),
not through this socket.

Both ends derive the address from the engine's `kv_transfer_config.engine_id`, which
vLLM generates once in the replica process and ships to the engine core, so no port
has to be configured per replica. Messages are JSON; every call has a timeout.
"""

from __future__ import annotations

import json
import logging
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path

import zmq

log = logging.getLogger(__name__)


class ControlError(RuntimeError):
    pass


def control_address(engine_id: str) -> str:
    safe = "".join(c for c in engine_id if c.isalnum() or c in "-_")[:64]
    return f"ipc://{Path(tempfile.gettempdir()) / f'turnout-mig-{safe}.sock'}"


class ControlServer:
    """REP socket served by a daemon thread; `handle(msg) -> reply` must be thread-safe."""

    def __init__(self, address: str, handle: Callable[[dict], dict]) -> None:
        self.address = address
        self._handle = handle
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="turnout-mig-control", daemon=True)
        self._thread.start()
        self._ready.wait(5.0)

    def _serve(self) -> None:
        ctx = zmq.Context.instance()
        sock = ctx.socket(zmq.REP)
        sock.setsockopt(zmq.LINGER, 0)
        sock.bind(self.address)
        self._ready.set()
        poller = zmq.Poller()
        poller.register(sock, zmq.POLLIN)
        try:
            while not self._stop.is_set():
                if not dict(poller.poll(100)):
                    continue
                raw = sock.recv()
                try:
                    reply = self._handle(json.loads(raw))
                except Exception as e:  # a bad command must not kill the channel
                    log.exception("migration control command failed")
                    reply = {"ok": False, "error": f"{type(e).__name__}: {e}"}
                sock.send(json.dumps(reply).encode())
        finally:
            sock.close(0)
            if self.address.startswith("ipc://"):
                Path(self.address[len("ipc://"):]).unlink(missing_ok=True)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2.0)


async def control_call(address: str, msg: dict, timeout: float) -> dict:
    """One request/reply with a deadline; a fresh socket each time, so a lost reply
    never wedges the REQ state machine."""
    import zmq.asyncio

    ctx = zmq.asyncio.Context.instance()
    sock = ctx.socket(zmq.REQ)
    sock.setsockopt(zmq.LINGER, 0)
    try:
        sock.connect(address)
        await sock.send(json.dumps(msg).encode())
        if not await sock.poll(int(timeout * 1000), zmq.POLLIN):
            raise ControlError(f"engine control {msg.get('op')!r}: no reply in {timeout:.1f}s")
        reply = json.loads(await sock.recv())
    finally:
        sock.close(0)
    if not reply.get("ok", False):
        raise ControlError(f"engine control {msg.get('op')!r}: {reply.get('error', reply)}")
    return reply
