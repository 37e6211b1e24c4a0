"""A Gymnasium view of the environment: one task per step, for RL code written against Gymnasium.

Importing this module registers the environment ids below; nothing else in the suite imports it. Gymnasium 1.x
has no plugin entry points (0.x's `gymnasium.envs` group is gone), so an id is found by naming its module, which
`gymnasium.make` imports first:

    import gymnasium
    env = gymnasium.make("bench.engine.gym_env:aigc-edge-bench/MultiEdge-v0", scenario="tiny")
    env = gymnasium.make("bench.engine.gym_env:aigc-edge-bench/MultiEdgeEvent-v0", scenario="tiny-poisson")  # event time model

or `import bench.engine.gym_env` (or `gymnasium.register_envs(bench.engine.gym_env)`) once, then the bare ids.

Each step places the current task (decision order: slot, base station, arrival index) on the server
given by the action; the reward is minus the task's delay, known at once because its wait depends only
on earlier placements. The episode terminates after its last task. The observation, all float32 and
non-negative, is

    [d (Mbit), w (Gcycles; reference seconds in profile-driven scenarios), o (Mbit), one-hot origin base station (B), backlog_s (B), assigned_s (B)]

With `observation="extended"` three blocks of B follow (the scheduler boundary's observation v2 for the task,
docs/environment.md): the task's expected compute time on each server (its model's expected load included where
the model is not resident; 10^4 s where the task may not run), whether its model is resident there (0/1), and the
requests queued there (waiting and in service).

Masks: `env.action_masks()` (bool, what sb3-contrib's MaskablePPO reads, through `get_wrapper_attr`) and
`info["action_mask"]` (int8) mark the servers allowed for the next task (a model that does not fit a server's
memory). A forbidden action raises a SchedulerError by default (`forbidden="raise"`); with `forbidden="penalty"`
the task goes to the lowest-numbered allowed server instead, the reward is its delay's negative minus
`forbidden_penalty_s`, and `info["forbidden"]` is True. `reset(seed=s)` starts evaluation episode 0 of seed s;
a reset without a seed moves on to the next episode of the same seed.
Delays are the same as the suite's own runner computes (same environment object underneath).
"""

from __future__ import annotations

from typing import Any, Iterable

import gymnasium
import numpy as np
from gymnasium import spaces

from bench.core.errors import BenchError, ConfigError
from bench.engine.environment import Environment
from bench.engine.events import EventEnv
from bench.engine.system import System
from bench.scenarios import Scenario, load_scenario

ENV_ID = "aigc-edge-bench/MultiEdge-v0"
OBSERVATIONS = ("paper", "extended")  # the paper's layout, or with the observation v2 fields of the task (module docstring)
EXCLUDED_S = 1e4  # the expected compute time shown for a server the task may not use
FORBIDDEN = ("raise", "penalty")  # what a forbidden action does: a SchedulerError, or the first allowed server and a penalty
EVENT_ENV_ID = "aigc-edge-bench/MultiEdgeEvent-v0"


