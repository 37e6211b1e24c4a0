"""Independent random streams derived from a run's seed.

Every random draw of a run comes from one of these streams, each a PCG64 generator seeded by
`SeedSequence(seed, spawn_key=(purpose, ...))`:

- evaluation(e): the tasks of evaluation episode e;
- training(e):   the tasks of training episode e (a different purpose key, so never the same tasks);
- scheduler():   the scheduler's own randomness (never drawn from a workload stream);
- environment(): server parameters that a scenario draws per seed;
- cold_starts(e): the model-load times revealed at execution in evaluation episode e (training: a second key);
- load_probe():  a fixed draw that estimates a replayed trace's mean work (the System uses seed 0's, so the
                 load a scenario states does not change with the seed).

The streams depend on the seed only, not on the scenario: two variants of a scenario (say, with a
different capacity) see the same underlying random numbers, which makes parameter sweeps smoother
(common random numbers). Every scheduler evaluated with the same (scenario, seed) therefore sees the
identical evaluation tasks, and comparisons between schedulers are paired.
"""

from __future__ import annotations

import numpy as np

from bench.core.errors import ConfigError

EVALUATION = 0
TRAINING = 1
SCHEDULER = 2
ENVIRONMENT = 3
COLD_STARTS = 4
LOAD_PROBE = 5


class Streams:
    """The random streams of one seed; see the module docstring."""

    def __init__(self, seed: int):
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
            raise ConfigError("seed", seed, "a non-negative integer")  # a forged bundle's manifest can hold any seed
        self.seed = int(seed)

    def _generator(self, *key: int) -> np.random.Generator:
        return np.random.Generator(np.random.PCG64(np.random.SeedSequence(self.seed, spawn_key=key)))

    def evaluation(self, episode: int) -> np.random.Generator:
        return self._generator(EVALUATION, episode)

    def training(self, episode: int) -> np.random.Generator:
        return self._generator(TRAINING, episode)

    def scheduler(self) -> np.random.Generator:
        return self._generator(SCHEDULER)

    def environment(self) -> np.random.Generator:
        return self._generator(ENVIRONMENT)

    def cold_starts(self, episode: int, training: bool = False) -> np.random.Generator:
        return self._generator(COLD_STARTS, int(training), episode)

    def load_probe(self) -> np.random.Generator:
        return self._generator(LOAD_PROBE)
