"""Run scheduler code the suite does not trust in a confined child that sees only what crosses the channel.

`Sandboxed(limits)` is an executor of the run path (bench.experiments.runs.runner.execute): the engine runs here,
the scheduler's code in a child (bench.experiments.sandbox.worker, confined by bench.experiments.sandbox.confine)
that receives each batch as plain arrays and answers with actions (bench.experiments.sandbox.channel); the
workload, the cost model and the random draws never enter it (docs/sandbox.md). `run_sandboxed(scenario,
scheduler, ...)` is the same run as an outcome.

- Trust: nothing from the child is unpickled. Actions, a learner's policy (tensors) and counters come back as
  raw arrays and size-checked JSON; the engine here charges every action, so every metric, the learning curve and
  every time is the suite's own measurement. What only the scheduler can say (its counters, its policy, for
  plugins what it is) is listed as reported (`REPORTED`, `SandboxOutcome.manifest_entry`).
- A crash, hang, exit, huge allocation or invalid action fails the run with a one-line reason.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from bench.core.errors import BenchError, SchedulerError
from bench.experiments.runs.request import RunPlan, plain_params
from bench.experiments.runs.result import RunResult
from bench.experiments.runs.runner import InProcess, Progress, run
from bench.experiments.sandbox import channel
from bench.experiments.sandbox.channel import RemoteScheduler
from bench.experiments.sandbox.confine import (
    Isolation,
    Limits,
    Namespaces,
    Usage,
    cgroup_base,
    namespaces,
    session,
    size_text,
)
from bench.experiments.sandbox.lane import Lane
from bench.scenarios import Scenario
from schedulers.interface import Scheduler
from schedulers.registry import BUILTINS

REPORTED = (
    "summary training.per_seed: the learner's counters (stats)",
    "checkpoint.pt: the policy as the sandboxed code handed it over (plain tensors and numbers, over the channel)",
)
DECIDE_S = 60.0  # wall seconds one decide() may take in the sandbox
CALL_S = 600.0  # wall seconds any other hook may take (a learner's end of episode, its state)


@dataclass
class SandboxOutcome:
    ok: bool
    reason: str  # one line; "" when ok
    limits: Limits
    isolation: Isolation
    usage: Usage
    result: RunResult | None = None
    log_tail: str = ""  # the last lines the child printed (for the user; never parsed)
    answer: Any = None  # what the work driven over the channel returned (a RunResult, the checks)
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
            "recomputed": "everything else: the engine ran in the suite's process and charged each decision; the scheduler's code "
                          "answered each batch from the sandbox over the channel (decision times include the channel)",
            "reported_by_sandboxed_code": reported,
        }}


class SandboxError(BenchError):
    """A sandboxed run failed (the scheduler's fault, or the confinement's): `outcome` says how, with its report."""

    def __init__(self, outcome: SandboxOutcome, scheduler: str):
        super().__init__(f"sandboxed run of '{scheduler}' failed: {outcome.reason}")
        self.outcome = outcome


class Sandboxed(InProcess):
    """An executor of the run path whose scheduler code runs in a confined child behind the channel
    (bench.experiments.sandbox.channel): the engine, the workload and the random draws stay in this process; the
    child receives each batch as plain arrays and answers with actions, within `decide_s` seconds per decision.
    After `execute`, `outcome` holds the sandbox's report (also when it failed: SandboxError).
    `sys_path`: directories the child imports from first (a submission's carried source/); `isolate=False` keeps
    the limits but no namespaces (the report says so)."""

    confined = True

    def __init__(self, limits: Limits | None = None, *, isolate: bool = True, sys_path: Sequence[str] = (),
                 decide_s: float = DECIDE_S, call_s: float = CALL_S):
        self.limits = limits or Limits()
        self.isolate = isolate
        self.sys_path = [str(Path(d).resolve()) for d in sys_path]
        self.decide_s, self.call_s = decide_s, call_s
        self.outcome: SandboxOutcome | None = None
        self._connect: Connect | None = None  # a fresh scheduler in the child, during `execute`

    def execute(self, plan: RunPlan, progress: Progress | None) -> RunResult:
        def work(connect: Connect) -> RunResult:
            self._connect = connect
            return InProcess.execute(self, plan, progress)

        outcome = _serving(plan.scheduler, plan.params, self.sys_path, self.limits, self.isolate, work, decide_s=self.decide_s,
                           call_s=self.call_s)
        if outcome.ok:
            outcome.result = outcome.answer
        self.outcome = outcome
        if not outcome.ok:
            raise SandboxError(outcome, plan.scheduler)
        return outcome.result

    def scheduler(self, plan: RunPlan, seed: int) -> tuple[Scheduler, dict[str, Any]]:
        """The next seed's scheduler: a fresh one in the child, and what it is (for a built-in, what the registry
        says; for other code, what its process says, checked)."""
        who = f"scheduler '{plan.scheduler}'"
        remote = self._connect()
        if plan.cls is not None:  # a built-in: the suite's own code, resolved here
            return remote, {"scheduler": plan.label, "scheduler_class": plan.scheduler_class, "scheduler_params": plan.scheduler_params,
                            "learns": plan.learns, "batch_unit": plan.cls.batch_unit}
        facts = {k: remote.facts[k] for k in ("scheduler", "scheduler_class", "scheduler_params", "learns", "batch_unit")}
        if facts["scheduler"] in BUILTINS:
            raise SchedulerError(f"{who}: its process claims the built-in name '{facts['scheduler']}'")
        if facts["scheduler"] == _absolute_reference(plan.scheduler):
            facts["scheduler"] = plan.scheduler  # the label of a file reference is the reference as the user gave it
        remote.who = f"scheduler '{facts['scheduler']}'"
        return remote, facts

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
                    limits: Limits | None = None, isolate: bool = True, decide_s: float = DECIDE_S) -> SandboxOutcome:
    """bench.experiments.runs.conformance.check with the scheduler in the sandbox, behind the channel (the checks'
    episodes run here); `outcome.checks` holds them when the session held. A scheduler that sleeps in `decide`
    fails its check after `decide_s`; the whole session has the wall limit of `limits` (default 300 s)."""
    from bench.experiments.runs.conformance import check

    limits = limits or Limits(wall_s=300.0)

    def work(connect: Connect) -> list:
        def new() -> tuple[Scheduler, dict[str, Any]]:
            remote = connect()
            return remote, remote.facts

        return check(scheduler, [], int(episodes), new=new)

    outcome = _serving(scheduler, params, [], limits, isolate, work, decide_s=decide_s, call_s=CALL_S)
    outcome.checks = outcome.answer if outcome.ok else None
    return outcome


Connect = Callable[[], RemoteScheduler]


def _serving(scheduler: str, params: Any, sys_path: Sequence[str], limits: Limits, isolate: bool, work: Callable[[Connect], Any],
             **call_limits: float) -> SandboxOutcome:
    """A session whose child serves `scheduler` over the channel while `work(connect)` runs here; `connect()` gives a
    fresh scheduler in the child (the first one, then each next one), refused once the child is stuck in a call
    that ran out of time. The outcome's `answer` is what `work` returned, when the session held."""
    to_child_r, to_child_w = channel.pipe()
    from_child_r, from_child_w = channel.pipe()
    lane = Lane.create()
    lane_fds = () if lane is None else lane.child_fds()
    task = {"kind": "serve", "scheduler": _absolute_reference(scheduler), "params": plain_params(params), "sys_path": list(sys_path),
            "channel_in": to_child_r, "channel_out": from_child_w, "lane": list(lane_fds) or None}
    made: list[RemoteScheduler] = []

    def connect() -> RemoteScheduler:
        if made and made[-1].stuck:
            raise SchedulerError(f"scheduler '{scheduler}': not checked: its process is still inside a call that ran out of time")
        remote = channel.connect(to_child_w, from_child_r, f"scheduler '{scheduler}'", fresh=bool(made), lane=lane,
                                 max_state_bytes=int(limits.output_bytes), **call_limits)
        made.append(remote)
        return remote

    open_ends = [to_child_w, from_child_r]

    def close(fd: int) -> None:
        if fd in open_ends:
            open_ends.remove(fd)
            os.close(fd)

    def interact() -> Any:
        try:
            return work(connect)
        finally:
            if made:
                made[-1].close()
            close(to_child_w)  # end of input: the child exits

    try:
        with session(task, limits, isolate, None, None, extra_fds=(to_child_r, from_child_w, *lane_fds), interact=interact) as (finished, _):
            ok = finished.reason == "" and finished.failure is None
            outcome = SandboxOutcome(ok, finished.reason, finished.limits, finished.isolation, finished.usage, None, finished.log_tail)
            outcome.answer = finished.answer if ok else None
    finally:  # also when the session failed before `interact` ran
        for fd in list(open_ends):
            close(fd)
        if lane is not None:
            lane.close()  # the child's copies of its descriptors are the session's to close (with the pipes' ends)
    return outcome


def _absolute_reference(ref: str) -> str:
    """A `path/to/file.py:Class` reference with an absolute path: the child runs in another directory."""
    module, sep, attr = ref.rpartition(":")
    if sep and (module.endswith(".py") or "/" in module or os.sep in module):
        return f"{Path(module).resolve()}:{attr}"
    return ref


__all__ = ["REPORTED", "Isolation", "Limits", "Namespaces", "SandboxOutcome", "Usage", "cgroup_base", "check_sandboxed", "namespaces", "run_sandboxed"]
