"""The runner: for each seed, train a learning scheduler on the training stream, then evaluate.

A run is a pure function of (scenario, scheduler and its parameters, seeds, episode counts, code
version): every random draw comes from `tasks.Streams(seed)`, and a fresh scheduler is built for each
seed. Heuristics skip training. Evaluation episodes are the same for every scheduler (paired).

Decision order inside an episode (docs/environment.md): slot by slot; within a slot the scheduler
gets the tasks of one base station at a time (`batch_unit = "bs"`) or the whole slot at once
(`batch_unit = "slot"`); after each slot with tasks it may `observe` the outcome.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from bench.core.errors import BenchError, SchedulerError
from bench.engine.events import EventEnv
from bench.engine.slotted import EpisodeTrace, SlottedEnv
from bench.engine.metrics import episode_metrics
from bench.experiments.summary import converged_episode, episodes_independent, summarize
from bench.scenarios import Scenario
from bench.engine.system import System
from schedulers.interface import Scheduler
from schedulers.registry import config_dict, label, make, resolve

Progress = Callable[[str], None]
RUNTIME_PARAMS = frozenset({"device", "threads"})  # where a learner runs, not what it learned: a checkpoint may change them  # called once per finished episode with a short label


@dataclass
class Checkpoint:
    """Trained states of a learning scheduler, one per seed, as a bundle stores them (checkpoint.pt)."""

    scheduler: str
    scenario_hash: str
    params: dict[str, Any]
    states: dict[int, dict[str, Any]]
    source: str | None = None
    sha256: str | None = None
    # how the policy was trained, when the checkpoint comes from a bundle: its training episodes, and per
    # seed the learning-curve rows and the learner's counters; a run from the checkpoint reports them
    train_episodes: int | None = None
    training: dict[int, dict[str, Any]] = field(default_factory=dict)

    def fill(self, scheduler: str, params: Sequence[str] | Mapping[str, Any]) -> Sequence[str] | Mapping[str, Any]:
        """The run's hyper-parameters completed with the ones the policy was trained with: evaluating a checkpoint
        needs none of them again. A parameter given explicitly is kept (check() refuses it when it differs), and
        a checkpoint of another scheduler fills nothing (check() refuses it)."""
        from bench.core.config import parse_override

        if scheduler != self.scheduler:
            return params
        given = dict(params) if isinstance(params, Mapping) else {".".join(k): v for k, v in map(parse_override, params)}
        return {**{k: v for k, v in self.params.items() if k not in RUNTIME_PARAMS}, **given}

    def check(self, scheduler: str, scenario: Scenario, seeds: Sequence[int], params: Mapping[str, Any] | None = None) -> None:
        """Refuse a checkpoint of another scheduler, scenario, hyper-parameters or seeds (one line each).

        `params` are the run's resolved hyper-parameters; `device` and `threads` may differ (where the policy
        runs, not what it is)."""
        from bench.core.errors import BundleError

        if scheduler != self.scheduler:
            raise BundleError(f"--checkpoint holds a '{self.scheduler}' policy; expected one of '{scheduler}'")
        if params is not None:
            for key in sorted(set(self.params) | set(params)):
                if key in RUNTIME_PARAMS:
                    continue
                mine, theirs = self.params.get(key, "<absent>"), params.get(key, "<absent>")
                if mine != theirs:
                    raise BundleError(f"--checkpoint was trained with {key} = {mine!r}; this run has {theirs!r} (pass --param {key}={json.dumps(mine)} to evaluate it)")
        if scenario.hash != self.scenario_hash:
            raise BundleError(f"--checkpoint was trained on scenario hash {self.scenario_hash[:12]}; this run's scenario has {scenario.hash[:12]}")
        missing = [s for s in seeds if s not in self.states]
        if missing:
            raise BundleError(f"--checkpoint has no state for seed(s) {missing}; it holds seeds {sorted(self.states)}")


def run_episode(env: SlottedEnv | EventEnv, scheduler: Scheduler, workload, *, episode: int, training: bool, who: str) -> tuple[EpisodeTrace, int]:
    """Play one episode; return its trace and the nanoseconds spent inside `decide`.

    A failure inside the scheduler's code (an exception, even SystemExit) ends the run with one line naming the
    scheduler, never a traceback or a silent exit; a batch needs exactly one action per task."""
    env.reset(workload)
    _call(who, "begin_episode", scheduler.begin_episode, episode, training)
    unit = env.unit_for(scheduler)
    observes = type(scheduler).observe is not Scheduler.observe  # feedback is built only for those who read it
    decision_ns = 0
    clock = time.perf_counter_ns
    while not env.done:
        batch = env.batch(env.pending(unit))
        t0 = clock()
        actions = _call(who, "decide", scheduler.decide, batch)
        decision_ns += clock() - t0
        if env.step(actions, who=who, expected=len(batch)) and observes:
            _call(who, "observe", scheduler.observe, env.last_feedback())
    _call(who, "end_episode", scheduler.end_episode)
    return env.trace(), decision_ns


def _call(who: str, hook: str, fn: Callable[..., Any], *args: Any) -> Any:
    try:
        return fn(*args)
    except BenchError:
        raise
    except (Exception, SystemExit) as exc:
        raise SchedulerError(f"{who}: {hook}() raised {type(exc).__name__}: {exc}") from None


@dataclass
class SeedResult:
    seed: int
    rows: list[dict[str, Any]]  # one per evaluation episode: seed, episode, metrics, timing
    actions: list[np.ndarray]  # one array per evaluation episode, decision order
    traces: list[EpisodeTrace] | None  # kept only when task records are asked for
    training: list[dict[str, Any]]  # one row per training episode (learning schedulers)
    train_s: float
    eval_s: float
    state: dict[str, Any] | None  # the trained scheduler's state_dict (learning schedulers)
    stats: dict[str, float] = field(default_factory=dict)  # the scheduler's counters after training

    @property
    def converged_episode(self) -> int | None:
        return converged_episode([r["mean_delay_s"] for r in self.training]) if self.training else None


@dataclass
class RunResult:
    scenario: Scenario
    scheduler: str  # the display name (schedulers.registry.label)
    scheduler_class: str
    scheduler_params: dict[str, Any]
    learns: bool
    batch_unit: str
    seeds: list[int]
    episodes: int
    train_episodes: int
    per_seed: list[SeedResult] = field(default_factory=list)
    wall_s: float = 0.0
    scheduler_ref: str = ""  # the reference the run resolved (a name, module:Class or file.py:Class)
    checkpoint_info: dict[str, Any] | None = None  # evaluated from this checkpoint: its source, SHA-256, training

    @property
    def checkpoint(self) -> str | None:
        return self.checkpoint_info["source"] if self.checkpoint_info else None

    @property
    def rows(self) -> list[dict[str, Any]]:
        return [r for s in self.per_seed for r in s.rows]

    def summary(self) -> dict[str, Any]:
        """The run's summary; everything outside `timing` is reproducible byte for byte."""
        rows = self.rows
        metrics = summarize(rows, learns=self.learns, independent=episodes_independent(self.scenario.to_dict()))
        tasks = sum(r["tasks"] for r in rows)
        decision_ns = sum(r["decision_us_per_task"] * r["tasks"] * 1e3 for r in rows)
        out = {
            "scheduler": self.scheduler,
            "scheduler_params": self.scheduler_params,
            "scenario": self.scenario.name,
            "scenario_hash": self.scenario.hash,
            "seeds": self.seeds,
            "episodes": self.episodes,
            "train_episodes": self.train_episodes,
            **metrics,
        }
        if self.learns:
            out["training"] = {
                "checkpoint": self.checkpoint,
                "per_seed": [
                    {"seed": s.seed, "converged_episode": s.converged_episode, "final_train_delay_s": s.training[-1]["mean_delay_s"] if s.training else None, **s.stats}
                    for s in self.per_seed
                ],
            }
        return {
            **out,
            "timing": {
                "decision_us_per_task": decision_ns / tasks / 1e3 if tasks else None,
                "train_s": sum(s.train_s for s in self.per_seed),
                "eval_s": sum(s.eval_s for s in self.per_seed),
                "wall_s": self.wall_s,
            },
        }


