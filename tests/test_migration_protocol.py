"""Migration protocol pieces that need no engine: decisions, staging, the two channels."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from migration.control import ControlError, ControlServer, control_call
from migration.peer import PeerError, PeerServer, peer_call
from migration.protocol import (
    blocks_filled,
    blocks_needed,
    kv_params,
    loadable_tokens,
    migration_params,
    sampling_from_dict,
    sampling_to_dict,
    should_stop,
)
from migration.transfer import H_FINAL, H_STAGED, KVLayout, ShmStaging


def test_loadable_tokens_whole_blocks_and_never_the_last_token():
    assert loadable_tokens(10, 330, 32) == 320  # 10 full blocks, 10 tokens recomputed
    assert loadable_tokens(10, 320, 32) == 288  # exactly 10 blocks: the last block recomputed
    assert loadable_tokens(3, 500, 32) == 96  # fewer staged than filled
    assert loadable_tokens(5, 1, 32) == 0


def test_blocks_filled_and_needed():
    assert blocks_filled(33, 32) == 1 and blocks_filled(32, 32) == 0 and blocks_filled(0, 32) == 0
    assert blocks_needed(100, 28, 32) == 4 and blocks_needed(100, 29, 32) == 5


def test_should_stop():
    assert should_stop(2, 0.0, 2, 5.0) and not should_stop(3, 0.0, 2, 5.0)
    assert should_stop(100, 5.0, 2, 5.0)


def test_kv_params_roundtrip():
    assert migration_params(kv_params("/x", 3)) == {"path": "/x", "num_blocks": 3, "wait_until": 0.0}
    assert migration_params(None) is None and migration_params({"other": 1}) is None


def test_sampling_continuation_keeps_seed_and_subtracts_delivered():
    from vllm import SamplingParams

    sp = SamplingParams(temperature=0.8, top_p=0.9, seed=7, max_tokens=100, min_tokens=20,
                        stop=["END"], ignore_eos=True)
    d = sampling_to_dict(sp, 30)
    assert d["seed"] == 7 and d["max_tokens"] == 70 and d["min_tokens"] == 0 and d["stop"] == ["END"]
    back = sampling_from_dict(d)
    assert back.temperature == 0.8 and back.top_p == 0.9 and back.seed == 7 and back.max_tokens == 70


def test_staging_roundtrip_between_two_maps():
    lay = KVLayout(num_layers=2, block_bytes=64, block_size=16)
    st = ShmStaging.create("unit-roundtrip", lay, capacity=4)
    try:
        other = ShmStaging.open(st.path)
        blocks = np.arange(2 * 64, dtype=np.uint8).reshape(2, 64)
        st.write(1, 2, blocks)
        st.set(H_STAGED, 4)
        assert (other.read(1, 2, 2) == blocks).all() and other.get(H_STAGED) == 4
        other.set(H_FINAL, 1)
        assert st.get(H_FINAL) == 1
        with pytest.raises(ValueError):
            st.write(0, 3, blocks)  # past capacity
        other.close()
    finally:
        st.close()
        st.unlink()
    assert not st.path.exists()


def test_staging_names_are_checked():
    with pytest.raises(ValueError):
        ShmStaging.path_for("../etc")


async def test_control_channel_replies_and_times_out(tmp_path):
    address = f"ipc://{tmp_path / 'ctl.sock'}"
    server = ControlServer(address, lambda msg: {"ok": True, "echo": msg["op"]})
    try:
        assert (await control_call(address, {"op": "info"}, 2.0))["echo"] == "info"
    finally:
        server.close()
    with pytest.raises(ControlError):
        await control_call(address, {"op": "info"}, 0.2)  # nobody serves it any more


async def test_control_channel_reports_handler_errors(tmp_path):
    address = f"ipc://{tmp_path / 'ctl2.sock'}"
    server = ControlServer(address, lambda msg: 1 / 0)
    try:
        with pytest.raises(ControlError, match="ZeroDivisionError"):
            await control_call(address, {"op": "x"}, 2.0)
    finally:
        server.close()


async def test_peer_call_and_deadline():
    async def handler(method, args):
        if method == "slow":
            await asyncio.sleep(10)
        return {"ok": True, "got": args["x"]}

    server = PeerServer(handler)
    try:
        assert (await peer_call(server.address, "fast", {"x": 3}, 2.0))["got"] == 3
        with pytest.raises(PeerError):
            await peer_call(server.address, "slow", {"x": 1}, 0.2)
        # The server still answers after a caller gave up on it.
        assert (await peer_call(server.address, "fast", {"x": 4}, 2.0))["got"] == 4
    finally:
        server.close()
