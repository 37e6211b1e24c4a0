"""A scenario's per-episode lower bounds as a file beside its results, so the leaderboard can show each entry's gap.

`bench bound --scenario S --seeds 0-2 --episodes K --out leaderboard/results/S/bounds.json` writes it; the site
build reads it (leaderboard/site.py) and puts beside every entry whose episodes it covers the gap
(entry mean - bound mean over the same episodes) / bound mean. The file is read as untrusted input: its size,
every field and every value are checked, and a record is used for an entry only when its scenario hash and each
episode's task count agree with the entry's bundles.

    {"kind": "bounds", "version": 1, "scenario": "paper", "scenario_hash": "...", "time_model": "slotted",
     "episodes": [{"seed": 0, "episode": 0, "tasks": 29871, "lower_bound_s": 3.52, "no_wait_floor_s": 0.04,
                   "optimum_s": null, "best_known_s": 3.95}, ...]}

`best_known_s` (optional; `bench bound --search`) is the mean delay of the best assignment known for the episode (an
offline search's, the exact model's or a built-in's): the optimum lies between the lower bound and it.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping

from bench.core.config import finite_number
from bench.core.errors import BenchError
from bench.core.io import check_creatable, write_json_atomic

FILE_NAME = "bounds.json"
KIND = "bounds"
VERSION = 1
MAX_BYTES = 4_000_000
MAX_EPISODES = 20_000
_EPISODE_FIELDS = ("seed", "episode", "tasks", "lower_bound_s", "no_wait_floor_s", "optimum_s")
_OPTIONAL_FIELDS = ("best_known_s",)


@dataclass(frozen=True)
class ScenarioBounds:
    """One scenario's lower bound (and optimum where proven) per (seed, episode)."""

    scenario: str
    scenario_hash: str
    time_model: str
    lower: Mapping[tuple[int, int], float]
    tasks: Mapping[tuple[int, int], int]
    optimum: Mapping[tuple[int, int], float]
    best_known: Mapping[tuple[int, int], float] = dataclasses.field(default_factory=dict)  # an assignment's mean delay per episode

    def mean_over(self, episodes: Iterable[tuple[int, int, int]], of: str = "lower") -> float | None:
        """Mean lower bound (or, `of="best_known"`, best known assignment) over (seed, episode, tasks) triples; None
        unless every one is covered with that task count."""
        per_episode = self.lower if of == "lower" else self.best_known
        values = []
        for seed, episode, tasks in episodes:
            key = (int(seed), int(episode))
            if key not in per_episode or self.tasks[key] != int(tasks):
                return None
            values.append(per_episode[key])
        return math.fsum(values) / len(values) if values else None


