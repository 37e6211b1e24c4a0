"""The one run path: resolve → train → evaluate → summarise → save. `bench run`, the sandbox's child, verify,
populate, sweeps and the gate all go through `execute` (`run` is its keyword front).

A run is a pure function of (scenario, scheduler and its parameters, seeds, episode counts, code version): every
random draw comes from `tasks.Streams(seed)`, and a fresh scheduler is built for each seed. Heuristics skip
training. Evaluation episodes are the same for every scheduler (paired).

Where the scheduler's code runs is the executor's business: `InProcess` (here, trusted code) or the sandbox's
executor (bench.experiments.sandbox), which rebuilds the same `RunResult` from the actions of a confined child.
The run path knows neither the sandbox nor anything above it.

Decision order inside an episode (docs/environment.md): slot by slot (window by window, instant by instant in the
event model); within one the scheduler gets the tasks of one base station at a time (`batch_unit = "bs"`) or all
of them at once (`batch_unit = "slot"`); after each slot or window with tasks it may `observe` the outcome.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Protocol, Sequence

import numpy as np

from bench.core.config import finite_number
from bench.core.errors import BenchError, SchedulerError, one_line
from bench.engine.environment import Environment
from bench.engine.system import System
from bench.experiments.runs.checkpoint import Checkpoint
from bench.experiments.runs.request import RunPlan, RunRequest, resolve
from bench.experiments.runs.result import RunResult, SeedResult, evaluation_row
from bench.scenarios import Scenario
from schedulers.interface import Scheduler
from schedulers.registry import make

Progress = Callable[[str], None]  # called once per finished episode with a short label


def run_episode(env: Environment, scheduler: Scheduler, workload, *, episode: int, training: bool, who: str) -> tuple[Any, int]:
    """Play one episode; return its trace and the nanoseconds spent inside `decide`.

    A failure inside the scheduler's code (an exception, even SystemExit) ends the run with one line naming the
    scheduler, never a traceback or a silent exit; a batch needs exactly one action per task."""
    env.reset(workload)
    _call(who, "begin_episode", scheduler.begin_episode, episode, training)
    unit = env.unit_for(scheduler)
    observes = scheduler.reads_feedback()  # feedback is built only for those who read it
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


def _checked_stats(who: str, stats: Any) -> dict[str, float]:
    """A scheduler's counters as the results schema takes them: at most 32 short names, finite numbers (the same rule
    in process and through the sandbox channel)."""
    if isinstance(stats, dict):
        stats = {k: v.item() if isinstance(v, np.generic) else v for k, v in stats.items()}
    ok = isinstance(stats, dict) and len(stats) <= 32 and all(
        isinstance(k, str) and 0 < len(k) <= 64 and k.isprintable() and finite_number(v) for k, v in stats.items())
    if not ok:
        raise SchedulerError(f"{who}: stats() returned {one_line(repr(stats), 100)}; expected at most 32 named finite numbers")
    return stats


class Executor(Protocol):
    """Where a planned run's scheduler code runs: it trains and evaluates, and returns the run's result.
    `confined`: the scheduler's code must not be imported in this process (the request is resolved without it)."""

    confined: bool

    def execute(self, plan: RunPlan, progress: Progress | None) -> RunResult: ...

    def manifest_entry(self) -> dict[str, Any] | None:
        """What a bundle's manifest adds about how the run was executed (None: nothing)."""
        ...


class InProcess:
    """Train and evaluate in this process: built-ins and code the user trusts. An executor whose scheduler code
    runs elsewhere subclasses it and overrides `scheduler` (the engine stays here either way)."""

    confined = False  # True: the scheduler's code must not be imported here (untrusted)

    def scheduler(self, plan: RunPlan, seed: int) -> tuple[Scheduler, dict[str, Any]]:
        """A fresh scheduler for one seed, and what it is: name, class, resolved parameters, learns, batch unit."""
        facts = {"scheduler": plan.label, "scheduler_class": plan.scheduler_class, "scheduler_params": plan.scheduler_params,
                 "learns": plan.learns, "batch_unit": plan.cls.batch_unit}
        return make(plan.scheduler, plan.params), facts

    def execute(self, plan: RunPlan, progress: Progress | None) -> RunResult:
        start = time.perf_counter()
        result = None
        for seed in plan.seeds:
            system = System.build(plan.scenario, seed)
            env = system.env()
            sched, facts = self.scheduler(plan, seed)
            if result is None:
                result = new_result(plan, facts["scheduler"], facts["scheduler_class"], facts["scheduler_params"], facts["learns"], facts["batch_unit"])
            learns = result.learns
            who = f"scheduler '{result.scheduler}'"
            n_train = plan.train_for(learns)
            _call(who, "reset", sched.reset, system.info(), system.streams.scheduler())
            if plan.checkpoint is not None and learns:
                if plan.cls is None:  # a confined scheduler: its name and parameters are known only now
                    plan.checkpoint.check(result.scheduler, plan.scenario, plan.seeds, result.scheduler_params)
                _call(who, "load_state_dict", sched.load_state_dict, plan.checkpoint.states[seed])

            training: list[dict[str, Any]] = []
            t_train = time.perf_counter()
            for e in range(n_train):
                t0 = time.perf_counter()
                trace, _ = run_episode(env, sched, system.workload(e, training=True), episode=e, training=True, who=who)
                training.append({"seed": seed, "episode": e, "mean_delay_s": float(trace.delay_s.mean()), "wall_s": time.perf_counter() - t0})
                if progress:
                    progress(f"seed {seed} train {e + 1}/{n_train}")
            train_s = time.perf_counter() - t_train
            # the policy as evaluation starts: what a checkpoint must hold to reproduce the evaluation
            state = _call(who, "state_dict", sched.state_dict) if learns else None
            stats = _checked_stats(who, _call(who, "stats", sched.stats))

            def play(e: int, env=env, system=system, sched=sched, seed=seed, who=who):
                trace, decision_ns = run_episode(env, sched, system.workload(e), episode=e, training=False, who=who)
                return trace, evaluation_row(seed, e, trace, decision_ns=decision_ns)

            result.per_seed.append(evaluate_seed(plan, learns, seed, play, training, stats, train_s, state, progress))
        result.wall_s = time.perf_counter() - start
        return result

    def manifest_entry(self) -> dict[str, Any] | None:
        return None


