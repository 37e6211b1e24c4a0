"""`bench new-scheduler NAME`: a package for a scheduler of your own, ready to check, run, test and submit.

    NAME/
      pyproject.toml           the package, and its entry point in aigc_edge_bench.schedulers (the name NAME)
      README.md                what to do next
      <package>/__init__.py
      <package>/scheduler.py   a real rule to start from: a Config, the scheduler's own random stream, and the
                               bookkeeping of its own placements within a batch
      tests/test_<package>.py  the conformance checks (bench check-scheduler) and a run on `tiny`, as a test

The target directory must be new or empty: nothing is overwritten.
"""

from __future__ import annotations

import re
from pathlib import Path

import typer

from bench.cli.common import fail, guarded, out

NAME = re.compile(r"^[a-z][a-z0-9]*(-[a-z0-9]+)*$")

PYPROJECT = '''[build-system]
requires = ["setuptools>=77"]
build-backend = "setuptools.build_meta"

[project]
name = "{name}"
version = "0.1.0"
description = "A scheduler for aigc-edge-bench: {summary}"
requires-python = ">=3.10"
dependencies = ["aigc-edge-bench"]

[project.entry-points."aigc_edge_bench.schedulers"]
{name} = "{package}.scheduler:{cls}"

[tool.setuptools]
packages = ["{package}"]
'''

SCHEDULER = '''"""{cls}: the server with the smallest expected delay, a random one among those within `tolerance_s` of it.

A starting point that shows the three things every scheduler of aigc-edge-bench gets right:
- hyper-parameters in a `Config` (bench run --param tolerance_s=0.5; recorded in every result bundle);
- randomness only from `self.rng`, the scheduler's own stream (the same seed gives the same decisions);
- its own placements within a batch: `assigned_s` covers only tasks placed before the batch, so a rule that
  looks at queues must add what it has just placed (here, `placed`).
"""

from dataclasses import dataclass

import numpy as np

from schedulers import Batch, Scheduler, option


@dataclass(frozen=True)
class Config:
    tolerance_s: float = option(0.0, help="servers within this many seconds of the best expected delay count as ties", ge=0)


class {cls}(Scheduler):
    name = "{name}"
    summary = "smallest expected delay, ties within tolerance_s broken at random"
    Config = Config

    def decide(self, batch: Batch) -> np.ndarray:
        out = np.empty(len(batch), dtype=np.int64)
        placed = batch.assigned_s.copy()  # work placed on each server in this slot (or instant) so far
        for i in range(len(batch)):  # tasks of one base station, in arrival order
            expected = batch.service_s[i] + batch.backlog_s + placed  # the delay if task i went to each server
            expected = np.where(batch.mask[i], expected, np.inf)
            near = np.flatnonzero(expected <= expected.min() + self.config.tolerance_s)
            choice = int(near[self.rng.integers(near.size)]) if near.size > 1 else int(near[0])
            out[i] = choice
            placed[choice] += batch.compute_s[i, choice]  # the next task waits behind this one
        return out
'''

TEST = '''"""The conformance checks of aigc-edge-bench and a run on its `tiny` scenario, as tests of {package}."""

import math

from bench.experiments.runs.conformance import check
from bench.experiments.runs.runner import run
from bench.scenarios import load_scenario

REF = "{package}.scheduler:{cls}"


def test_passes_the_conformance_checks():
    report = check(REF, ["tolerance_s=0.2"])
    failed = [c for c in report if not c.passed and not c.skipped]
    assert not failed, [(c.name, c.detail) for c in failed]


def test_runs_on_tiny_and_is_reproducible():
    a = run(load_scenario("tiny"), REF, seeds=[0, 1], episodes=3).summary()
    b = run(load_scenario("tiny"), REF, seeds=[0, 1], episodes=3).summary()
    assert math.isfinite(a["mean_delay_s"]) and a["mean_delay_s"] == b["mean_delay_s"]
    random = run(load_scenario("tiny"), "random", seeds=[0, 1], episodes=3).summary()
    assert a["mean_delay_s"] < random["mean_delay_s"]  # it looks at the queues; random does not
'''

README = '''# {name}

A scheduler for [aigc-edge-bench](https://arxiv.org/abs/2412.18212): {summary}.

```sh
pip install -e .                                  # registers the scheduler under the name {name}
bench check-scheduler {name}                      # conformance checks on the tiny scenario
bench run -s {name} --scenario paper --num-seeds 3 --episodes 20 --out results/paper
bench compare results/paper opt-ts                # paired comparison with a built-in's committed results
bench leaderboard validate results/paper          # the leaderboard's rules, before you submit
python -m pytest tests                            # the same checks, as tests
```

Edit `{package}/scheduler.py`; docs/schedulers.md of aigc-edge-bench explains every field of a `Batch`.
'''


def new_scheduler(
    name: str = typer.Argument(..., help="the scheduler's name: lowercase letters, digits and hyphens, e.g. my-rule"),
    directory: Path = typer.Option(None, "--dir", help="where to create the package folder NAME (default: the current directory)"),
) -> None:
    """Create a package for a new scheduler: its class with a Config, a test that runs the conformance checks, and
    the entry point that registers it (pip install -e NAME)."""
    from schedulers.registry import BUILTINS

    if not NAME.match(name):
        fail(f"new-scheduler NAME = {name!r} is not allowed; expected lowercase letters, digits and single hyphens, starting with a letter")
    if name in BUILTINS:
        fail(f"new-scheduler NAME = {name!r} is not allowed; it is a built-in's name (reserved)")
    target = (directory or Path(".")) / name
    from bench.core.io import check_creatable

    guarded(lambda: check_creatable(target, "new-scheduler target"))
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        fail(f"new-scheduler target {str(target)!r} is not allowed; expected a new or empty directory (nothing is overwritten)")
    package = name.replace("-", "_")
    cls = "".join(part.capitalize() for part in name.split("-"))
    summary = "smallest expected delay, ties within a tolerance broken at random"
    files = {
        "pyproject.toml": PYPROJECT,
        "README.md": README,
        f"{package}/__init__.py": '"""The {name} scheduler for aigc-edge-bench."""\n\nfrom {package}.scheduler import {cls}\n\n__all__ = ["{cls}"]\n',
        f"{package}/scheduler.py": SCHEDULER,
        f"tests/test_{package}.py": TEST,
    }
    for rel, text in files.items():
        path = target / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text.format(name=name, package=package, cls=cls, summary=summary), encoding="utf-8")
    out.print(f"created {target}/ with the scheduler {package}.scheduler:{cls} (name '{name}')", highlight=False)
    out.print(f"next: pip install -e {target} && bench check-scheduler {name}", highlight=False)
