"""Run scheduler code the suite does not trust in a confined child; trust only what the suite recomputes.

`Sandboxed(limits)` is an executor of the run path (bench.experiments.runs.runner.execute): the scheduler runs in a
child (bench.experiments.sandbox.worker, confined by bench.experiments.sandbox.confine) and the parent keeps only
plain data from it (docs/sandbox.md). `run_sandboxed(scenario, scheduler, ...)` is the same run as an outcome.

- Trust: the parent never unpickles what the child wrote. Actions come back as .npy (allow_pickle=False), the
  rest as size-checked JSON, a learner's policy as torch.save of plain tensors read with weights_only=True.
  Every metric is recomputed by charging the actions through the suite's engine, and the result is a normal
  RunResult. What cannot be recomputed (decision and wall times, learning curves, counters, the policy itself)
  is listed as reported by the sandboxed code (`REPORTED`, `SandboxOutcome.manifest_entry`).
- A crash, hang, exit, huge allocation or invalid action fails the run with a one-line reason.
"""

from __future__ import annotations

import io
import json
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bench.core.config import finite_number
from bench.core.errors import BenchError, one_line
from bench.engine.system import System
from bench.experiments.runs.request import RunPlan, plain_params
from bench.experiments.runs.result import RunResult, evaluation_row
from bench.experiments.runs.runner import Progress, evaluate_seed, new_result, run
from bench.experiments.sandbox.confine import (
    MiB,
    Isolation,
    Limits,
    Namespaces,
    OutputRefused,
    Usage,
    cgroup_base,
    namespaces,
    read_output,
    session,
    size_text,
)
from bench.scenarios import Scenario
from schedulers.registry import BUILTINS

RESULT_JSON_BYTES = 64 * MiB
REPORTED = (
    "timing: decision_us_per_task, train_s, eval_s, wall_s (measured inside the sandboxed process)",
    "training.parquet: the learning curve (training episodes are not replayed)",
    "summary training.per_seed: the learner's counters",
    "checkpoint.pt: the policy as the sandboxed code saved it (read with weights_only=True)",
)


@dataclass
class SandboxOutcome:
    ok: bool
    reason: str  # one line; "" when ok
    limits: Limits
    isolation: Isolation
    usage: Usage
    result: RunResult | None = None
    log_tail: str = ""  # the last lines the child printed (for the user; never parsed)
    checks: list | None = None  # check_sandboxed: the conformance checks (bench.experiments.runs.conformance.Check)

    def report(self) -> str:
        head = "sandbox: ok" if self.ok else f"sandbox: failed: {self.reason}"
        u = self.usage
        cpu = f"{u.cpu_s:.1f} s" if u.cpu_s is not None else "unknown"
        used = f"used: wall {u.wall_s:.1f} s, CPU {cpu}, peak memory {size_text(u.peak_memory_bytes)}, output {size_text(u.output_bytes)}, {u.processes} processes"
        return "\n".join([head, f"limits: {self.limits.describe()}", used, *self.isolation.lines()])

    def manifest_entry(self) -> dict[str, Any]:
        """For write_bundle(extra=...): how the run was confined, and which values the suite did not recompute."""
        builtin = self.result is not None and (self.result.scheduler_ref or self.result.scheduler) in BUILTINS
        reported = list(REPORTED) + ([] if builtin else ["scheduler: its label, class, hyper-parameters, learns and batch unit"])
        return {"sandbox": {
            "limits": asdict(self.limits),
            "isolation": self.isolation.lines(),
            "usage": asdict(self.usage),
            "recomputed": "episodes.parquet and every summary metric outside timing: the suite replayed actions.parquet",
            "reported_by_sandboxed_code": reported,
        }}


class SandboxError(BenchError):
    """A sandboxed run failed (the scheduler's fault, or the confinement's): `outcome` says how, with its report."""

    def __init__(self, outcome: SandboxOutcome, scheduler: str):
        super().__init__(f"sandboxed run of '{scheduler}' failed: {outcome.reason}")
        self.outcome = outcome


