"""`bench check-scheduler NAME`: conformance checks on the `tiny` scenario, like Gymnasium's env checker.

Each check runs real episodes through the environment and reports pass, fail (with the reason) or skip:
- builds:             the registry finds the class and builds it with the given parameters;
- valid decisions:    every output has exactly one integer server per task, in range, allowed by the mask;
- event time model:   the same on `tiny` in continuous time (Poisson arrivals, requests one instant at a time);
- respects masks:     the same on a variant of `tiny` where a random subset of servers is forbidden per task;
- reproducible:       the same seed gives the same decisions, even after Python's and numpy's global random
                      state change (all randomness must come from `self.rng`);
- batch unit:         a scheduler that takes whole slots decides as it does per base station (deterministic
                      schedulers only);
- learning hooks:     learning schedulers train for two episodes, and a `state_dict` round trip into a fresh
                      instance reproduces the decisions;
- decision time:      microseconds per task (information).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any, Callable, Iterable

import numpy as np

from bench.engine.costs import CostModel, CycleCosts
from bench.engine.environment import Environment
from bench.engine.slotted import SlottedEnv
from bench.core.errors import BenchError
from bench.scenarios import load_scenario
from bench.engine.system import System
from schedulers.interface import Scheduler
from schedulers.registry import make, resolve


@dataclass
class Check:
    name: str
    passed: bool
    detail: str = ""
    skipped: bool = False


class _MaskedCosts(CycleCosts):
    """The paper's costs with a random, reproducible subset of servers forbidden for each task."""

    has_mask = True

    def __init__(self, base: CostModel, seed: int = 12345):
        super().__init__(base.capacity_gcps, base.rate_mbps)
        self._seed = seed

    def mask(self, wl, lo, hi):
        rng = np.random.default_rng([self._seed, lo, hi])
        m = rng.random((hi - lo, self.n_servers)) < 0.5
        m[np.arange(hi - lo), rng.integers(0, self.n_servers, hi - lo)] = True  # at least one allowed
        return m


def _episodes(sched: Scheduler, system: System, env: Environment, n: int, *, unit: str | None = None, training: bool = False):
    """Decisions of n episodes (optionally forcing the batch unit); returns (actions per episode, seconds, tasks)."""
    from bench.experiments.runs.runner import run_episode

    who = f"scheduler '{sched.name or type(sched).__name__}'"
    out, seconds, tasks = [], 0.0, 0
    own = vars(sched).get("batch_unit", _ABSENT)  # a scheduler behind the channel holds it on the instance
    try:
        if unit is not None:
            sched.batch_unit = unit  # instance attribute shadows the class's
        for e in range(n):
            trace, ns = run_episode(env, sched, system.workload(e, training=training), episode=e, training=training, who=who)
            out.append(trace.actions.copy())
            seconds += ns / 1e9
            tasks += trace.actions.shape[0]
    finally:
        if unit is not None:
            if own is _ABSENT:
                del sched.batch_unit
            else:
                sched.batch_unit = own
    return out, seconds, tasks


_ABSENT = object()
New = Callable[[], tuple[Scheduler, dict[str, Any]]]  # a fresh scheduler and what it is (learns, batch_unit, class)


def _local(name: str, params: list[str]) -> New:
    def new() -> tuple[Scheduler, dict[str, Any]]:
        cls = resolve(name)
        return make(name, params), {"learns": bool(cls.learns), "batch_unit": cls.batch_unit, "scheduler_class": f"{cls.__module__}:{cls.__qualname__}",
                                    "requires_serving": bool(getattr(cls, "requires_serving", False))}

    return new


def _rng_state(sched: Scheduler) -> Any:
    get = getattr(sched, "rng_state", None)  # behind the channel: the child's stream
    return get() if get is not None else sched.rng.bit_generator.state


def _set_rng_state(sched: Scheduler, state: Any) -> None:
    put = getattr(sched, "set_rng_state", None)
    if put is not None:
        put(state)
    else:
        sched.rng.bit_generator.state = state


def _fresh(new: New, system: System, seed_offset: int = 0) -> Scheduler:
    sched, _ = new()
    rng = system.streams.scheduler() if seed_offset == 0 else np.random.default_rng(seed_offset)
    sched.reset(system.info(), rng)
    return sched


def _attempt(name: str, fn) -> Check:
    try:
        detail = fn()
        return Check(name, True, detail or "")
    except _Skip as s:
        return Check(name, False, str(s), skipped=True)
    except BenchError as exc:
        return Check(name, False, str(exc))
    except Exception as exc:  # a check must report, never crash
        return Check(name, False, f"{type(exc).__name__}: {exc}")


class _Skip(Exception):
    pass


