"""Result bundles: one directory per run, written atomically (docs/results.md).

    manifest.json     schema version, what ran (scheduler, parameters, resolved scenario and its hash,
                      seeds, protocol, time model), provenance (suite version, git revision, packages, host),
                      timing, the SHA-256 and size of every other file, and (schema 2) `digest`, the SHA-256 of
                      the manifest's own canonical JSON
    summary.json      the run summary (what `bench run --json` prints)
    episodes.parquet  one row per (seed, evaluation episode): the metrics of bench.engine.metrics
    actions.parquet   the server chosen for every evaluation task (seed, episode, action; decision order);
                      replaying them on the regenerated task streams reproduces episodes.parquet exactly
    training.parquet  learning schedulers: one row per (seed, training episode), the learning curve
    checkpoint.pt     learning schedulers: each seed's trained policy (torch.save of plain tensors), as
                      evaluation started; `bench run --checkpoint DIR` evaluates it without training
    tasks.parquet     optional (--task-records): every task's attributes, decision, delay parts, arrival,
                      start and end times and the worker that served it
    source/           plugins (not built-in schedulers): the scheduler's code, so that verification can re-run it

Reading a bundle treats it as untrusted input (bench.experiments.runs.bundle_checks): names confined to the bundle,
sizes checked before reading, every file and the manifest hashed, the tables checked against each other.
Bundles of schema 1 (before the event time model) still read, replay and compare.

A bundle is written into a hidden sibling directory and renamed into place, so a crash never leaves a
half-written bundle, and an existing bundle is replaced only after the new one is complete.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import tempfile
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from bench.core.errors import BundleError, one_line
from bench.experiments.runs.bundle_checks import (
    INTEGER_COLUMNS, SOURCE_FILE_LIMIT, SOURCE_TOTAL_LIMIT, check_tables, checked_size, digest, member, read_json_file,
    read_parquet_file,
)
from bench.core.io import check_creatable, staging_dir, write_parquet
from bench.engine.metrics import EPISODE_METRICS, TIMING_METRICS
from bench.engine.trace import EventTrace
from bench.core.provenance import provenance as current_provenance
from bench.experiments.runs.checkpoint import Checkpoint
from bench.experiments.runs.result import RunResult

SCHEMA_VERSION = 3  # 3: episodes gain the serving metrics (quality, goodput, batch size); actions may be encoded decisions
SUPPORTED_VERSIONS = (1, 2, 3)
BUNDLE_KIND = "aigc-edge-bench/run"
# what a bundle states but replay cannot recompute from its actions: shown as reported until `verify` re-measures it
REPORTED = ("timing", "training", "provenance")


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def check_out_dir(out: Path, overwrite: bool) -> None:
    """Refuse, before anything runs, an `--out` that could not hold this run's bundle: a file, a path that
    cannot be created, or an existing non-empty directory (unless `overwrite` and it is a result bundle:
    the suite never deletes a directory it did not write)."""
    out = Path(out)
    check_creatable(out, "--out")
    if out.exists():
        if not out.is_dir():
            raise BundleError(f"--out = {str(out)!r} is not allowed; expected a directory path (a file exists there)")
        if any(out.iterdir()):
            if not overwrite:
                raise BundleError(f"--out = {str(out)!r} is not allowed; expected a new or empty directory (pass --overwrite to replace a bundle)")
            if not is_bundle_dir(out):
                raise BundleError(f"--out = {str(out)!r} is not allowed with --overwrite: it is not a result bundle (no manifest.json of {BUNDLE_KIND}); the suite replaces only bundles it wrote")


def is_bundle_dir(path: Path) -> bool:
    """Whether `path` holds a result bundle's manifest (of any schema version)."""
    try:
        manifest = path / "manifest.json"
        if not manifest.is_file() or manifest.stat().st_size > 16 * 2**20:
            return False
        return json.loads(manifest.read_text(encoding="utf-8")).get("kind") == BUNDLE_KIND
    except (OSError, ValueError, AttributeError):
        return False


def _action_dtype(largest: int) -> pl.DataType:
    return pl.UInt8 if largest < 256 else pl.UInt16 if largest < 2**16 else pl.UInt32


