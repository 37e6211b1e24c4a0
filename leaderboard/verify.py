"""`bench leaderboard verify`: believe a submission because it was re-run, not because its files agree.

Validation (leaderboard/validate.py) recomputes every metric from the stored actions, so a bundle cannot claim a
delay its actions do not give. It cannot tell who chose the actions, nor how long a policy trained. Verification
re-runs the scheduler the manifest names on the bundle's scenario and seeds:

- a rule (a scheduler that does not learn) must reproduce the stored actions exactly, episode by episode: its
  decisions are a function of the task stream and its seed. Actions that the named scheduler does not produce
  are rejected, whatever their metrics;
- a learner is retrained from scratch within the claimed training budget on the chosen seeds and evaluated on the
  same episodes; learner runs are bit-identical only on the same machine and software, so the retrained mean
  delay must lie within `tolerance` (relative, default 10%) of the claimed mean over the same seeds. An edited
  budget (20 episodes claimed as 2) or another policy's actions moves it by far more (docs/leaderboard.md gives
  the measured margins). The window would still let a claim be up to 10% better than the policy earns, so the
  retrained evaluation's episodes are kept in the record (`measured`) and the site ranks a learner on them, never
  on its claim;
- the decision time is re-measured by the re-run (reported values are never shown as measured);
- a live bundle (bench live) cannot be re-run to the same numbers: its metrics are recomputed from its recorded
  timestamps (replay) and nothing more; it stays "reported" on the site.

Ranking rounds (`ranking_key`). The public seeds are a plan book: a rule can recognise a public episode and replay
a plan made offline, and reproduce itself exactly. So the episodes that rank are drawn from a key that nobody
knows while the code is fixed (a maintainers' secret, or a value published after every entry's digest, such as
a randomness beacon's output): with a key, a bundle that passed is re-run, in the same way (built-in here, anything
else in the sandbox), on `ranking_seeds(key, scenario)` and its evaluation episodes are kept in the record with the
round's id (a hash of the key, never the key). The site ranks a scenario's entries on the episodes of one round,
every entry on the same (seed, episode) set; publishing the key afterwards lets anyone recompute the seeds.

Built-in schedulers run in this process (their code is the suite's). What a built-in is (its class, whether it
learns, hence which check applies) is the registry's: a manifest that names a built-in and says otherwise fails
(leaderboard.validate.builtin_claim), or a rule claimed to learn would be held only to the 10% window. Any other
scheduler runs from the source the bundle carries (source/), in the sandbox (bench.experiments.sandbox.run), which
must isolate the network and the file system unless `allow_unisolated`; without carried source a plugin cannot be
verified. A verify record (JSON) ties the verdict to the bundle's digest.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

import bench
from bench.core.errors import BenchError
from bench.core.io import utc_stamp, write_json_atomic
from bench.core.provenance import host_info
from bench.experiments.runs.bundle_checks import member
from bench.experiments.runs.bundles import Bundle, read_bundle
from bench.experiments.runs.replay import replay
from bench.experiments.runs.result import RunResult
from bench.experiments.runs.runner import run
from bench.scenarios import scenario_from_dict
from leaderboard.validate import builtin_claim
from schedulers.registry import BUILTINS, resolve

TOLERANCE = 0.10  # learners: largest relative difference of the retrained mean delay from the claimed one
RECORD_BYTES = 1 << 20  # bytes: a larger file is not read as a verify record (read_records)
RECORD_KIND = "aigc-edge-bench/verify"


@dataclass
class Verification:
    bundle: str
    digest: str | None
    scheduler: str
    ok: bool = False
    reasons: list[str] = field(default_factory=list)
    seeds: list[int] = field(default_factory=list)
    check: str = ""  # what was compared: "rule: actions" or "learner: metrics"
    claimed_mean_delay_s: float | None = None
    rerun_mean_delay_s: float | None = None
    decision_us_per_task: float | None = None  # re-measured by the re-run
    measured_in: str = ""  # "process" (built-in) or "sandbox"
    sandbox: list[str] = field(default_factory=list)
    wall_s: float = 0.0
    episodes: int | None = None  # evaluation episodes re-run per seed (the first ones; all of the bundle's unless --episodes)
    ranked: dict[str, Any] | None = None  # the ranking round's re-run: {"round", "seeds", "episodes": [rows]} (module docstring)
    measured: dict[str, Any] | None = None  # a learner's retraining on the public seeds: {"seeds", "episodes": [rows]}; what the site ranks it on

    def record(self) -> dict[str, Any]:
        host = host_info()
        return {"kind": RECORD_KIND, "created_utc": utc_stamp(), "suite_version": bench.__version__,
                "machine": {"cpu": host["cpu"], "cores": host["cores"]}, **asdict(self)}


RANKED_COLUMNS = ("mean_delay_s", "p95_delay_s", "p99_delay_s", "mean_slowdown", "slo_attainment", "tasks", "cold_starts",
                  "mean_upload_s", "mean_wait_s", "mean_compute_s", "mean_download_s",
                  "mean_quality", "quality_floor_share", "goodput_per_s", "mean_batch_images")  # what a record keeps per re-run episode


def episode_rows(result: RunResult) -> list[dict[str, Any]]:
    """A re-run's episodes as a record keeps them (seed, episode and RANKED_COLUMNS): what the site ranks, and small
    (a paper learner's 3 seeds x 20 episodes take a few tens of KiB of the 1 MiB a record may hold)."""
    return [{"seed": int(r["seed"]), "episode": int(r["episode"]), **{c: r.get(c) for c in RANKED_COLUMNS}} for r in result.rows]


def ranking_round(key: str) -> str:
    """The public id of a ranking key: records of one round share it; the key itself is never written."""
    return hashlib.sha256(b"aigc-edge-bench/ranking-round\0" + key.encode()).hexdigest()[:16]


def ranking_seeds(key: str, scenario: str, seeds: list[int]) -> list[int]:
    """The round's seed in place of each public seed: below 2^62, unknown without the key, and too many to try (a
    scheduler that sees an episode cannot search for the seed that made it). Public seed s maps to the same fresh
    seed for every entry, so entries run on the same public seeds are ranked on the same fresh episodes."""
    out = []
    for s in seeds:
        digest = hashlib.sha256(f"aigc-edge-bench/ranking-seed\0{key}\0{scenario}\0{int(s)}".encode()).digest()
        out.append(int.from_bytes(digest[:8], "little") >> 2)
    if len(set(out)) != len(out):  # two public seeds on one fresh seed: a 2^-62 event, refused rather than pooled
        raise BenchError("ranking seeds: two public seeds map to one fresh seed; use another key")
    return out


def verify_bundle(path: Path, *, seeds: int | None = None, tolerance: float = TOLERANCE, allow_unisolated: bool = False,
                  wall_s: float = 3600.0, progress: Callable[[str], None] | None = None, ranking_key: str | None = None,
                  episodes: int | None = None) -> Verification:
    """Verify one bundle (module docstring); `seeds`: re-run the first N of its seeds (default: all of them);
    `episodes`: evaluate only the first K evaluation episodes of each (a quick check: a learner still trains in full);
    `ranking_key`: then re-run it on the round's seeds (as many as it has) for the ranking."""
    start = time.perf_counter()
    try:
        bundle = read_bundle(path)
    except BenchError as exc:
        return Verification(str(path), None, "?", reasons=[f"schema: {exc}"])
    m = bundle.manifest
    v = Verification(str(path), m.get("digest"), str(m["scheduler"].get("name", "?")) if isinstance(m.get("scheduler"), dict) else "?")
    problem = builtin_claim(m.get("scheduler"))
    if problem:
        v.reasons.append(f"scheduler: {problem}")
        return v
    try:
        report = replay(bundle)
    except BenchError as exc:
        v.reasons.append(f"replay: {exc}")
        return v
    if not report.ok:
        v.reasons += [f"replay: {line}" for line in report.mismatches[:3]]
        return v
    chosen = [int(s) for s in m["seeds"]][: seeds or None]
    v.seeds = chosen
    v.episodes = min(int(m["protocol"]["eval_episodes"]), episodes or int(m["protocol"]["eval_episodes"]))
    if m.get("mode") == "live":  # measured on real servers: nothing to re-run; its records were recomputed above
        v.check = "live: records recomputed (a live run cannot be re-run)"
        v.ok = True
        v.wall_s = time.perf_counter() - start
        return v
    ref = m["scheduler"].get("ref", m["scheduler"]["name"])
    learns = resolve(ref).learns if ref in BUILTINS else bool(m["scheduler"]["learns"])  # a built-in's is the registry's
    v.check = "learner: metrics" if learns else "rule: actions"
    try:
        result = _rerun(bundle, chosen, learns, v, allow_unisolated, wall_s, progress)
    except BenchError as exc:
        v.reasons.append(f"re-run: {exc}")
        return v
    if result is None:
        return v
    v.decision_us_per_task = result.summary()["timing"]["decision_us_per_task"]
    if learns:
        _compare_learner(bundle, result, chosen, tolerance, v)
        v.measured = {"seeds": chosen, "episodes": episode_rows(result)}
    else:
        _compare_actions(bundle, result, chosen, v)
    v.ok = not v.reasons
    if v.ok and ranking_key is not None:
        _ranking_rerun(bundle, ranking_key, learns, v, allow_unisolated, wall_s, progress)
        v.ok = not v.reasons
    v.wall_s = time.perf_counter() - start
    return v


def _ranking_rerun(bundle: Bundle, key: str, learns: bool, v: Verification, allow_unisolated: bool, wall_s: float,
                   progress: Callable[[str], None] | None) -> None:
    """The round's re-run: the same protocol on the key's seeds; its episodes go into the record."""
    m = bundle.manifest
    scratch = Verification(v.bundle, v.digest, v.scheduler)
    try:
        fresh = ranking_seeds(key, str(m["scenario"]["name"]), v.seeds)
        result = _rerun(bundle, fresh, learns, scratch, allow_unisolated, wall_s, progress)
    except BenchError as exc:
        scratch.reasons.append(str(exc))
        result = None
    if result is None:
        v.reasons += [f"ranking re-run: {line}" for line in scratch.reasons or ["it gave no result"]]
        return
    v.ranked = {"round": ranking_round(key), "public_seeds": v.seeds, "seeds": fresh, "episodes": episode_rows(result)}


def _rerun(bundle: Bundle, seeds: list[int], learns: bool, v: Verification, allow_unisolated: bool, wall_s: float,
           progress: Callable[[str], None] | None) -> RunResult | None:
    """Re-run the named scheduler: a built-in (checked against the registry already) here, anything else sandboxed."""
    m = bundle.manifest
    scenario = scenario_from_dict(m["scenario"]["config"], source=f"{bundle.path}/manifest.json scenario")
    sched = m["scheduler"]
    ref = sched.get("ref", sched["name"])
    episodes, train = v.episodes or int(m["protocol"]["eval_episodes"]), int(m["protocol"]["train_episodes"])
    if ref in BUILTINS:
        v.measured_in = "process"
        return run(scenario, ref, params=sched["params"], seeds=seeds, episodes=episodes,
                   train_episodes=train if learns else None, progress=progress)
    return _rerun_sandboxed(bundle, scenario, seeds, episodes, train, v, allow_unisolated, wall_s)


def _rerun_sandboxed(bundle: Bundle, scenario, seeds, episodes, train, v: Verification, allow_unisolated: bool, wall_s: float) -> RunResult | None:
    from bench.experiments.sandbox.run import Limits, SandboxError, Sandboxed

    sched = bundle.manifest["scheduler"]
    source = sched.get("source") or {}
    names = [n for n in bundle.manifest["files"] if n.startswith("source/")]
    if not names or source.get("loader") not in ("file", "module") or not source.get("entry"):
        v.reasons.append("source: the bundle carries no code of its scheduler (source/); a plugin is verified by re-running its code"
                         + (f" ({source['note']})" if source.get("note") else ""))
        return None
    root = Path(tempfile.mkdtemp(prefix="aigc-verify-"))
    try:
        for name in names:  # names and files were confined and hashed when the bundle was read
            target = root / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(member(bundle.path, name, where=str(bundle.path)), target)
        src = root / "source"
        if source["loader"] == "file":
            file, _, cls = source["entry"].rpartition(":")
            ref, sys_path = f"{src / file}:{cls}", ()
        else:
            ref, sys_path = source["entry"], (str(src),)
        executor = Sandboxed(Limits(wall_s=wall_s), isolate=True, sys_path=sys_path)
        try:
            run(scenario, ref, params=sched["params"], seeds=seeds, episodes=episodes, train_episodes=train if sched["learns"] else 0,
                executor=executor)
        except SandboxError:
            pass  # the outcome says why, after the isolation it had
        outcome = executor.outcome
    finally:
        shutil.rmtree(root, ignore_errors=True)
    v.measured_in = "sandbox"
    v.sandbox = outcome.report().splitlines()
    # isolated: no network, and a file system view of its inputs only (not this user's files, other submissions)
    isolated = outcome.isolation.network.startswith("isolated") and outcome.isolation.filesystem.startswith("read-only, and it sees only its inputs")
    if not isolated and not allow_unisolated:
        v.reasons.append(f"sandbox: not isolated here ({outcome.isolation.network}; {outcome.isolation.filesystem}); "
                         "a submission's code is verified only in isolation (--allow-unisolated to override, on a machine without secrets)")
        return None
    if not outcome.ok:
        v.reasons.append(f"sandbox: {outcome.reason}")
        return None
    result = outcome.result
    if result.scheduler != sched["name"] or result.scheduler_params != sched["params"] or result.learns != sched["learns"]:
        v.reasons.append(f"scheduler: the carried code is '{result.scheduler}' (learns {result.learns}, parameters {result.scheduler_params}); "
                         f"the manifest says '{sched['name']}' (learns {sched['learns']}, parameters {sched['params']})")
        return None
    return result


def _compare_actions(bundle: Bundle, result: RunResult, seeds: list[int], v: Verification) -> None:
    for s in result.per_seed:
        for row, actions in zip(s.rows, s.actions):
            stored = bundle.episode_actions(s.seed, row["episode"])
            if not np.array_equal(stored, actions):
                i = int(np.argmax(stored != actions)) if stored.shape == actions.shape else 0
                v.reasons.append(f"actions: seed {s.seed} episode {row['episode']}: the named scheduler chose server {int(actions[i])} for task {i}; "
                                 f"the bundle has {int(stored[i]) if i < stored.shape[0] else 'nothing'} (actions that '{v.scheduler}' does not produce)")
                return
    v.claimed_mean_delay_s = v.rerun_mean_delay_s = float(result.summary()["mean_delay_s"])


def _compare_learner(bundle: Bundle, result: RunResult, seeds: list[int], tolerance: float, v: Verification) -> None:
    eps = bundle.episodes
    eps = eps.filter(eps["seed"].is_in(seeds) & (eps["episode"] < (v.episodes or eps.height)))  # what was re-run
    claimed = float(eps["mean_delay_s"].mean())
    rerun = float(np.mean([r["mean_delay_s"] for r in result.rows]))
    v.claimed_mean_delay_s, v.rerun_mean_delay_s = claimed, rerun
    if not abs(rerun - claimed) <= tolerance * abs(claimed):
        v.reasons.append(f"training: retrained within the claimed budget ({bundle.manifest['protocol']['train_episodes']} episodes), seeds {seeds} "
                         f"give a mean delay of {rerun:.4f} s; the bundle claims {claimed:.4f} s ({100 * (rerun / claimed - 1):+.1f}%, "
                         f"tolerance {100 * tolerance:.0f}%)")


def write_record(v: Verification, directory: Path) -> Path:
    """The verify record, named by the bundle's digest, written atomically."""
    directory.mkdir(parents=True, exist_ok=True)
    name = f"{(v.digest or 'no-digest')[:16]}-{Path(v.bundle).name}.json"
    return write_json_atomic(directory / name, v.record())


def read_records(directory: Path) -> dict[str, dict[str, Any]]:
    """Verify records by bundle digest (the site shows an entry as verified when all its bundles have one that passed)."""
    records: dict[str, dict[str, Any]] = {}
    if not directory.is_dir():
        return records
    for path in sorted(directory.glob("*.json")):
        try:
            if path.stat().st_size > RECORD_BYTES:
                continue
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(data, dict) and data.get("kind") == RECORD_KIND and isinstance(data.get("digest"), str):
            records[data["digest"]] = data
    return records


def merge_records(sets: list[dict[str, dict[str, Any]]]) -> dict[str, dict[str, Any]]:
    """Records from several directories by digest; where two disagree about one bundle, the failed one counts."""
    merged: dict[str, dict[str, Any]] = {}
    for records in sets:
        for digest, record in records.items():
            if digest not in merged or merged[digest].get("ok") is True:
                merged[digest] = record
    return merged