def check(name: str, params: Iterable[str] = (), episodes: int = 3, *, new: New | None = None) -> list[Check]:
    """The checks of `name`, built with `params`; `new` builds each fresh scheduler instead (the sandbox: one
    behind the channel, whose code is never imported here), with what it is."""
    params = list(params)
    new = new or _local(name, params)
    scenario = load_scenario("tiny")
    system = System.build(scenario, 0)
    env = system.env()
    results: list[Check] = []
    facts: dict[str, Any] = {}

    def builds():
        _, what = new()
        facts.update(what)
        return f"{what['scheduler_class']}, batch unit '{what['batch_unit']}'" + (", learns" if what["learns"] else "")

    results.append(_attempt("builds", builds))
    if not results[-1].passed:
        return results
    learns, unit = facts["learns"], facts["batch_unit"]
    serving = bool(facts.get("requires_serving"))
    if serving:  # it decides variants or batches: checked on a serving scenario, shortened to 2 minutes of arrivals
        scenario = load_scenario("cascade-gpu", ["episode.slots=8"])
        system = System.build(scenario, 0)
        env = system.env()
    timing: dict[str, float] = {}

    def valid():
        sched = _fresh(new, system)
        if learns:
            _episodes(sched, system, env, 2, training=True)
        _, _, warm = _episodes(sched, system, env, 1)  # compiles kernels; not timed
        actions, seconds, tasks = _episodes(sched, system, env, episodes)
        timing["us"] = seconds / tasks * 1e6
        return f"{tasks + warm} decisions in {episodes + 1} episodes"

    results.append(_attempt("valid decisions", valid))

    def event_time():
        from bench.scenarios import scenario_from_dict

        if serving:
            raise _Skip("its scenario is in the event time model already")
        data = scenario.to_dict()
        data["episode"]["time_model"] = "event"
        data["tasks"].pop("arrivals_per_bs")
        data["tasks"]["arrivals"] = {"process": "poisson", "rate_per_s": 22.0}  # tiny's mean load
        event = System.build(scenario_from_dict(data, source="tiny in the event time model"), 0)
        sched = _fresh(new, event)
        if learns:
            _episodes(sched, event, event.env(), 1, training=True)
        _, _, tasks = _episodes(sched, event, event.env(), 2)
        return f"{tasks} decisions in 2 episodes of Poisson arrivals"

    results.append(_attempt("event time model", event_time))

    def masks():
        if serving:
            raise _Skip("a serving scenario checks every decision's variant and server against what the server runs")
        masked = SlottedEnv(_MaskedCosts(system.costs), scenario.episode.slot_s)
        sched, _ = new()
        info = system.info()
        sched.reset(type(info)(**{**info.__dict__, "has_mask": True, "cost_formula": "table"}), system.streams.scheduler())
        _, _, tasks = _episodes(sched, system, masked, episodes)
        return f"{tasks} decisions, about half the servers forbidden per task"

    results.append(_attempt("respects masks", masks))

    def reproducible():
        first, _, _ = _episodes(_fresh(new, system), system, env, episodes)
        random.seed(987654)
        np.random.seed(987654)
        np.random.random(17)
        second, _, _ = _episodes(_fresh(new, system), system, env, episodes)
        for e, (a, b) in enumerate(zip(first, second)):
            if not np.array_equal(a, b):
                raise BenchError(f"episode {e}: the same seed gave different decisions; draw all randomness from self.rng")
        return "identical decisions from the same seed"

    results.append(_attempt("reproducible", reproducible))

    def batch_unit():
        if unit != "slot":
            raise _Skip("takes one base station at a time (nothing to compare)")
        a, _, _ = _episodes(_fresh(new, system), system, env, episodes, unit="bs")
        b, _, _ = _episodes(_fresh(new, system, seed_offset=99), system, env, episodes, unit="bs")
        if any(not np.array_equal(x, y) for x, y in zip(a, b)):
            raise _Skip("randomised (its decisions depend on its random stream); whole-slot and per-BS decisions not compared")
        c, _, _ = _episodes(_fresh(new, system), system, env, episodes, unit="slot")
        for e, (x, y) in enumerate(zip(a, c)):
            if not np.array_equal(x, y):
                i = int(np.argmax(x != y))
                raise BenchError(f"episode {e}, task {i}: whole-slot batches give server {y[i]}, per-base-station batches {x[i]}")
        return "whole-slot decisions equal per-base-station decisions"

    results.append(_attempt("batch unit", batch_unit))

    def learning():
        if not learns:
            raise _Skip("does not learn")
        sched = _fresh(new, system)
        _episodes(sched, system, env, 2, training=True)
        state = sched.state_dict()
        rng_state = _rng_state(sched)
        a, _, _ = _episodes(sched, system, env, 1)
        other, _ = new()
        other.reset(system.info(), np.random.default_rng())
        other.load_state_dict(state)
        _set_rng_state(other, rng_state)
        b, _, _ = _episodes(other, system, env, 1)
        if not np.array_equal(a[0], b[0]):
            raise BenchError("a fresh instance loaded with state_dict() decides differently")
        return "trained 2 episodes; state_dict round trip reproduces decisions"

    results.append(_attempt("learning hooks", learning))
    if "us" in timing:
        results.append(Check("decision time", True, f"{timing['us']:.2f} µs per task on {'cascade-gpu' if serving else 'tiny'}"))
    return results


__all__ = ["check", "Check"]