class Sandboxed:
    """An executor of the run path that runs the scheduler's code in a confined child and rebuilds the result from
    its actions. After `execute`, `outcome` holds the sandbox's report (also when it failed: SandboxError).
    `sys_path`: directories the child imports from first (a submission's carried source/); `isolate=False` keeps
    the limits but no namespaces (the report says so)."""

    def __init__(self, limits: Limits | None = None, *, isolate: bool = True, sys_path: Sequence[str] = ()):
        self.limits = limits or Limits()
        self.isolate = isolate
        self.sys_path = [str(Path(d).resolve()) for d in sys_path]
        self.outcome: SandboxOutcome | None = None

    def execute(self, plan: RunPlan, progress: Progress | None) -> RunResult:
        ckpt = plan.checkpoint
        ref = _absolute_reference(plan.scheduler)
        params = plain_params(plan.params)
        task = {"kind": "run", "scenario": plan.scenario.to_dict(), "scenario_hash": plan.scenario.hash, "scheduler": ref, "params": params,
                "seeds": plan.seeds, "episodes": plan.episodes, "train_episodes": plan.request.train_episodes,
                "checkpoint": "checkpoint_in.pt" if ckpt is not None else None, "checkpoint_params": ckpt.params if ckpt is not None else None,
                "sys_path": self.sys_path}

        def prepare(work: Path) -> None:
            import torch

            torch.save({s: ckpt.states[s] for s in plan.seeds if s in ckpt.states}, work / "checkpoint_in.pt")

        with session(task, self.limits, self.isolate, progress, prepare if ckpt is not None else None) as (finished, out):
            outcome = SandboxOutcome(False, finished.reason, finished.limits, finished.isolation, finished.usage, None, finished.log_tail)
            if outcome.reason == "":
                try:
                    outcome.result = _collect(out, plan, ref, self.limits)
                    outcome.ok = True
                except (OutputRefused, BenchError) as exc:
                    outcome.reason = f"invalid output: {one_line(str(exc))}"
        self.outcome = outcome
        if not outcome.ok:
            raise SandboxError(outcome, plan.scheduler)
        return outcome.result

    def manifest_entry(self) -> dict[str, Any] | None:
        return self.outcome.manifest_entry() if self.outcome is not None and self.outcome.ok else None


def run_sandboxed(scenario: Scenario, scheduler: str, *, limits: Limits | None = None, isolate: bool = True, sys_path: Sequence[str] = (),
                  **request: Any) -> SandboxOutcome:
    """The run path with the `Sandboxed` executor, as an outcome: it holds a RunResult when the run succeeded.

    `scheduler` is a built-in or plugin name, `module:Class` or `path/to/file.py:Class`; only a built-in is
    imported by this process (to know its parameters), everything else is imported by the child alone.
    `request`: the keywords of bench.experiments.runs.runner.run (params, seeds, episodes, train_episodes,
    keep_traces, checkpoint, progress). Problems with the arguments raise (BenchError); problems of the scheduler
    are the outcome."""
    executor = Sandboxed(limits, isolate=isolate, sys_path=sys_path)
    try:
        run(scenario, scheduler, executor=executor, **request)
    except SandboxError as exc:
        return exc.outcome
    return executor.outcome


def check_sandboxed(scheduler: str, params: Sequence[str] | Mapping[str, Any] = (), episodes: int = 3, *,
                    limits: Limits | None = None, isolate: bool = True) -> SandboxOutcome:
    """bench.experiments.runs.conformance.check in the sandbox; `outcome.checks` holds its checks when it finished.

    The checks are the scheduler's own report about itself (informational: nothing here is recomputed)."""
    limits = limits or Limits(wall_s=300.0)
    task = {"kind": "check", "scheduler": _absolute_reference(scheduler), "params": plain_params(params), "episodes": int(episodes)}
    with session(task, limits, isolate, None, None) as (finished, out):
        outcome = SandboxOutcome(False, finished.reason, finished.limits, finished.isolation, finished.usage, None, finished.log_tail)
        if outcome.reason == "":
            try:
                outcome.checks = _read_checks(out, limits)
                outcome.ok = True
            except OutputRefused as exc:
                outcome.reason = f"invalid output: {one_line(str(exc))}"
        return outcome