def write_bounds_file(path: Path, scenario: str, scenario_hash: str, time_model: str, bounds: Iterable[Any]) -> Path:
    """Write EpisodeBound records (bench.experiments.bounds.compute) as a bounds file, atomically."""
    episodes = [{"seed": b.seed, "episode": b.episode, "tasks": b.tasks, "lower_bound_s": b.lower_bound_s,
                 "no_wait_floor_s": b.no_wait_floor_s, "optimum_s": b.optimum_s,
                 **({"best_known_s": b.best_known_s} if getattr(b, "best_known_s", None) is not None else {})} for b in bounds]
    record = {"kind": KIND, "version": VERSION, "scenario": scenario, "scenario_hash": scenario_hash, "time_model": time_model,
              "episodes": sorted(episodes, key=lambda e: (e["seed"], e["episode"]))}
    path = check_bounds_out(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        return write_json_atomic(path, record)
    except OSError as exc:
        raise BenchError(f"--out = {str(path)!r} is not allowed; expected a file that can be written ({exc.strerror or exc})") from None


def check_bounds_out(path: Path) -> Path:
    """Refuse, before any work, an --out that is a directory or cannot be created (below a file, not writable, /proc)."""
    path = Path(path)
    if path.is_dir():
        raise BenchError(f"--out = {str(path)!r} is not allowed; expected a file path (for example .../{FILE_NAME}), not a directory")
    check_creatable(path.parent if path.is_file() else path, "--out")  # an existing bounds file is replaced (atomically)
    return path


def read_bounds_file(path: Path) -> ScenarioBounds:
    """Read and check a bounds file; BenchError naming the file, the field and the bad value otherwise."""
    path = Path(path)
    where = f"{path.name} in {path.parent.name}"

    def bad(field: str, value: Any, allowed: str) -> BenchError:
        return BenchError(f"{where}: {field} = {str(value)[:80]!r} is not allowed; expected {allowed}")

    if path.is_symlink() or not path.is_file():
        raise bad("file", "a link or not a file", "a regular file")
    if path.stat().st_size > MAX_BYTES:
        raise bad("size", path.stat().st_size, f"at most {MAX_BYTES} bytes")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise bad("content", type(exc).__name__, "UTF-8 JSON") from None
    if not isinstance(data, dict) or set(data) != {"kind", "version", "scenario", "scenario_hash", "time_model", "episodes"}:
        raise bad("fields", sorted(data) if isinstance(data, dict) else type(data).__name__, "kind, version, scenario, scenario_hash, time_model, episodes")
    if data["kind"] != KIND or data["version"] != VERSION:
        raise bad("kind/version", f"{data['kind']}/{data['version']}", f"{KIND}/{VERSION}")
    for name in ("scenario", "scenario_hash", "time_model"):
        if not isinstance(data[name], str) or not 0 < len(data[name]) <= 200:
            raise bad(name, data[name], "a non-empty string")
    if data["time_model"] not in ("slotted", "event"):
        raise bad("time_model", data["time_model"], "slotted or event")
    eps = data["episodes"]
    if not isinstance(eps, list) or not 0 < len(eps) <= MAX_EPISODES:
        raise bad("episodes", f"{type(eps).__name__} of {len(eps) if isinstance(eps, list) else '?'}", f"a list of 1 to {MAX_EPISODES} records")
    lower: dict[tuple[int, int], float] = {}
    tasks: dict[tuple[int, int], int] = {}
    optimum: dict[tuple[int, int], float] = {}
    best_known: dict[tuple[int, int], float] = {}
    for i, e in enumerate(eps):
        if not isinstance(e, dict) or not set(_EPISODE_FIELDS) <= set(e) <= {*_EPISODE_FIELDS, *_OPTIONAL_FIELDS}:
            raise bad(f"episodes[{i}]", e, f"a record with {', '.join(_EPISODE_FIELDS)} (and optionally {', '.join(_OPTIONAL_FIELDS)})")
        for name in ("seed", "episode", "tasks"):
            if type(e[name]) is not int or not 0 <= e[name] < 2**63:
                raise bad(f"episodes[{i}].{name}", e[name], "an integer >= 0")
        key = (e["seed"], e["episode"])
        if key in lower:
            raise bad(f"episodes[{i}]", f"seed {key[0]} episode {key[1]}", "each (seed, episode) once")
        if not finite_number(e["lower_bound_s"]) or not finite_number(e["no_wait_floor_s"]) or not 0 <= e["no_wait_floor_s"] <= e["lower_bound_s"] * (1 + 1e-12):
            raise bad(f"episodes[{i}].lower_bound_s", e["lower_bound_s"], "a finite number at least the no-wait floor, which is >= 0")
        if e["optimum_s"] is not None and not (finite_number(e["optimum_s"]) and e["optimum_s"] >= e["lower_bound_s"] * (1 - 1e-9)):
            raise bad(f"episodes[{i}].optimum_s", e["optimum_s"], "null or a finite number at least the lower bound")
        known = e.get("best_known_s")
        if known is not None and not (finite_number(known) and known >= e["lower_bound_s"] * (1 - 1e-9)
                                      and (e["optimum_s"] is None or known >= e["optimum_s"] * (1 - 1e-9))):
            raise bad(f"episodes[{i}].best_known_s", known, "null or a finite number at least the lower bound and the optimum")
        lower[key], tasks[key] = float(e["lower_bound_s"]), e["tasks"]
        if e["optimum_s"] is not None:
            optimum[key] = float(e["optimum_s"])
        if known is not None:
            best_known[key] = float(known)
    return ScenarioBounds(data["scenario"], data["scenario_hash"], data["time_model"], lower, tasks, optimum, best_known)


def find_bounds(roots: Iterable[Path]) -> tuple[dict[str, list[ScenarioBounds]], list[str]]:
    """The bounds file of each scenario folder of the results roots (ROOT/SCENARIO/bounds.json, beside the entries,
    never inside one: a submission cannot bring its own bound), by scenario name; and one line per file that did
    not check out."""
    found: dict[str, list[ScenarioBounds]] = {}
    problems: list[str] = []
    for root in roots:
        for path in sorted(Path(root).glob(f"*/{FILE_NAME}")):
            try:
                b = read_bounds_file(path)
            except BenchError as exc:
                problems.append(str(exc))
                continue
            if b.scenario != path.parent.name:
                problems.append(f"{path}: scenario = {b.scenario!r} is not allowed here; expected the folder's scenario, {path.parent.name!r}")
                continue
            found.setdefault(b.scenario, []).append(b)
    return found, problems


def contradiction(bounds: ScenarioBounds, episodes: Iterable[tuple[int, int, int, float]]) -> str | None:
    """Why a result shows the bound false, or None. No assignment does better than a lower bound, so an episode
    (seed, episode, tasks, mean delay) whose delay lies below the bound for the same requests refutes the file."""
    for seed, episode, tasks, delay in episodes:
        key = (int(seed), int(episode))
        bound = bounds.lower.get(key)
        if bound is not None and bounds.tasks[key] == int(tasks) and delay < bound * (1 - 1e-9) - 1e-12:
            return f"seed {key[0]} episode {key[1]}: a result's mean delay {delay:.6g} s is below the bound {bound:.6g} s"
    return None
