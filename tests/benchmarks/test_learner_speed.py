"""Speed of LAD-TS on `paper`: one training episode (decisions and updates) and one slot of decisions.

Run:  pytest tests/benchmarks/test_learner_speed.py --benchmark-enable
Each benchmark records in `extra_info` how many agent-updates ran, so a time per episode can be read as
time per update. The baseline is the same algorithm computed the way the reference code does it, in the
same run: one forward pass per task and one update per agent, each agent a separate set of torch.nn
modules (tests/test_learners.py checks both compute the same thing). It is timed on one slot and the
episode figure is scaled by the slots per episode (59).
"""

import numpy as np
import pytest
import torch

from bench.experiments.runs.runner import run_episode
from bench.scenarios import load_scenario
from bench.engine.system import System
from schedulers import make
from tests.test_learners import RefSACAgent


@pytest.fixture(scope="module")
def trained():
    """A LAD-TS whose agents all learn (buffers past 300 transitions after one episode)."""
    system = System.build(load_scenario("paper"), 0)
    learner = make("lad-ts")
    learner.reset(system.info(), system.streams.scheduler())
    env = system.env()
    run_episode(env, learner, system.workload(0, training=True), episode=0, training=True, who="lad-ts")
    assert (learner.replay.size > learner.config.min_buffer).all()
    return system, learner, env


@pytest.mark.benchmark(group="lad-ts")
def test_training_episode(benchmark, trained):
    system, learner, env = trained
    counter = {"episode": 0, "updates": []}

    def episode():
        counter["episode"] += 1
        before = learner.updates
        run_episode(env, learner, system.workload(counter["episode"], training=True), episode=counter["episode"], training=True, who="lad-ts")
        counter["updates"].append(learner.updates - before)

    benchmark.pedantic(episode, rounds=3, iterations=1)
    benchmark.extra_info["agent_updates_per_episode"] = int(np.mean(counter["updates"]))
    benchmark.extra_info["decisions_per_episode"] = int(system.workload(1, training=True).n_tasks)
    assert counter["updates"][-1] == 59 * 20


@pytest.mark.benchmark(group="lad-ts")
def test_one_slot_of_decisions(benchmark, trained):
    system, learner, env = trained
    env.reset(system.workload(0))
    learner.begin_episode(0, training=False)
    batch = env.batch(env.pending("slot"))
    actions = benchmark(learner.decide, batch)
    benchmark.extra_info["decisions"] = len(batch)
    assert actions.shape == (len(batch),)


@pytest.mark.benchmark(group="lad-ts")
def test_one_slot_reference_style(benchmark, trained):
    """Baseline: per-task forward passes and per-agent updates with separate modules, one slot."""
    system, learner, env = trained
    agents = [RefSACAgent(learner, e, diffusion=True) for e in range(learner.n_agents)]
    env.reset(system.workload(0))
    batch = env.batch(env.pending("slot"))
    obs = learner.observation(batch)
    memory = learner.memory[0]
    g = torch.Generator().manual_seed(0)
    samples = learner.replay.sample(64, learner.gen)

    decided = []

    def slot():
        decided.clear()
        with torch.no_grad():
            for i in range(len(batch)):  # one decision at a time, as the reference's take_action
                b, n = int(batch.origin[i]), int(batch.index[i])
                noise = torch.randn(4, 1, learner.n_actions, generator=g)
                probs = agents[b].probs(obs[i : i + 1], memory[b, n : n + 1], noise)
                decided.append(int(torch.multinomial(probs, 1, generator=g)))
        for e, agent in enumerate(agents):  # one update per agent
            sample = {k: v[e] for k, v in samples.items()}
            noise = {
                "start": sample["latent"],
                "next_start": sample["next_latent"],
                "chain": torch.randn(4, 64, learner.n_actions, generator=g),
                "next_chain": torch.randn(4, 64, learner.n_actions, generator=g),
            }
            agent.update(sample, noise)

    benchmark.pedantic(slot, rounds=2, iterations=1)
    assert len(decided) == len(batch) and all(0 <= a < learner.n_actions for a in decided)
    benchmark.extra_info["decisions"] = len(batch)
    benchmark.extra_info["agent_updates"] = learner.n_agents
    benchmark.extra_info["episode_estimate_s"] = benchmark.stats.stats.mean * 59 if benchmark.stats else None
