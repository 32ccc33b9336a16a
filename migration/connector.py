"""MigrationConnector: live KV migration through vLLM's own KV connector interface.

Loaded by vLLM from the engine arguments, no patching:

    kv_transfer_config={"kv_connector": "MigrationConnector",
                        "kv_connector_module_path": "migration.connector",
                        "kv_role": "kv_both",
                        "kv_connector_extra_config": {"max_blocks_per_step": 256}}

vLLM builds one instance per role: the scheduler half in the engine-core process
(connector_sched.py: which blocks move when, delayed free at stop-and-copy, what a
migrated-in request loads) and the worker half next to the KV tensors
(connector_worker.py: the copies). They talk only through the per-step metadata
vLLM carries (scheduler -> worker) and `get_finished` (worker -> scheduler).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from vllm.distributed.kv_transfer.kv_connector.v1.base import (
    KVConnectorBase_V1,
    KVConnectorMetadata,
    KVConnectorRole,
)

from migration.connector_sched import MigrationMeta, SchedulerSide
from migration.connector_worker import WorkerSide

if TYPE_CHECKING:
    import torch


class MigrationConnectorMeta(KVConnectorMetadata):
    def __init__(self, meta: MigrationMeta) -> None:
        self.meta = meta


class MigrationConnector(KVConnectorBase_V1):
    def __init__(self, vllm_config: Any, role: KVConnectorRole, kv_cache_config: Any = None) -> None:
        super().__init__(vllm_config=vllm_config, role=role, kv_cache_config=kv_cache_config)
        extra = self._kv_transfer_config.kv_connector_extra_config or {}
        self._sched: SchedulerSide | None = None
        self._worker: WorkerSide | None = None
        if role == KVConnectorRole.SCHEDULER:
            self._sched = SchedulerSide(vllm_config, kv_cache_config,
                                        int(extra.get("max_blocks_per_step", 256)))
        else:
            self._worker = WorkerSide(int(kv_cache_config.num_blocks))

    @property
    def requires_kv_delivery(self) -> bool:
        # A preempted migrating request is recomputed by vLLM; our staged blocks stay
        # valid (same tokens, same KV), so nothing special is needed.
        return False

    # ---- worker side -----------------------------------------------------------------------
    def register_kv_caches(self, kv_caches: dict[str, torch.Tensor]) -> None:
        assert self._worker is not None
        self._worker.register(kv_caches)

    def _meta(self) -> MigrationMeta | None:
        if not self.has_connector_metadata():
            return None
        meta = self._get_connector_metadata()
        return meta.meta if isinstance(meta, MigrationConnectorMeta) else None

    def start_load_kv(self, forward_context: Any, **kwargs: Any) -> None:
        meta = self._meta()
        if meta is not None and self._worker is not None:
            self._worker.start_load(meta)

    def wait_for_layer_load(self, layer_name: str) -> None:
        return

    def save_kv_layer(self, layer_name: str, kv_layer: Any, attn_metadata: Any, **kwargs: Any) -> None:
        return  # whole blocks move once per step in wait_for_save, not layer by layer

    def wait_for_save(self) -> None:
        meta = self._meta()
        if meta is not None and self._worker is not None:
            self._worker.wait_for_save(meta)

    def get_finished(self, finished_req_ids: set[str]) -> tuple[set[str] | None, set[str] | None]:
        if self._worker is None:
            return None, None
        return self._worker.take_finished_sending(), None

    def get_block_ids_with_load_errors(self) -> set[int]:
        return self._worker.take_load_errors() if self._worker is not None else set()

    # ---- scheduler side ----------------------------------------------------------------------
    def bind_kv_cache_manager(self, kv_cache_manager: Any) -> None:
        super().bind_kv_cache_manager(kv_cache_manager)
        if self._sched is not None:
            self._sched.kv_cache_manager = kv_cache_manager

    def on_new_request(self, request: Any) -> None:
        if self._sched is not None:
            self._sched.on_new_request(request)

    def get_num_new_matched_tokens(self, request: Any, num_computed_tokens: int) -> tuple[int | None, bool]:
        assert self._sched is not None
        return self._sched.get_num_new_matched_tokens(request, num_computed_tokens)

    def get_loaded_kv_cache_group_ids(self, request: Any) -> tuple[int, ...]:
        # We move the request's own blocks: every group (there is one) is restored.
        return tuple(range(len(self._kv_cache_config.kv_cache_groups)))

    def update_state_after_alloc(self, request: Any, blocks: Any, num_external_tokens: int) -> None:
        assert self._sched is not None
        self._sched.update_state_after_alloc(request, blocks, num_external_tokens)

    def build_connector_meta(self, scheduler_output: Any) -> KVConnectorMetadata:
        assert self._sched is not None
        return MigrationConnectorMeta(self._sched.build_meta())

    def request_finished(self, request: Any, block_ids: list[int]) -> tuple[bool, dict[str, Any] | None]:
        assert self._sched is not None
        return self._sched.request_finished(request, block_ids)

    def shutdown(self) -> None:
        if self._sched is not None:
            self._sched.shutdown()
        if self._worker is not None:
            self._worker.shutdown()
