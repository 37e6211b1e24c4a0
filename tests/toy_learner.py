"""A small learning scheduler used by the tests to exercise the runner's training protocol.

It estimates each server's mean delay from the slots it observes while training (a bandit over servers)
and sends each task to the server with the smallest estimate; while training it explores with
probability `epsilon`. Simple enough that its behaviour is predictable, real enough to learn something.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from bench.core.config import option
from schedulers.interface import Batch, Scheduler, SlotFeedback


class BanditLearner(Scheduler):
    name = "bandit"
    summary = "test learner: per-server mean delay estimates, epsilon-greedy while training"
    batch_unit = "slot"
    learns = True

    @dataclass(frozen=True)
    class Config:
        epsilon: float = option(0.3, help="exploration probability while training", ge=0, le=1)

    def reset(self, info, rng):
        super().reset(info, rng)
        self.total = np.zeros(info.n_servers)
        self.count = np.zeros(info.n_servers)
        self.events: list[tuple[str, int, bool]] = []
        self.training = False
        self.observed_tasks = 0

    def begin_episode(self, episode: int, training: bool) -> None:
        self.training = training
        self.events.append(("begin", episode, training))

    def decide(self, batch: Batch) -> np.ndarray:
        estimate = np.where(self.count > 0, self.total / np.maximum(self.count, 1), 0.0)
        greedy = np.full(len(batch), int(np.argmin(estimate)))
        if not self.training:
            return greedy
        explore = self.rng.random(len(batch)) < self.config.epsilon
        return np.where(explore, self.rng.integers(0, batch.n_servers, len(batch)), greedy)

    def observe(self, feedback: SlotFeedback) -> None:
        self.observed_tasks += feedback.actions.shape[0]
        if self.training:
            np.add.at(self.total, feedback.actions, feedback.delay_s)
            np.add.at(self.count, feedback.actions, 1)

    def state_dict(self):
        return {"total": self.total.copy(), "count": self.count.copy()}

    def load_state_dict(self, state):
        self.total = np.array(state["total"])
        self.count = np.array(state["count"])