def _episodes_frame(result: RunResult) -> pl.DataFrame:
    columns = ["seed", "episode", *EPISODE_METRICS, *TIMING_METRICS]
    types = {c: (pl.UInt64 if c == "seed" else pl.UInt32) if c in INTEGER_COLUMNS else pl.Float64 for c in columns}
    return pl.DataFrame([{k: r[k] for k in columns} for r in result.rows], schema=types)


def _actions_frame(result: RunResult) -> pl.DataFrame:
    seeds, episodes, actions = [], [], []
    for s in result.per_seed:
        for row, a in zip(s.rows, s.actions):
            seeds.append(np.full(a.shape[0], s.seed, dtype=np.uint64))
            episodes.append(np.full(a.shape[0], row["episode"], dtype=np.uint32))
            actions.append(a)
    return pl.DataFrame(
        {
            "seed": np.concatenate(seeds),
            "episode": np.concatenate(episodes),
            "action": pl.Series(np.concatenate(actions)).cast(_action_dtype(max(result.scenario.n_servers - 1, *(int(a.max()) for a in actions if a.size)))),
        }
    )


def scenario_record(sc: Any) -> dict[str, Any]:
    """The manifest's `scenario` entry: name, hash, the resolved configuration, and the hashes of the profiles and
    the trace it reads (simulated and live bundles alike)."""
    return {
        "name": sc.name, "hash": sc.hash, "config": sc.to_dict(),
        **({"profiles_sha256": sc.profile_hashes()} if sc.servers.hardware else {}),
        **({"trace_sha256": sc.trace_hash()} if sc.tasks.trace is not None else {}),
    }


def workload_columns(wl: Any) -> dict[str, np.ndarray]:
    """A workload's per-request columns of tasks.parquet, in its dtypes (simulated and live bundles alike)."""
    return {
        "slot": wl.slot.astype(np.uint32),
        "origin": wl.origin.astype(np.uint32),
        "index": wl.index.astype(np.uint32),
        "size_mbit": wl.size_mbit,
        "work_gcycles": wl.work_gcycles,
        "steps": wl.steps.astype(np.uint32),
        "result_mbit": wl.result_mbit,
        "task_class": wl.task_class.astype(np.int32),
        "deadline_s": wl.deadline_s,
        "images": wl.images.astype(np.uint32),
    }


def _tasks_frame(result: RunResult) -> pl.DataFrame:
    frames = []
    for s in result.per_seed:
        for row, tr in zip(s.rows, s.traces or []):
            wl = tr.workload
            # when service started: recorded by the event engine; in the slotted model, arrival (slot start) + wait
            event = isinstance(tr, EventTrace)
            start = tr.start_s if event else wl.arrival_s + tr.wait_s
            load = tr.load_s if tr.load_s is not None else np.zeros(wl.n_tasks)  # the model load is served first, then the steps
            frames.append(
                pl.DataFrame(
                    {
                        "seed": np.full(wl.n_tasks, s.seed, dtype=np.uint64),
                        "episode": np.full(wl.n_tasks, row["episode"], dtype=np.uint32),
                        **workload_columns(wl),
                        "arrival_s": wl.arrival_s,
                        "action": tr.actions.astype(np.uint32),
                        "worker": (tr.worker if event else np.zeros(wl.n_tasks, np.int64)).astype(np.uint16),
                        "start_s": start,
                        "end_s": start + load + tr.compute_s,
                        "upload_s": tr.upload_s,
                        "load_s": load,
                        "compute_s": tr.compute_s,
                        "download_s": tr.download_s,
                        "wait_s": tr.wait_s,
                        "delay_s": tr.delay_s,
                        **({} if tr.variant is None else {"server": tr.server.astype(np.uint32), "variant": tr.variant.astype(np.int32),
                                                          "batch_images": tr.batch_images.astype(np.uint32), "quality": tr.quality}),
                    }
                )
            )
    return pl.concat(frames)


def _training_frame(result: RunResult) -> pl.DataFrame | None:
    rows = [r for s in result.per_seed for r in s.training]
    if not rows:
        return None
    return pl.DataFrame(rows).with_columns(pl.col("seed").cast(pl.UInt64), pl.col("episode").cast(pl.UInt32))