class MultiEdgeGymEnv(gymnasium.Env):
    metadata = {"render_modes": []}

    def __init__(self, scenario: str | Scenario = "tiny", overrides: Iterable[str] = (), training: bool = False,
                 forbidden: str = "raise", forbidden_penalty_s: float = 100.0, observation: str = "paper"):
        if observation not in OBSERVATIONS:
            raise ConfigError("observation", observation, f"one of {', '.join(OBSERVATIONS)}")
        self.extended = observation == "extended"
        if forbidden not in FORBIDDEN:
            raise ConfigError("forbidden", forbidden, f"one of {', '.join(FORBIDDEN)}")
        if not (np.isfinite(forbidden_penalty_s) and forbidden_penalty_s >= 0):
            raise ConfigError("forbidden_penalty_s", forbidden_penalty_s, "a finite number of seconds >= 0")
        self.scenario = scenario if isinstance(scenario, Scenario) else load_scenario(scenario, overrides)
        self.training = training
        self.forbidden, self.forbidden_penalty_s = forbidden, float(forbidden_penalty_s)
        b = self.scenario.n_servers
        self.n_servers = b
        self.observation_space = spaces.Box(low=0.0, high=np.finfo(np.float32).max, shape=(3 + (6 if self.extended else 3) * b,), dtype=np.float32)
        self.action_space = spaces.Discrete(b)
        self._system: System | None = None
        self._env: Environment | None = None
        self._episode = -1

    def _observation(self) -> np.ndarray:
        obs = np.zeros(self.observation_space.shape, dtype=np.float32)
        env = self._env
        if env.done:
            return obs
        i, b = env.position, self.n_servers
        wl = env.workload
        obs[0], obs[1], obs[2] = wl.size_mbit[i], wl.work_gcycles[i], wl.result_mbit[i]
        obs[3 + wl.origin[i]] = 1.0
        obs[3 + b : 3 + 2 * b] = env.backlog_s
        obs[3 + 2 * b : 3 + 3 * b] = self._queue_tail(env)
        if self.extended:  # the scheduler boundary's observation (v2) of this one task
            batch = env.batch(1)
            obs[3 + 3 * b : 3 + 4 * b] = np.minimum(np.where(batch.mask[0], batch.compute_s[0], EXCLUDED_S), EXCLUDED_S)
            obs[3 + 4 * b : 3 + 5 * b] = batch.resident[0]
            obs[3 + 5 * b :] = batch.waiting + batch.running
        return obs

    def _queue_tail(self, env: Environment) -> np.ndarray:
        """The observation's last B entries: the compute placed at the current decision point (slot or instant) so far."""
        return env.assigned_s

    def _mask(self) -> np.ndarray:
        env = self._env
        if env.done:
            return np.ones(self.n_servers, dtype=np.int8)
        mask = env.costs.mask(env.workload, env.position, env.position + 1)
        return np.ones(self.n_servers, dtype=np.int8) if mask is None else mask[0].astype(np.int8)

    def action_masks(self) -> np.ndarray:
        """The servers allowed for the next task, as sb3-contrib's MaskablePPO asks for them."""
        return self._mask().astype(bool)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        if seed is not None or self._system is None:
            self._system = System.build(self.scenario, 0 if seed is None else int(seed))
            self._env = self._system.env()
            self._episode = 0
        else:
            self._episode += 1
        self._env.reset(self._system.workload(self._episode, training=self.training))
        return self._observation(), {"action_mask": self._mask(), "episode": self._episode}

    def step(self, action):
        if self._env is None or self._env.done:
            raise BenchError("step() needs an episode with tasks left; call reset() first")
        if not self.action_space.contains(action):
            raise ConfigError("action", action, f"an integer in 0..{self.n_servers - 1}")
        action, forbidden = int(action), False
        if self.forbidden == "penalty":
            allowed = self._mask()
            if not allowed[action]:
                action, forbidden = int(np.flatnonzero(allowed)[0]), True
        self._env.step(np.array([action], dtype=np.int64), who="gymnasium action")
        parts = {k: float(v[0]) for k, v in self._env.last_step().items() if k != "actions"}
        reward = -parts["delay_s"] - (self.forbidden_penalty_s if forbidden else 0.0)
        terminated = self._env.done
        return self._observation(), reward, terminated, False, {**parts, "action_mask": self._mask(), "forbidden": forbidden}


class MultiEdgeEventGymEnv(MultiEdgeGymEnv):
    """The event time model, one request per step (decision order: arrival time, origin). The observation keeps the
    slotted layout with the queue part at the request's arrival instant:

        [d, w, o, one-hot origin (B), wait_s (B), free_workers (B)]

    wait_s[a] is the exact wait a request placed on a now would have (every earlier placement included: there is
    no slot start), free_workers[a] the share of a's workers idle at that instant. Delays are exact (FIFO workers)."""

    def __init__(self, scenario: str | Scenario = "tiny-poisson", overrides: Iterable[str] = (), training: bool = False,
                 forbidden: str = "raise", forbidden_penalty_s: float = 100.0, observation: str = "paper"):
        super().__init__(scenario, overrides, training, forbidden, forbidden_penalty_s, observation)
        if not self.scenario.episode.event:
            raise ConfigError("episode.time_model", self.scenario.episode.time_model or "slotted",
                              f'"event" for {EVENT_ENV_ID} (scenario \'{self.scenario.name}\' is slotted: use {ENV_ID})')

    def _queue_tail(self, env: Environment) -> np.ndarray:
        """The observation's last B entries: the share of each server's workers idle at the request's arrival."""
        assert isinstance(env, EventEnv)  # the constructor refused a slotted scenario
        return env.free_workers()


def register() -> None:
    if ENV_ID not in gymnasium.registry:
        gymnasium.register(id=ENV_ID, entry_point="bench.engine.gym_env:MultiEdgeGymEnv")
    if EVENT_ENV_ID not in gymnasium.registry:
        gymnasium.register(id=EVENT_ENV_ID, entry_point="bench.engine.gym_env:MultiEdgeEventGymEnv")


register()