def run(
    scenario: Scenario,
    scheduler: str,
    *,
    params: Sequence[str] | Mapping[str, Any] = (),
    seeds: Sequence[int] = (0,),
    episodes: int | None = None,
    train_episodes: int | None = None,
    keep_traces: bool = False,
    progress: Progress | None = None,
    checkpoint: Checkpoint | None = None,
) -> RunResult:
    """Train (learning schedulers only) and evaluate `scheduler` on `scenario` for each seed.

    With `checkpoint`, a learning scheduler is not trained: each seed's state is loaded from it.
    """
    cls = resolve(scheduler)
    name = label(scheduler, cls)
    episodes = scenario.protocol.eval_episodes if episodes is None else episodes
    if episodes < 1:
        raise ValueError(f"episodes = {episodes} is not allowed; expected an integer >= 1")
    if not cls.learns:
        train_episodes = 0
    elif checkpoint is not None:
        params = checkpoint.fill(name, params)
        checkpoint.check(name, scenario, seeds, config_dict(make(scheduler, params)))
        train_episodes = checkpoint.train_episodes or 0
    elif train_episodes is None:
        train_episodes = scenario.protocol.train_episodes
    if len(set(seeds)) != len(seeds) or not seeds:
        raise ValueError(f"seeds = {list(seeds)} is not allowed; expected distinct non-negative integers")

    if scenario.tasks.trace is not None:  # a replayed trace has as many evaluation episodes as evaluation windows
        System.build(scenario, seeds[0]).check_episodes(episodes)
    start = time.perf_counter()
    probe = make(scheduler, params)
    result = RunResult(
        scenario=scenario,
        scheduler=name,
        scheduler_ref=scheduler,
        scheduler_class=f"{cls.__module__}:{cls.__qualname__}",
        scheduler_params=config_dict(probe),
        learns=cls.learns,
        batch_unit=cls.batch_unit,
        seeds=list(seeds),
        episodes=episodes,
        train_episodes=train_episodes,
    )
    who = f"scheduler '{name}'"
    for seed in seeds:
        system = System.build(scenario, seed)
        env = system.env()
        sched = make(scheduler, params)
        _call(who, "reset", sched.reset, system.info(), system.streams.scheduler())
        if checkpoint is not None and cls.learns:
            _call(who, "load_state_dict", sched.load_state_dict, checkpoint.states[seed])

        training_rows: list[dict[str, Any]] = []
        t_train = time.perf_counter()
        for e in range(train_episodes if checkpoint is None else 0):
            t0 = time.perf_counter()
            trace, _ = run_episode(env, sched, system.workload(e, training=True), episode=e, training=True, who=who)
            training_rows.append(
                {"seed": seed, "episode": e, "mean_delay_s": float(trace.delay_s.mean()), "wall_s": time.perf_counter() - t0}
            )
            if progress:
                progress(f"seed {seed} train {e + 1}/{train_episodes}")
        train_s = time.perf_counter() - t_train
        # the policy as evaluation starts: what a checkpoint must hold to reproduce the evaluation
        state = _call(who, "state_dict", sched.state_dict) if cls.learns else None
        stats = _call(who, "stats", sched.stats)
        if checkpoint is not None and cls.learns and seed in checkpoint.training:
            trained = checkpoint.training[seed]
            training_rows = [dict(r) for r in trained.get("rows", [])]
            stats = dict(trained.get("stats", stats))
            train_s = float(sum(r.get("wall_s", 0.0) for r in training_rows))

        rows: list[dict[str, Any]] = []
        actions: list[np.ndarray] = []
        traces: list[EpisodeTrace] | None = [] if keep_traces else None
        t_eval = time.perf_counter()
        for e in range(episodes):
            trace, decision_ns = run_episode(env, sched, system.workload(e), episode=e, training=False, who=who)
            row = {"seed": seed, "episode": e, **episode_metrics(trace)}
            row["decision_us_per_task"] = decision_ns / 1e3 / max(row["tasks"], 1)
            rows.append(row)
            actions.append(trace.actions)
            if traces is not None:
                traces.append(trace)
            if progress:
                progress(f"seed {seed} eval {e + 1}/{episodes}")
        eval_s = time.perf_counter() - t_eval
        result.per_seed.append(SeedResult(seed, rows, actions, traces, training_rows, train_s, eval_s, state, stats))
    result.wall_s = time.perf_counter() - start
    if checkpoint is not None and cls.learns:
        result.checkpoint_info = {"source": checkpoint.source, "sha256": checkpoint.sha256, "train_episodes": checkpoint.train_episodes}
    return result