def _read_checks(out: Path, limits: Limits) -> list:
    from bench.experiments.runs.conformance import Check

    data = _json(read_output(out, ["checks.json"], min(int(limits.output_bytes), MiB)))
    rows = data.get("checks") if isinstance(data, dict) else None
    _check(isinstance(rows, list) and 0 < len(rows) <= 32, "checks.json does not list the checks")
    checks = []
    for r in rows:
        _check(isinstance(r, dict) and isinstance(r.get("name"), str) and isinstance(r.get("passed"), bool)
               and isinstance(r.get("detail"), str) and isinstance(r.get("skipped"), bool), "a check is not {name, passed, detail, skipped}")
        checks.append(Check(one_line(r["name"])[:80], r["passed"], one_line(r["detail"])[:500], r["skipped"]))
    return checks


def _absolute_reference(ref: str) -> str:
    """A `path/to/file.py:Class` reference with an absolute path: the child runs in another directory."""
    module, sep, attr = ref.rpartition(":")
    if sep and (module.endswith(".py") or "/" in module or os.sep in module):
        return f"{Path(module).resolve()}:{attr}"
    return ref


class _Budget:
    """Bytes the parent still agrees to read from the child's output (at most its output limit in all)."""

    def __init__(self, root: Path, total: int):
        self.root, self.left = root, total

    def read(self, *parts: str, limit: int | None = None) -> bytes:
        data = read_output(self.root, parts, min(self.left, limit or self.left))
        self.left -= len(data)
        return data


def _json(data: bytes) -> Any:
    def refuse(constant: str) -> Any:
        raise OutputRefused(f"the output holds {constant}; only finite numbers are allowed")

    try:
        return json.loads(data, parse_constant=refuse)
    except ValueError as exc:
        raise OutputRefused(f"the output is not valid JSON ({exc})") from None


def _check(cond: bool, what: str) -> None:
    if not cond:
        raise OutputRefused(f"result.json: {what}")


def _number(value: Any, what: str, *, minimum: float = 0.0) -> float:
    _check(finite_number(value) and value >= minimum,
           f"{what} = {str(value)[:40]} is not a finite number >= {minimum:g}")
    return float(value)


def _count(value: Any, what: str) -> int:
    _check(isinstance(value, int) and not isinstance(value, bool) and value >= 0, f"{what} = {str(value)[:40]} is not an integer >= 0")
    return int(value)


def _collect(out: Path, plan: RunPlan, ref: str, limits: Limits) -> RunResult:
    """Build the RunResult from the child's plain output, recomputing every metric from its actions."""
    budget = _Budget(out, int(limits.output_bytes))
    report = _json(budget.read("result.json", limit=RESULT_JSON_BYTES))
    _check(isinstance(report, dict), "not an object")
    trusted = plan.cls is not None  # a built-in: what it is was resolved here, not reported
    learns = plan.learns if trusted else report.get("learns")
    _check(isinstance(learns, bool), "learns is not true or false")
    if trusted:
        facts = {"scheduler": plan.label, "scheduler_class": plan.scheduler_class, "scheduler_params": plan.scheduler_params,
                 "batch_unit": plan.cls.batch_unit}
    else:
        facts = {k: report.get(k) for k in ("scheduler", "scheduler_class", "scheduler_params", "batch_unit")}
        _check(isinstance(facts["scheduler"], str) and 0 < len(facts["scheduler"]) <= 200, "scheduler is not a name")
        _check(facts["scheduler"] not in BUILTINS, f"scheduler claims the built-in name '{facts['scheduler']}'")
        _check(isinstance(facts["scheduler_class"], str) and len(facts["scheduler_class"]) <= 300, "scheduler_class is not text")
        _check(isinstance(facts["scheduler_params"], dict), "scheduler_params is not an object")
        _check(facts["batch_unit"] in ("bs", "slot"), "batch_unit is not 'bs' or 'slot'")
        if facts["scheduler"] == ref:
            facts["scheduler"] = plan.scheduler  # the label of a file reference is the reference as the user gave it
    asked = plan.train_for(learns)  # from a checkpoint the child trains nothing
    _check(report.get("train_episodes") == asked, f"train_episodes = {str(report.get('train_episodes'))[:20]}; the run asked for {asked}")
    seeds = plan.seeds
    per_seed = report.get("per_seed")
    _check(isinstance(per_seed, list) and [p.get("seed") if isinstance(p, dict) else None for p in per_seed] == seeds,
           f"per_seed does not list the seeds {seeds} in order")
    states = _states(budget, out, plan, learns, trusted)

    result = new_result(plan, facts["scheduler"], facts["scheduler_class"], facts["scheduler_params"], learns, facts["batch_unit"])
    result.wall_s = _number(report.get("wall_s"), "wall_s")
    for seed, reported in zip(seeds, per_seed):
        timings = reported.get("decision_us_per_task")
        _check(isinstance(timings, list) and len(timings) == plan.episodes, f"seed {seed}: decision_us_per_task does not have {plan.episodes} values")
        training, stats, train_s = _training(reported, seed, asked)
        system = System.build(plan.scenario, seed)
        env = system.env()

        def play(e: int, seed=seed, system=system, env=env, timings=timings):
            trace = env.evaluate(system.workload(e), _actions(budget, seed, e), who=f"the sandboxed scheduler's actions (seed {seed}, episode {e})")
            return trace, evaluation_row(seed, e, trace, decision_us_per_task=_number(timings[e], f"seed {seed} decision_us_per_task[{e}]"))

        seed_result = evaluate_seed(plan, learns, seed, play, training, stats, train_s, states.get(seed))
        seed_result.eval_s = _number(reported.get("eval_s"), "eval_s")  # the child's time, not the time spent charging its actions
        result.per_seed.append(seed_result)
    return result


