"""The Gymnasium wrapper: registered id, env checker, and the same delays as the runner."""

import gymnasium
import numpy as np
from gymnasium.utils.env_checker import check_env

from bench.experiments.runs.runner import run

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

    from bench.core.errors import ConfigError

    with pytest.raises(ConfigError, match="is slotted"):
        gymnasium.make(EVENT, scenario="tiny")


def test_masks_reach_the_agent_and_a_forbidden_action_does_what_was_asked():
    """edge-gpu: SDXL fits only some GPUs; the mask says which (action_masks() and info), a forbidden action raises
    by default and, with forbidden="penalty", goes to the first allowed server at a stated penalty."""
    import pytest

    from bench.core.errors import ConfigError, SchedulerError

    env = gymnasium.make(EVENT, scenario="edge-gpu")
    obs, info = env.reset(seed=0)
    masks = env.get_wrapper_attr("action_masks")
    steps = 0
    while masks().all():  # to the first request that some server cannot run
        obs, reward, done, truncated, info = env.step(0)
        steps += 1
        assert not done
    mask = masks()
    assert mask.dtype == bool and np.array_equal(mask, info["action_mask"].astype(bool))
    forbidden = int(np.flatnonzero(~mask)[0])
    with pytest.raises(SchedulerError, match="mask forbids"):
        env.step(forbidden)
    penalised = gymnasium.make(EVENT, scenario="edge-gpu", forbidden="penalty", forbidden_penalty_s=50.0).unwrapped
    plain = gymnasium.make(EVENT, scenario="edge-gpu").unwrapped
    for e in (penalised, plain):
        e.reset(seed=0)
        for _ in range(steps):
            e.step(0)
    _, r_pen, _, _, info_pen = penalised.step(forbidden)
    _, r_first, _, _, info_first = plain.step(int(np.flatnonzero(mask)[0]))  # what the penalty mode did instead
    assert info_pen["forbidden"] and not info_first["forbidden"]
    assert r_pen == r_first - 50.0 and info_pen["delay_s"] == info_first["delay_s"]
    with pytest.raises(ConfigError, match="forbidden = 'ignore' is not allowed"):
        gymnasium.make(EVENT, scenario="edge-gpu", forbidden="ignore")


def test_maskable_ppo_trains_on_edge_gpu_through_gymnasium_make(tmp_path):
    """sb3-contrib's MaskablePPO reads the masks itself (action_masks through the wrappers) and never takes a
    forbidden action: the environment raises on one by default, so training a few thousand steps proves it."""
    import pytest

    sb3 = pytest.importorskip("sb3_contrib")
    from sb3_contrib.common.maskable.utils import get_action_masks
    from stable_baselines3.common.logger import configure

    env = gymnasium.make(EVENT, scenario="edge-gpu")
    model = sb3.MaskablePPO("MlpPolicy", env, n_steps=512, batch_size=128, n_epochs=2, seed=0, device="cpu")
    model.set_logger(configure(str(tmp_path), []))  # SB3's default logger makes a folder in the system's temp dir per run
    model.learn(total_timesteps=2048)
    assert model.num_timesteps >= 2048
    obs, _ = env.reset(seed=1)
    done, rewards = False, []
    while not done:
        action, _ = model.predict(obs, action_masks=get_action_masks(env), deterministic=True)
        obs, reward, done, _, info = env.step(action)
        rewards.append(reward)
        assert not info["forbidden"]
    assert rewards and np.isfinite(rewards).all()
