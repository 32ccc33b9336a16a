"""Async micro-batcher for the embedder: under load, concurrent requests share one forward pass.

No artificial wait: an idle batcher embeds a request at once; requests arriving
while a batch runs queue up and go together in the next one (up to max_batch).
The model runs in one worker thread so the event loop keeps serving.
"""

from __future__ import annotations

import asyncio

import numpy as np


class EmbedBatcher:
    def __init__(self, embedder, max_batch: int = 32) -> None:
        self.embedder = embedder
        self.max_batch = max_batch
        self._queue: asyncio.Queue[tuple[str, asyncio.Future]] | None = None
        self._task: asyncio.Task | None = None
        self.batches = 0
        self.items = 0

    async def embed(self, text: str) -> np.ndarray:
        if self._task is None:
            self._queue = asyncio.Queue()
            self._task = asyncio.create_task(self._run())
        fut = asyncio.get_running_loop().create_future()
        await self._queue.put((text, fut))
        return await fut

    async def _run(self) -> None:
        assert self._queue is not None
        while True:
            batch = [await self._queue.get()]
            while len(batch) < self.max_batch and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            try:
                vecs = await asyncio.to_thread(self.embedder.embed, [t for t, _ in batch])
            except Exception as e:  # hand the failure to every waiter
                for _, fut in batch:
                    if not fut.done():
                        fut.set_exception(e)
                continue
            self.batches += 1
            self.items += len(batch)
            for (_, fut), v in zip(batch, vecs, strict=True):
                if not fut.done():
                    fut.set_result(v)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self._task = None