def _states(budget: _Budget, out: Path, plan: RunPlan, learns: bool, trusted: bool) -> dict[int, Any]:
    """The learner's policy per seed as the child saved it: plain tensors only, one state per seed of the run."""
    if not learns:
        return {}
    try:
        os.lstat(out / "checkpoint.pt")
        raw = budget.read("checkpoint.pt")
    except FileNotFoundError:  # a learner whose state_dict is empty saves none
        raw = None
    if raw is None:
        if trusted:
            raise OutputRefused(f"no checkpoint.pt: the built-in learner '{plan.scheduler}' always has a state")
        return {}
    import torch

    try:
        loaded = torch.load(io.BytesIO(raw), map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - whatever the file holds, it is refused in one line
        raise OutputRefused(f"checkpoint.pt is not a checkpoint of plain tensors ({type(exc).__name__}: {one_line(str(exc))[:200]})") from None
    _check(isinstance(loaded, dict) and all(isinstance(k, int) and k in plan.seeds and isinstance(v, dict) for k, v in loaded.items())
           and (not trusted or sorted(loaded) == sorted(plan.seeds)), "checkpoint.pt does not map this run's seeds to states")
    return loaded


def _training(reported: dict, seed: int, n_train: int) -> tuple[list[dict[str, Any]], dict[str, float], float]:
    rows = reported.get("training")
    _check(isinstance(rows, list) and len(rows) == n_train, f"seed {seed}: {n_train} training rows expected")
    clean = []
    for i, r in enumerate(rows):
        _check(isinstance(r, dict) and set(r) == {"seed", "episode", "mean_delay_s", "wall_s"} and r["seed"] == seed and r["episode"] == i,
               f"seed {seed}: training row {i} is not {{seed, episode, mean_delay_s, wall_s}} in order")
        clean.append({"seed": seed, "episode": i, "mean_delay_s": _number(r["mean_delay_s"], "mean_delay_s"), "wall_s": _number(r["wall_s"], "wall_s")})
    stats = reported.get("stats")
    _check(isinstance(stats, dict) and len(stats) <= 32 and all(isinstance(k, str) and len(k) <= 64 for k in stats), f"seed {seed}: stats is not a small object")
    clean_stats = {k: (v if isinstance(v, int) and not isinstance(v, bool) else _number(v, f"stats {k}", minimum=-math.inf)) for k, v in stats.items()}
    return clean, clean_stats, _number(reported.get("train_s"), "train_s")


def _actions(budget: _Budget, seed: int, episode: int) -> np.ndarray:
    name = f"{seed}-{episode}.npy"
    data = budget.read("actions", name)
    try:
        a = np.load(io.BytesIO(data), allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise OutputRefused(f"actions/{name} is not a plain .npy array ({one_line(str(exc))[:120]})") from None
    if not isinstance(a, np.ndarray) or a.ndim != 1 or a.dtype.kind not in "iu":
        raise OutputRefused(f"actions/{name} is not a 1-d integer array")
    return a.astype(np.int64, copy=False)


__all__ = ["REPORTED", "Isolation", "Limits", "Namespaces", "SandboxOutcome", "Usage", "cgroup_base", "check_sandboxed", "namespaces", "run_sandboxed"]
