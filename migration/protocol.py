"""The migration protocol's plain data: states, the messages between the two replicas'
agents and their engines, and the decisions that need no engine (pure functions).

A KV migration of request R from source S to destination D goes through:

    PREPARE   D checks it has room for R (free KV blocks) and takes a lease on it.
    PRECOPY   S's connector copies R's full (immutable) KV blocks to the staging area
              while R keeps decoding; each engine step sends the blocks filled since
              the last one (at most `max_blocks_per_step`).
    STOP      when at most `stop_copy_blocks` full blocks are not staged yet (or after
              `max_precopy_s`), S aborts R at a step boundary; its connector keeps R's
              blocks alive (request_finished -> True) until the rest is staged.
    ADMIT     right after the stop (overlapping the last copy), D admits prompt +
              delivered tokens with kv_transfer_params naming the staging area; its
              connector holds the request back until S marks the area final, then
              loads every staged full block, so only the partial last block (at most
              block_size tokens) is recomputed.
    DONE      S's stream ends with a handoff marker; the caller streams the rest from D.

Rollback: PREPARE refused / timed out / D dead -> R never stopped, goes on at S.
After STOP, if D cannot ADMIT (no memory, slow, dead), S re-admits R itself from the
same staging area (ROLLED_BACK), and the marker points at S. If S dies before ADMIT,
D's lease expires and D drops the reservation and the staging area.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any

PARAMS_KEY = "turnout_migration"  # key in kv_transfer_params


class Stage(enum.StrEnum):
    PREPARE = "prepare"
    PRECOPY = "precopy"
    STOP = "stop"
    ADMIT = "admit"
    DONE = "done"
    ROLLED_BACK = "rolled_back"  # the request goes on at the source
    ABORTED = "aborted"  # nothing to migrate any more (request finished meanwhile)


@dataclass
class MigrationRecord:
    """What the source agent knows about one migration (surfaced in status())."""

    migration_id: str
    request_id: str
    dest_replica_id: str
    mode: str  # "kv" or "recompute"
    stage: Stage = Stage.PREPARE
    started: float = 0.0
    stopped_at: float = 0.0
    finished: float = 0.0
    precopy_stages: int = 0
    bytes: int = 0
    delivered: int = 0  # tokens the client received from the source
    reason: str = ""
    new_request_id: str = ""
    target_replica_id: str = ""  # where the request went on (D, or S after a rollback)
    # Seconds since `started` at which each stage was entered.
    timings: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        d = dict(self.__dict__)
        d["stage"] = str(self.stage)
        d["timings"] = dict(self.timings)
        return d


@dataclass
class Handoff:
    """The marker the source's stream ends with: where to follow the request."""

    replica_id: str
    request_id: str
    delivered: int  # tokens already streamed by the source (the destination streams only later ones)
    migration_id: str = ""
    rolled_back: bool = False

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class AdmitRequest:
    """Source -> destination: everything needed to continue the request."""

    migration_id: str
    request_id: str  # the request id at the destination
    # The source engine's prompt. Sent with `prepare` (before the stop, off the
    # critical path) and left empty here when the destination holds it already.
    prompt_token_ids: list[int]
    delivered_token_ids: list[int]  # generated at the source, already streamed
    sampling: dict[str, Any]  # see sampling_to_dict
    staging_path: str | None = None  # None: recompute migration
    staged_blocks: int = 0
    priority: int = 0
    # Length of the client's original prompt (earlier hops' tokens follow it in
    # prompt_token_ids): the continuation's text replays the stream from there.
    text_prompt_len: int = -1


def migration_params(kv_transfer_params: dict | None) -> dict | None:
    if not kv_transfer_params:
        return None
    p = kv_transfer_params.get(PARAMS_KEY)
    return p if isinstance(p, dict) and p.get("path") else None


def kv_params(staging_path: str, staged_blocks: int, wait_until: float = 0.0) -> dict:
    """staged_blocks < 0: take what the staging area holds once its source marks it
    final, waiting (the request is not scheduled) until wall-clock time wait_until."""
    return {PARAMS_KEY: {"path": staging_path, "num_blocks": int(staged_blocks),
                         "wait_until": float(wait_until)}}


def loadable_tokens(staged_blocks: int, num_tokens: int, block_size: int) -> int:
    """Tokens the destination takes from the staging area: whole blocks only, and never
    the last token (the engine must compute at least one token to sample the next)."""
    return min(staged_blocks, (num_tokens - 1) // block_size) * block_size


def blocks_filled(num_tokens: int, block_size: int) -> int:
    """Full blocks whose KV is computed once num_tokens are known (the last token's KV
    is computed only in the step that samples the next one)."""
    return max(num_tokens - 1, 0) // block_size


def should_stop(remaining_blocks: int, elapsed_s: float, stop_copy_blocks: int,
                max_precopy_s: float) -> bool:
    return remaining_blocks <= stop_copy_blocks or elapsed_s >= max_precopy_s


def blocks_needed(num_tokens: int, max_new_tokens: int, block_size: int) -> int:
    return -(-(num_tokens + max_new_tokens) // block_size)


_SAMPLING_FIELDS = (
    "n", "temperature", "top_p", "top_k", "min_p", "seed", "stop", "stop_token_ids",
    "ignore_eos", "logprobs", "skip_special_tokens", "spaces_between_special_tokens",
    "include_stop_str_in_output", "repetition_penalty", "presence_penalty", "frequency_penalty",
)


def sampling_to_dict(sp: Any, delivered: int) -> dict[str, Any]:
    """The sampling parameters of the continuation: the same, minus what was delivered.

    Greedy continues exactly. With temperature > 0 the continuation uses the request's
    seed when one was given (a fresh generator: a valid sample, not the same sample).
    Presence/frequency penalties see only the continuation's own output tokens.
    """
    d = {f: getattr(sp, f) for f in _SAMPLING_FIELDS if hasattr(sp, f)}
    if d.get("stop") is not None:
        d["stop"] = list(d["stop"]) if not isinstance(d["stop"], str) else d["stop"]
    if d.get("stop_token_ids") is not None:
        d["stop_token_ids"] = list(d["stop_token_ids"])
    max_tokens = getattr(sp, "max_tokens", None)
    d["max_tokens"] = None if max_tokens is None else max(max_tokens - delivered, 0)
    d["min_tokens"] = max(int(getattr(sp, "min_tokens", 0) or 0) - delivered, 0)
    return d


def sampling_from_dict(d: dict[str, Any]) -> Any:
    from vllm import SamplingParams

    return SamplingParams(**{k: v for k, v in d.items() if v is not None or k == "max_tokens"})


def kv_transfer_config(max_blocks_per_step: int = 256) -> dict:
    """The engine argument that loads our connector (deploy puts it into engine_args)."""
    return {"kv_connector": "MigrationConnector",
            "kv_connector_module_path": "migration.connector",
            "kv_role": "kv_both",
            # A KV load that fails is recomputed by vLLM instead of failing the request.
            "kv_load_failure_policy": "recompute",
            "kv_connector_extra_config": {"max_blocks_per_step": int(max_blocks_per_step)}}
