"""The Gymnasium wrapper: registered id, env checker, and the same delays as the runner."""

import gymnasium
import numpy as np
from gymnasium.utils.env_checker import check_env

from bench.experiments.runner import run

ENV = "bench.engine.gym_env:aigc-edge-bench/MultiEdge-v0"


def test_registered_and_passes_env_checker():
    env = gymnasium.make(ENV, scenario="tiny")
    check_env(env.unwrapped, skip_render_check=True)
    assert env.action_space.n == 4
    assert env.observation_space.shape == (15,)


def test_gym_episode_equals_runner_episode():
    env = gymnasium.make(ENV, scenario="tiny").unwrapped
    obs, info = env.reset(seed=2)
    delays, done = [], False
    while not done:
        origin = int(np.argmax(obs[3:7]))
        assert info["action_mask"].all()
        obs, reward, done, truncated, info = env.step(origin)
        assert reward == -info["delay_s"] and not truncated
        delays.append(info["delay_s"])
    summary = run(env.scenario, "local", seeds=[2], episodes=1).summary()
    assert np.mean(delays) == summary["mean_delay_s"]
    # a reset without a seed moves on to the next evaluation episode
    env.reset()
    second = run(env.scenario, "local", seeds=[2], episodes=2).rows[1]
    assert env._env.workload.n_tasks == second["tasks"]


EVENT = "bench.engine.gym_env:aigc-edge-bench/MultiEdgeEvent-v0"


def test_event_engine_id_passes_the_env_checker_and_gives_the_runners_delays():
    env = gymnasium.make(EVENT, scenario="tiny-poisson")
    check_env(env.unwrapped, skip_render_check=True)
    env = env.unwrapped
    obs, info = env.reset(seed=4)
    delays, done = [], False
    while not done:
        waits = obs[3 + 4 : 3 + 8]
        assert (waits >= 0).all() and ((obs[3 + 8 :] >= 0) & (obs[3 + 8 :] <= 1)).all()
        obs, reward, done, truncated, info = env.step(int(np.argmax(obs[3:7])))  # the origin: as `local` decides
        delays.append(info["delay_s"])
    assert np.mean(delays) == run(env.scenario, "local", seeds=[4], episodes=1).summary()["mean_delay_s"]
    import pytest

    with pytest.raises(ValueError, match="is slotted"):
        gymnasium.make(EVENT, scenario="tiny")