def write_json(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, indent=2, sort_keys=False, allow_nan=False) + "\n", encoding="utf-8")


def write_bundle(
    result: RunResult,
    out: Path,
    *,
    overwrite: bool = False,
    task_records: bool = False,
    command: list[str] | None = None,
    provenance: dict[str, Any] | None = None,
    extra: dict[str, Any] | None = None,
    checkpoint: bool = True,
) -> Path:
    """Write the bundle of `result` to `out` atomically; return `out`.

    `provenance` describes where the run happened (default: this process); `extra` adds keys to the manifest;
    `checkpoint=False` leaves the trained policy out (a smaller bundle; it cannot be evaluated again).
    """
    out = Path(out)
    check_out_dir(out, overwrite)
    out.parent.mkdir(parents=True, exist_ok=True)
    with staging_dir(out) as tmp:
        files: dict[str, Path] = {}
        files["episodes.parquet"] = tmp / "episodes.parquet"
        write_parquet(_episodes_frame(result), files["episodes.parquet"], compression="zstd")
        files["actions.parquet"] = tmp / "actions.parquet"
        write_parquet(_actions_frame(result), files["actions.parquet"], compression="zstd")
        training = _training_frame(result)
        if training is not None:
            files["training.parquet"] = tmp / "training.parquet"
            write_parquet(training, files["training.parquet"], compression="zstd")
        states = {s.seed: s.state for s in result.per_seed if s.state}
        if states and checkpoint:
            files["checkpoint.pt"] = tmp / "checkpoint.pt"
            save_checkpoint(result, states, files["checkpoint.pt"])
        if task_records:
            files["tasks.parquet"] = tmp / "tasks.parquet"
            write_parquet(_tasks_frame(result), files["tasks.parquet"], compression="zstd")
        summary = result.summary()
        files["summary.json"] = tmp / "summary.json"
        write_json(files["summary.json"], summary)
        source = carry_source(result, tmp)
        files.update({name: tmp / name for name in source.get("files", ())})

        manifest = {
            "schema_version": SCHEMA_VERSION,
            "kind": BUNDLE_KIND,
            "created_utc": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "command": command if command is not None else sys.argv,
            "mode": "simulated",
            "time_model": result.scenario.episode.time_model or "slotted",
            "scheduler": {
                "name": result.scheduler,
                "ref": result.scheduler_ref or result.scheduler,
                "class": result.scheduler_class,
                "params": result.scheduler_params,
                "learns": result.learns,
                "batch_unit": result.batch_unit,
                **({"source": {k: v for k, v in source.items() if k != "files"}} if source else {}),
            },
            "scenario": scenario_record(result.scenario),
            "seeds": result.seeds,
            "protocol": {"eval_episodes": result.episodes, "train_episodes": result.train_episodes},
            **({"trained_from_checkpoint": result.checkpoint_info} if result.checkpoint_info else {}),
            "streams": {
                "generator": "numpy PCG64",
                "seeding": "SeedSequence(seed, spawn_key=(purpose, ...)); purposes: 0 evaluation (episode), 1 training (episode), "
                           "2 scheduler, 3 environment, 4 cold starts (training, episode), 5 load probe",
            },
            "provenance": provenance if provenance is not None else current_provenance(),
            **(extra or {}),
            "timing": summary["timing"],
            "reported": list(REPORTED),
        }
        seal(tmp, out, manifest, files)
    return out


NO_SOURCE = "no source file found for the scheduler's module; it cannot be verified by re-running"


