"""Agent-to-agent channel: the source replica's agent calls the destination's directly.

The two calls on a migration's critical path (prepare, admit) go straight from agent
to agent over a zmq ROUTER socket each agent binds (tcp, a random port), not through
the rescheduler or the gateway, so the stop-and-copy downtime carries one hop. JSON
messages, a deadline on every call; a dead or slow peer shows up as PeerError.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable

import zmq
import zmq.asyncio

log = logging.getLogger(__name__)

Handler = Callable[[str, dict], Awaitable[dict]]


class PeerError(RuntimeError):
    pass


class PeerServer:
    def __init__(self, handler: Handler, host: str = "127.0.0.1") -> None:
        self._handler = handler
        self._sock = zmq.asyncio.Context.instance().socket(zmq.ROUTER)
        self._sock.setsockopt(zmq.LINGER, 0)
        port = self._sock.bind_to_random_port(f"tcp://{host}")
        self.address = f"tcp://{host}:{port}"
        self._task = asyncio.get_running_loop().create_task(self._serve())
        self._inflight: set[asyncio.Task] = set()

    async def _serve(self) -> None:
        while True:
            ident, _, raw = await self._sock.recv_multipart()
            task = asyncio.create_task(self._answer(ident, raw))
            self._inflight.add(task)
            task.add_done_callback(self._inflight.discard)

    async def _answer(self, ident: bytes, raw: bytes) -> None:
        try:
            msg = json.loads(raw)
            reply = await self._handler(msg["method"], msg.get("args") or {})
        except Exception as e:
            log.exception("migration peer call failed")
            reply = {"ok": False, "reason": f"{type(e).__name__}: {e}"}
        with contextlib.suppress(zmq.ZMQError):  # we were closed meanwhile
            await self._sock.send_multipart([ident, b"", json.dumps(reply).encode()])

    def close(self) -> None:
        self._task.cancel()
        for t in list(self._inflight):
            t.cancel()
        self._sock.close(0)


async def peer_call(address: str, method: str, args: dict, timeout: float) -> dict:
    sock = zmq.asyncio.Context.instance().socket(zmq.REQ)
    sock.setsockopt(zmq.LINGER, 0)
    try:
        sock.connect(address)
        await sock.send(json.dumps({"method": method, "args": args}).encode())
        if not await sock.poll(int(timeout * 1000), zmq.POLLIN):
            raise PeerError(f"peer {address} {method}: no reply in {timeout:.2f}s")
        return json.loads(await sock.recv())
    finally:
        sock.close(0)
