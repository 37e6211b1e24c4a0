"""Make the committed results: bundles of the built-in schedulers on a leaderboard scenario.

    bench leaderboard populate --scenario paper --trained runs/paper --out leaderboard/results

Heuristics are run directly (seeds 0..N-1, the scenario's leaderboard minimum of evaluation episodes).
Learning schedulers are not retrained: each seed's policy is evaluated from the checkpoint of a bundle
that trained it (`bench reproduce-paper` writes them, at OUT/<scenario>/base/<scheduler>/seed-<s>/), and
the new bundle reports that training (budget, learning curve, updates) and the checkpoint's SHA-256,
without storing the checkpoint itself, to keep the committed results small.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any, Callable

from bench.core.config import tomllib
from bench.core.errors import BenchError
from bench.core.io import read_marker, write_marker
from bench.experiments.runs.bundles import load_checkpoint
from bench.experiments.runs.runner import Save, run
from bench.scenarios import load_scenario
from leaderboard.rules import RULES
from schedulers.registry import builtin_names, resolve

SUBMISSION = '''name = "{name}"
description = "The built-in `{name}` scheduler of aigc-edge-bench ({summary}), with {parameters}."
url = "https://arxiv.org/abs/2412.18212"
{tuning}'''
TUNED = Path(__file__).with_name("tuning") / "tuned.toml"


def tuned_params(name: str, scenario: str, path: Path = TUNED) -> dict[str, Any]:
    """A built-in rule's parameters tuned for a scenario on training seeds (leaderboard/tuning/tuned.toml); {}: its defaults."""
    if not path.is_file():
        return {}
    table = tomllib.loads(path.read_text(encoding="utf-8")).get(name, {})
    params = table.get(scenario, {})
    if not isinstance(params, dict):
        raise BenchError(f"{path.name}: [{name}] {scenario} = {params!r} is not allowed; expected a table of parameters")
    return dict(params)


def populate(scenario: str, out: Path, trained: Path | None, seeds: int | None = None, progress: Callable[[str], None] | None = None, schedulers: list[str] | None = None) -> list[Path]:
    if scenario not in RULES:
        raise BenchError(f"--scenario = {scenario!r} is not allowed; expected a leaderboard scenario ({', '.join(RULES)})")
    rule = RULES[scenario]
    sc = load_scenario(scenario)
    n_seeds = seeds or rule.min_seeds
    out.mkdir(parents=True, exist_ok=True)
    if read_marker(out) is None:
        write_marker(out, "results")
    written = []
    for name in schedulers or builtin_names(scenario=sc):
        cls = resolve(name)
        entry = out / scenario / name
        params = {} if cls.learns else tuned_params(name, scenario)
        for seed in range(n_seeds):
            checkpoint = None
            if cls.learns:
                source = (trained / scenario / "base" / name / f"seed-{seed}") if trained else None
                if source is None or not (source / "checkpoint.pt").is_file():
                    raise BenchError(f"{name} seed {seed}: no trained policy at {source} (train it first, e.g. bench reproduce-paper --scenario {scenario} --out DIR, then --trained DIR)")
                # recorded relative to --trained (TRAINED/...): committed results carry no path of the machine that made them
                checkpoint = dataclasses.replace(load_checkpoint(source), source=f"TRAINED/{scenario}/base/{name}/seed-{seed}")
            command = ["bench", "run", "--scheduler", name, "--scenario", scenario, "--seed", str(seed), "--episodes", str(rule.min_eval_episodes)]
            command += [f"--param={k}={json.dumps(v)}" for k, v in params.items()]
            if checkpoint is not None:
                command += ["--checkpoint", str(checkpoint.source), "--no-checkpoint"]
            result = run(sc, name, params=params, seeds=[seed], episodes=rule.min_eval_episodes, checkpoint=checkpoint,
                         save=Save(entry / f"seed-{seed}", overwrite=True, checkpoint=False, command=command))
            written.append(result.bundle)
            if progress:
                progress(f"{scenario} {name} seed {seed}: {result.summary()['mean_delay_s']:.3f} s")
        if cls.learns:
            tuning = 'hyperparameter_tuning = "none: the paper\'s defaults"\n'
        elif params:
            tuning = f'hyperparameter_tuning = "on training seeds 10 and 11, never the ranked ones: leaderboard/tuning/{name}-{scenario}.toml"\n'
        else:
            tuning = ""
        shown = ", ".join(f"{k} = {v}" for k, v in params.items())
        parameters = f"the parameters tuned for {scenario} on training seeds ({shown})" if params else "its default parameters"
        (entry / "submission.toml").write_text(SUBMISSION.format(name=name, summary=cls.summary.replace('"', "'"), parameters=parameters, tuning=tuning),
                                               encoding="utf-8")
    return written