def carry_source(result: RunResult, tmp: Path) -> dict[str, Any]:
    """Copy a plugin's code into the bundle (source/), so that verification can re-run exactly it; built-ins
    carry none (the suite's version names their code). Returns the manifest's `scheduler.source` entry.

    The code is found from the reference the run was given (`scheduler_ref`: path/to/file.py:Class, module:Class
    or a plugin's name) by reading files only, never by importing: a sandboxed run's code was never imported by
    this process and must not be, and the class its child reports must not choose what is read. An in-process run
    of the same reference finds the same files the same way."""
    from bench.experiments.runs.bundle_checks import SOURCE_NAME

    found = _source_files(result.scheduler_ref or result.scheduler_class)
    if not isinstance(found, tuple):
        return found
    root, files, entry, loader = found
    names = ["source/" + p.relative_to(root).as_posix() for p in files]
    bad = next((n for n in names if not SOURCE_NAME.match(n)), None)
    if bad is not None:
        return {"note": f"the scheduler's code has a file named {bad[len('source/'):]!r}, which a bundle cannot hold; it cannot be verified by re-running"}
    for p, name in zip(files, names):
        (tmp / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(p, tmp / name)
    return {"loader": loader, "entry": entry, "files": names}


def _source_files(ref: str) -> tuple[Path, list[Path], str, str] | dict[str, Any]:
    """(root, files, entry, loader) of the code `ref` names, or the manifest's source entry when there is none to carry
    ({} for the suite's own code, a note otherwise)."""
    from schedulers.registry import BUILTINS, ENTRY_POINT_GROUP

    if not ref or ref in BUILTINS:
        return {}
    target = ref
    if ":" not in ref:  # an installed plugin's name: its entry point's value, from the package metadata alone
        from importlib.metadata import entry_points

        target = next((ep.value for ep in entry_points(group=ENTRY_POINT_GROUP) if ep.name == ref), "")
    module, _, attr = target.rpartition(":")
    if not module or not attr:
        return {"note": NO_SOURCE}
    if module.endswith(".py") or "/" in module or os.sep in module:  # path/to/file.py:Class, as the registry loads it
        file = Path(module).resolve()
        if not file.is_file():
            return {"note": NO_SOURCE}
        root, files, entry, loader = file.parent, [file], f"{file.name}:{attr}", "file"
    else:
        if module.split(".")[0] in ("schedulers", "bench"):
            return {}
        located = _find_module(module)
        if located is None:
            return {"note": NO_SOURCE}
        root, package = located
        files = [package] if package.is_file() else _package_files(package, root)
        entry, loader = target, "module"
    if files is None or len(files) > 500 or sum(p.stat().st_size for p in files) > SOURCE_TOTAL_LIMIT or any(p.stat().st_size > SOURCE_FILE_LIMIT for p in files):
        count = "over 500" if files is None else f"{len(files)}"
        return {"note": f"the scheduler's code ({count} files) is beyond the limits of a bundle's source/ (500 files, {SOURCE_FILE_LIMIT:,} bytes each, "
                        f"{SOURCE_TOTAL_LIMIT:,} in all); it cannot be verified by re-running"}
    return root, files, entry, loader


def _find_module(module: str) -> tuple[Path, Path] | None:
    """(root, top) for `module`: the directory on the import path that holds its top-level package or module, and
    that package's directory (or the module's file). Found as the import system would, reading directories only:
    find_spec of a top-level name imports nothing, and the submodules are looked up as files; the current
    directory is searched last, as schedulers.registry does."""
    import importlib.machinery
    import importlib.util

    parts = module.split(".")
    if not all(part.isidentifier() for part in parts):
        return None
    try:
        spec = importlib.util.find_spec(parts[0])
    except (ImportError, ValueError):
        spec = None
    if spec is None:
        spec = importlib.machinery.PathFinder.find_spec(parts[0], [os.getcwd()])
    if spec is None:
        return None
    if spec.submodule_search_locations is None:  # a single module: it has no submodules
        origin = Path(spec.origin or "")
        return (origin.parent, origin) if len(parts) == 1 and origin.suffix == ".py" and origin.is_file() else None
    for top in map(Path, spec.submodule_search_locations):  # a package; a namespace package has several portions
        here, found = [top], len(parts) == 1 and (top / "__init__.py").is_file()
        for part in parts[1:]:
            found = False
            for d in here:
                if (d / part / "__init__.py").is_file() or (d / f"{part}.py").is_file():
                    here, found = [d / part], True
                    break
            if not found:
                here = [d / part for d in here if (d / part).is_dir()]  # namespace portions go on
                if not here:
                    break
        if found:
            return top.parent, top
    return None


def _package_files(package: Path, root: Path) -> list[Path] | None:
    """The package's .py files (not under __pycache__), sorted; None beyond 500 (counted before anything is read)."""
    files = []
    for p in package.rglob("*.py"):
        if "__pycache__" in p.relative_to(root).parts or not p.is_file():
            continue
        files.append(p)
        if len(files) > 500:
            return None
    return sorted(files)


def save_checkpoint(result: RunResult, states: dict[int, dict[str, Any]], path: Path) -> None:
    import torch

    torch.save(
        {"scheduler": result.scheduler, "scenario_hash": result.scenario.hash, "params": result.scheduler_params, "states": states},
        path,
    )


def load_checkpoint(path: Path) -> Checkpoint:
    """A checkpoint from a bundle directory (its checkpoint.pt) or a checkpoint file."""
    import torch

    path = Path(path)
    if path.is_dir() and (path / "manifest.json").exists():  # a bundle: read it as untrusted input first
        listed = read_bundle(path).manifest["files"]
        if "checkpoint.pt" not in listed:
            raise BundleError(f"--checkpoint = {str(path)!r} is not allowed; the bundle holds no trained policy (it was written with --no-checkpoint)")
        file = member(path, "checkpoint.pt", where=str(path))
    else:
        file = path / "checkpoint.pt" if path.is_dir() else path
        if not file.is_file():
            raise BundleError(f"--checkpoint = {str(path)!r} is not allowed; expected a bundle directory with a checkpoint.pt, or a checkpoint file")
    checked_size(file, "checkpoint.pt", None, where=str(path))
    try:
        data = torch.load(file, map_location="cpu", weights_only=True)
        ckpt = Checkpoint(data["scheduler"], data["scenario_hash"], data["params"], {int(k): v for k, v in data["states"].items()}, source=str(path), sha256=sha256_file(file))
    except Exception as exc:  # corrupt or foreign file
        raise BundleError(f"--checkpoint = {str(path)!r} could not be read as a checkpoint ({one_line(exc, 160, typed=True)})") from None
    if path.is_dir() and (path / "manifest.json").is_file():
        # a bundle also tells how the policy was trained: its budget, learning curves and counters
        bundle = read_bundle(path)
        ckpt.train_episodes = int(bundle.manifest["protocol"]["train_episodes"])
        curve = pl.read_parquet(path / "training.parquet") if (path / "training.parquet").is_file() else None
        stats = {int(s["seed"]): {k: v for k, v in s.items() if k not in ("seed", "converged_episode", "final_train_delay_s")} for s in bundle.summary.get("training", {}).get("per_seed", [])}
        for seed in ckpt.states:
            rows = curve.filter(pl.col("seed") == seed).drop("seed").to_dicts() if curve is not None else []
            ckpt.training[seed] = {"rows": [{"seed": seed, **r} for r in rows], "stats": stats.get(seed, {})}
    return ckpt


def seal(tmp: Path, out: Path, manifest: dict[str, Any], files: dict[str, Path]) -> None:
    """Finish a bundle written in `tmp`: the manifest gets the file table (SHA-256 and size of each) and its own
    digest over all of it, then the folder is installed at `out`."""
    manifest["files"] = {name: {"sha256": sha256_file(path), "bytes": path.stat().st_size} for name, path in sorted(files.items())}
    manifest["digest"] = digest(manifest)
    write_json(tmp / "manifest.json", manifest)
    install(tmp, out)


def install(tmp: Path, out: Path) -> None:
    """Move the finished bundle into place; an old bundle is removed only once the new one is there."""
    if out.exists():
        if not any(out.iterdir()):
            out.rmdir()
            os.replace(tmp, out)
            return
        old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=out.parent))
        old.rmdir()
        os.replace(out, old)
        try:
            os.replace(tmp, out)
        except BaseException:
            os.replace(old, out)
            raise
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, out)


