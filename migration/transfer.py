"""KV transfer backends: where a migrating request's KV blocks travel through.

A migration copies a request's KV blocks, in request order (logical block 0, 1, ...),
out of the source engine's paged KV cache into a *staging area*, and later from the
staging area into the blocks the destination engine allocated. The interface is
block-granular and byte-oriented, so it does not care about dtype or attention layout:

- `Staging.create(name, layout, capacity)`  (migration agent, source replica)
- `Staging.open(name)`                      (engine-core connectors, both sides)
- `write(layer, first, blocks)` / `read(layer, first, n)`  (worker-side connector)
- a small header of counters both sides read and write (progress, final flag).

`ShmStaging` is the CPU backend: a file on a tmpfs (/dev/shm) mapped by every process
on the node (the replica's agent and the engine-core processes of both replicas), so a
block crosses processes with one memcpy in and one out and no serialization.
The Ray object store was the other candidate; it is not a fit because engine-core
processes are spawned by vLLM outside Ray (no `ray.put` there) and objects are
immutable, while pre-copy appends to the same area stage after stage.

How a GPU backend plugs in (not built here, nothing to run it on): NIXL or NCCL would
skip the staging copy and write straight into the destination's KV blocks. The
destination then admits the request *first* (so vLLM allocates its blocks: the
connector's `get_num_new_matched_tokens` returns `(n, True)` for an async load and
`update_state_after_alloc` hands over the block ids), sends those ids back, and the
source's worker-side connector issues one-sided writes (NIXL `make_prepped_xfer` over
the registered KV tensors from `register_kv_caches`) per pre-copy stage; completion is
reported on the destination through `get_finished()` as `finished_recving`. The
protocol (stages, stop-and-copy, rollback) and the agent stay the same; only this
module's write/read pair becomes a remote write and a completion poll.
"""

from __future__ import annotations

import contextlib
import mmap
import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

MAGIC = 0x54524E4F55544B56  # "TRNOUTKV"
HEADER_BYTES = 4096
# Header slots (int64).
H_MAGIC, H_LAYERS, H_BLOCK_BYTES, H_CAPACITY = 0, 1, 2, 3
H_ACCEPTED = 4  # 0 = not yet seen by the source connector, 1 = copying, -1 = refused
H_STAGED = 5  # logical blocks written so far (a prefix: blocks 0 .. staged-1)
H_FINAL = 6  # 0 = pre-copy, 1 = stop-and-copy done (all blocks staged), -1 = cancelled
H_STAGES = 7  # pre-copy stages completed
H_BYTES = 8  # bytes written
H_NUM_TOKENS = 9  # tokens whose KV the source had computed at the final stage
NUM_SLOTS = 16

_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,100}$")


@dataclass(frozen=True)
class KVLayout:
    """The shape of one engine's KV cache as migration sees it (bytes per block)."""

    num_layers: int
    block_bytes: int  # bytes of one block of one layer
    block_size: int  # tokens per block

    @property
    def bytes_per_block(self) -> int:
        return self.num_layers * self.block_bytes


def staging_dir() -> Path:
    return Path(os.environ.get("TURNOUT_KV_STAGING_DIR", "/dev/shm"))


class ShmStaging:
    """A staging area in shared memory: header + [layers][capacity][block_bytes] bytes."""

    def __init__(self, path: Path, fd: int, mm: mmap.mmap) -> None:
        self.path = path
        self._fd = fd
        self._mm = mm
        self.header = np.frombuffer(mm, dtype=np.int64, count=NUM_SLOTS)
        self.num_layers = int(self.header[H_LAYERS])
        self.block_bytes = int(self.header[H_BLOCK_BYTES])
        self.capacity = int(self.header[H_CAPACITY])
        data = np.frombuffer(mm, dtype=np.uint8, offset=HEADER_BYTES,
                             count=self.num_layers * self.capacity * self.block_bytes)
        self.data = data.reshape(self.num_layers, self.capacity, self.block_bytes)

    @staticmethod
    def path_for(name: str) -> Path:
        if not _NAME.match(name):
            raise ValueError(f"bad staging name {name!r}")
        return staging_dir() / f"turnout-kv-{name}"

    @classmethod
    def create(cls, name: str, layout: KVLayout, capacity: int) -> ShmStaging:
        path = cls.path_for(name)
        size = HEADER_BYTES + layout.num_layers * max(capacity, 1) * layout.block_bytes
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
        # Allocate every page now, here in the agent: a sparse file would have the source
        # engine's copy thread fault in and zero each page, on the cores that decode.
        os.posix_fallocate(fd, 0, size)
        mm = mmap.mmap(fd, size)
        header = np.frombuffer(mm, dtype=np.int64, count=NUM_SLOTS)
        header[:] = 0
        header[H_LAYERS] = layout.num_layers
        header[H_BLOCK_BYTES] = layout.block_bytes
        header[H_CAPACITY] = max(capacity, 1)
        header[H_MAGIC] = MAGIC  # written last: the area is valid from here on
        del header
        return cls(path, fd, mm)

    @classmethod
    def open(cls, path: str | Path, populate: bool = False) -> ShmStaging:
        path = Path(path)
        fd = os.open(path, os.O_RDWR)
        size = os.fstat(fd).st_size
        if size < HEADER_BYTES:
            os.close(fd)
            raise ValueError(f"{path}: not a staging area")
        # populate: pre-fault the pages (a 16 MB area is 4096 page faults on first touch
        # otherwise, paid inside the destination's load step).
        flags = mmap.MAP_SHARED | (getattr(mmap, "MAP_POPULATE", 0) if populate else 0)
        mm = mmap.mmap(fd, size, flags=flags)
        staging = cls(path, fd, mm)
        if int(staging.header[H_MAGIC]) != MAGIC:
            staging.close()
            raise ValueError(f"{path}: not a staging area")
        return staging

    # ---- header ----------------------------------------------------------------------
    def get(self, slot: int) -> int:
        return int(self.header[slot])

    def set(self, slot: int, value: int) -> None:
        self.header[slot] = value

    def add(self, slot: int, value: int) -> None:
        self.header[slot] += value

    # ---- data ------------------------------------------------------------------------
    def write(self, layer: int, first: int, blocks: np.ndarray) -> None:
        """Write blocks (shape [n, block_bytes], uint8) at logical positions first..first+n-1."""
        n = blocks.shape[0]
        if first + n > self.capacity:
            raise ValueError(f"staging overflow: {first + n} > {self.capacity} blocks")
        self.data[layer, first:first + n] = blocks

    def read(self, layer: int, first: int, n: int) -> np.ndarray:
        if first + n > self.capacity:
            raise ValueError(f"staging underflow: {first + n} > {self.capacity} blocks")
        return self.data[layer, first:first + n]

    def close(self) -> None:
        # Views into the map must go before the map can close.
        self.header = None  # type: ignore[assignment]
        self.data = None  # type: ignore[assignment]
        # A caller may still hold a view; the map then closes when it is collected.
        with contextlib.suppress(BufferError):
            self._mm.close()
        os.close(self._fd)

    def unlink(self) -> None:
        unlink_staging(self.path)


def unlink_staging(path: str | Path) -> bool:
    try:
        os.unlink(path)
        return True
    except FileNotFoundError:
        return False
