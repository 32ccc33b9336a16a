"""The fleet simulator: conservation, determinism, migration, the freeness formula."""

import numpy as np
import pytest

from migration.config import MigrationSpec
from migration.sim.fleet import POLICIES, SimConfig, simulate
from migration.sim.load import arrival_rate
from migration.sim.profile import get_profile
from migration.sim.report import summarize
from migration.sim.trace import DEFAULT_TRACE, Trace, load_trace, scale

PROFILE = get_profile("gpu")


@pytest.fixture(scope="module")
def busy_trace() -> Trace:
    trace = load_trace(DEFAULT_TRACE)
    return scale(trace, arrival_rate(PROFILE, trace, 4, 0.75), 120.0, PROFILE.max_model_len)


@pytest.mark.parametrize("policy", POLICIES)
def test_every_request_arrives_once_and_completes_once(policy, busy_trace):
    fleet = simulate(SimConfig(policy, 4, PROFILE, seed=3), busy_trace)
    n = len(busy_trace)
    assert fleet.completed == n
    arrival = np.array([r.arrival for r in fleet.reqs])
    first = np.array([r.first_token for r in fleet.reqs])
    finish = np.array([r.finish for r in fleet.reqs])
    assert np.array_equal(np.sort(arrival), np.sort(busy_trace.arrival_s))
    assert (first >= arrival).all() and (finish >= first).all()
    assert all(r.generated == r.output and r.blocks == 0 for r in fleet.reqs)
    # nothing is left anywhere and every block is back
    for rep in fleet.reps:
        assert not rep.running and not rep.waiting and not rep.incoming
        assert rep.free == PROFILE.num_blocks
    assert not fleet.in_flight


def test_same_seed_same_result(busy_trace):
    a = summarize(simulate(SimConfig("power_of_two", 4, PROFILE, seed=7), busy_trace))
    b = summarize(simulate(SimConfig("power_of_two", 4, PROFILE, seed=7), busy_trace))
    assert a == b


def test_migration_happens_under_load_and_loses_nothing(busy_trace):
    fleet = simulate(SimConfig("freeness_migration", 4, PROFILE), busy_trace)
    assert fleet.migrations > 0
    assert any(r.migrations for r in fleet.reqs)
    assert fleet.completed == len(busy_trace)


def test_preemption_under_memory_pressure_recomputes():
    # one replica, requests that cannot all fit: vLLM-style recompute preemption happens
    n = 12
    trace = Trace(np.zeros(n), np.full(n, 1000), np.full(n, 800))
    fleet = simulate(SimConfig("round_robin", 1, PROFILE), trace)
    assert fleet.completed == n
    assert sum(r.preemptions for r in fleet.reqs) > 0


def test_high_priority_requests_wait_less_with_headroom(busy_trace):
    cfg = SimConfig("freeness_migration", 4, PROFILE, high_priority_fraction=0.1,
                    migration=MigrationSpec(headroom_blocks=100))
    s = summarize(simulate(cfg, busy_trace))
    assert s["completed"] == len(busy_trace)
    assert s["p99_ttft_high_s"] <= s["p99_ttft_s"]


def test_vectorized_freeness_matches_replica_stats(busy_trace):
    fleet = simulate(SimConfig("freeness", 4, PROFILE), Trace(
        busy_trace.arrival_s[:40], busy_trace.prompt[:40], busy_trace.output[:40]))
    fleet.now = 0.0
    for rep in fleet.reps:  # an idle fleet: every replica has all its blocks
        assert fleet._freeness()[rep.index] == rep.stats(0.0).freeness


def test_scale_hits_the_rate_and_clips_to_context():
    trace = load_trace(DEFAULT_TRACE)
    replay = scale(trace, 2 * trace.rate, 600.0, 2048)
    assert abs(len(replay) / 600.0 - 2 * trace.rate) / (2 * trace.rate) < 0.2
    assert (replay.prompt + replay.output <= 2048).all() and (replay.output <= 1024).all()
    long = scale(trace, 10 * trace.rate, 3 * trace.span_s / 10 * 1.5, 4096)
    assert long.arrival_s.max() < 3 * trace.span_s / 10 * 1.5 and np.all(np.diff(long.arrival_s) >= 0)