@dataclass
class Bundle:
    path: Path
    manifest: dict[str, Any]
    summary: dict[str, Any]
    episodes: pl.DataFrame
    actions: pl.DataFrame

    @property
    def version(self) -> int:
        return int(self.manifest["schema_version"])

    def tasks(self) -> pl.DataFrame:
        """tasks.parquet: every request's record (always in a live bundle; in a simulated one with --task-records)."""
        where = str(self.path)
        return read_parquet_file(member(Path(self.path), "tasks.parquet", where=where), "tasks.parquet", where=where)

    def episode_actions(self, seed: int, episode: int) -> np.ndarray:
        if not hasattr(self, "_by_episode"):
            parts = self.actions.partition_by("seed", "episode", as_dict=True, maintain_order=True)
            self._by_episode = {(int(s), int(e)): df["action"].to_numpy().astype(np.int64) for (s, e), df in parts.items()}
        return self._by_episode.get((int(seed), int(episode)), np.zeros(0, dtype=np.int64))


def read_bundle(path: Path, *, verify: bool = True) -> Bundle:
    """Read a bundle as untrusted input (bench.experiments.runs.bundle_checks); with `verify` (the default), every file
    is hashed and the tables are checked. Any problem is one BundleError line."""
    path = Path(path)
    where = str(path)
    try:
        manifest_path = member(path, "manifest.json", where=where)
    except BundleError:
        raise BundleError(f"{path}: not a result bundle (no manifest.json, or not a regular file)") from None
    checked_size(manifest_path, "manifest.json", None, where=where)
    manifest = read_json_file(manifest_path, "manifest.json", where=where)
    if not isinstance(manifest, dict) or manifest.get("kind") != BUNDLE_KIND or manifest.get("schema_version") not in SUPPORTED_VERSIONS:
        kind, version = (manifest.get("kind"), manifest.get("schema_version")) if isinstance(manifest, dict) else (None, None)
        raise BundleError(f"{path}: schema {kind!r} v{version!r} is not supported; expected {BUNDLE_KIND} v{'/'.join(map(str, SUPPORTED_VERSIONS))}")
    version = manifest["schema_version"]
    if version >= 2 and manifest.get("digest") != digest(manifest):
        raise BundleError(f"{path}: manifest.json does not match its digest (the manifest was changed after it was written)")
    files = manifest.get("files")
    if not isinstance(files, dict):
        raise BundleError(f"{path}: the manifest's files table is missing")
    mode = manifest.get("mode", "simulated")
    if mode not in ("simulated", "live"):
        raise BundleError(f"{path}: mode = {str(mode)[:40]!r} is not supported; expected simulated or live")
    for name in ("summary.json", "episodes.parquet", "actions.parquet") + (("tasks.parquet",) if mode == "live" else ()):
        if name not in files:
            raise BundleError(f"{path}: the manifest lists no {name}" + (" (a live bundle's metrics are recomputed from its records)" if name == "tasks.parquet" else ""))
    source_bytes = 0
    paths = {}
    for name, entry in files.items():
        recorded = entry if version == 1 else entry.get("sha256") if isinstance(entry, dict) else None
        size = entry.get("bytes") if version >= 2 and isinstance(entry, dict) else None
        if not isinstance(recorded, str):
            raise BundleError(f"{path}: the manifest's entry for {name!r} has no SHA-256")
        f = member(path, name, where=where)
        nbytes = checked_size(f, name, size, where=where) if (verify or name in ("summary.json", "episodes.parquet", "actions.parquet")) else 0
        if name.startswith("source/"):
            source_bytes += nbytes
            if source_bytes > SOURCE_TOTAL_LIMIT:
                raise BundleError(f"{path}: source/ holds more than {SOURCE_TOTAL_LIMIT:,} bytes; the limit for a plugin's code")
        if verify and sha256_file(f) != recorded:
            raise BundleError(f"{path}: {name} does not match its SHA-256 in the manifest (the file was changed)")
        paths[name] = f
    summary = read_json_file(paths["summary.json"], "summary.json", where=where)
    if not isinstance(summary, dict):
        raise BundleError(f"{path}: summary.json is not a JSON object")
    episodes = read_parquet_file(paths["episodes.parquet"], "episodes.parquet", where=where)
    actions = read_parquet_file(paths["actions.parquet"], "actions.parquet", where=where)
    if verify:
        check_tables(manifest, episodes, actions, where=where)
    return Bundle(path, manifest, summary, episodes, actions)