def new_result(plan: RunPlan, name: str, scheduler_class: str, params: dict[str, Any], learns: bool, batch_unit: str) -> RunResult:
    """An empty result of the plan, for a scheduler known to be `name` (a confined one says so after its run)."""
    train = (plan.checkpoint.train_episodes or 0) if learns and plan.checkpoint is not None else plan.train_for(learns)
    return RunResult(scenario=plan.scenario, scheduler=name, scheduler_ref=plan.scheduler, scheduler_class=scheduler_class,
                     scheduler_params=params, learns=learns, batch_unit=batch_unit, seeds=list(plan.seeds), episodes=plan.episodes,
                     train_episodes=train, checkpoint_info=plan.checkpoint.info() if learns and plan.checkpoint is not None else None)


def evaluate_seed(plan: RunPlan, learns: bool, seed: int, play: Callable[[int], tuple[Any, dict[str, Any]]], training: list[dict[str, Any]],
                  stats: dict[str, float], train_s: float, state: dict[str, Any] | None, progress: Progress | None = None) -> SeedResult:
    """One seed's evaluation: `play(e)` gives episode e's trace and row (by running the scheduler, or by charging
    a confined child's actions); a learner run from a checkpoint reports how its policy was trained."""
    if plan.checkpoint is not None and learns:
        training, stats, train_s = plan.checkpoint.trained(seed, training, stats, train_s)
    rows: list[dict[str, Any]] = []
    actions: list[np.ndarray] = []
    traces: list[Any] | None = [] if plan.request.keep_traces else None
    t_eval = time.perf_counter()
    for e in range(plan.episodes):
        trace, row = play(e)
        rows.append(row)
        actions.append(trace.actions)
        if traces is not None:
            traces.append(trace)
        if progress:
            progress(f"seed {seed} eval {e + 1}/{plan.episodes}")
    return SeedResult(seed, rows, actions, traces, training, train_s, time.perf_counter() - t_eval, state, stats)


@dataclass(frozen=True)
class Save:
    """Where and how the run path saves a result bundle. `command` is the manifest's command line (default: the
    `bench run` line that re-creates the run); `marked_root`: a folder of runs to mark as the suite's."""

    target: Path
    overwrite: bool = False
    task_records: bool = False
    checkpoint: bool = True
    command: Sequence[str] | None = None
    provenance: Mapping[str, Any] | None = None
    extra: Mapping[str, Any] | None = None
    marked_root: Path | None = None
    sandbox: bool = False  # the command line says --sandbox


def store(result: RunResult, save: Save, *, command: Sequence[str], extra: Mapping[str, Any] | None = None) -> Path:
    """The run path's last step: the result's bundle, written atomically (also used by sweeps, whose cells run
    in workers and are saved by the process that owns the output folder)."""
    from bench.core.io import write_marker
    from bench.experiments.runs.bundles import write_bundle

    if save.marked_root is not None:
        save.marked_root.mkdir(parents=True, exist_ok=True)
        write_marker(save.marked_root, "runs")
    entries = {**(save.extra or {}), **(extra or {})} or None
    result.bundle = write_bundle(result, save.target, overwrite=save.overwrite, task_records=save.task_records, command=list(command),
                                 checkpoint=save.checkpoint, provenance=dict(save.provenance) if save.provenance else None, extra=entries)
    return result.bundle


def execute(plan: RunPlan, *, executor: Executor | None = None, save: Save | None = None, progress: Progress | None = None) -> RunResult:
    """Train and evaluate (through `executor`, default in this process), summarise, and save a bundle when asked.
    The output folder is checked before any work; the bundle is written atomically."""
    from bench.experiments.runs.bundles import check_out_dir

    if save is not None:
        check_out_dir(save.target, save.overwrite)
    executor = executor or InProcess()
    result = executor.execute(plan, progress)
    result.summary()  # summarised once here: a result that cannot be summarised is not saved
    if save is not None:
        command = save.command if save.command is not None else plan.command(
            result.learns, out=str(save.target), task_records=save.task_records, with_checkpoint=save.checkpoint, sandbox=save.sandbox)
        store(result, save, command=command, extra=executor.manifest_entry())
    return result


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
    executor: Executor | None = None,
    save: Save | None = None,
) -> RunResult:
    """Train (learning schedulers only) and evaluate `scheduler` on `scenario` for each seed: `execute` of the
    resolved request. With `checkpoint`, a learning scheduler is not trained: each seed's state is loaded from it."""
    confined = bool(getattr(executor, "confined", False))
    request = RunRequest(scenario, scheduler, params=params, seeds=tuple(seeds), episodes=episodes, train_episodes=train_episodes,
                         checkpoint=checkpoint, keep_traces=keep_traces, confined=confined)
    return execute(resolve(request), executor=executor, save=save, progress=progress)
