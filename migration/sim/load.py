"""What "load" means: the arrival rate as a fraction of the fleet's estimated capacity.

A replica's capacity is estimated for the trace's mean request (prompt P, output O, after
clipping to the model's context) when its KV cache is full: C = blocks x block size /
(P + O/2) requests run at once (at most max_num_seqs); each step decodes all C and also
prefills the newcomers (C x P / O prompt tokens per step on average), so a step takes
    t = base + decode_seq x C + context_token x C x (P + O/2) + prefill_token x C x P / O
and the replica completes C / (O x t) requests per second. Load 1.0 is that rate times the
number of replicas; the real saturation point differs (queueing, preemption, bursts), so
the benchmark sweeps the load rather than trusting the estimate.
"""

from __future__ import annotations

import numpy as np

from migration.sim.profile import Profile
from migration.sim.trace import Trace


def replica_capacity(profile: Profile, trace: Trace) -> float:
    output = np.minimum(trace.output, profile.max_model_len // 2)
    prompt = np.minimum(trace.prompt, profile.max_model_len - output)
    p, o = float(prompt.mean()), float(output.mean())
    concurrent = min(profile.max_num_seqs, profile.num_blocks * profile.block_size / (p + o / 2))
    step = profile.step_time(concurrent * p / o, concurrent, concurrent * (p + o / 2))
    return concurrent / (o * step)


def arrival_rate(profile: Profile, trace: Trace, replicas: int, load: float) -> float:
    return load * replicas * replica_capacity(profile, trace)
