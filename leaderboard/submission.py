"""Submissions: result bundles found under a directory, pooled into leaderboard entries.

A submission is a directory holding one bundle (`bench run --out`) or several single-seed bundles of the
same scheduler configuration and scenario (as `bench sweep` writes them), and optionally a
`submission.toml` describing it:

    name = "LAD-TS (paper defaults)"         # display name (default: the scheduler's name)
    authors = ["A. Researcher"]
    description = "One paragraph."
    url = "https://..."
    hyperparameter_tuning = "none: the paper's defaults"   # required for learning schedulers

Bundles below a directory that holds a submission.toml belong to that submission; other bundles are
grouped by (scheduler, parameters, scenario, protocol).

A built-in's name labels the suite's own runs: the site builder marks each submission as coming from the
committed results or not, and one from elsewhere whose name is a built-in's is shown as "NAME (submitted)"
(docs/leaderboard.md, threat model); validation refuses a submission.toml name of a built-in it does not run.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from bench.core.config import from_dict, option, tomllib
from bench.core.errors import BenchError, ConfigError
from bench.core.io import read_text
from bench.experiments.runs.bundles import Bundle, read_bundle


@dataclass(frozen=True)
class SubmissionMeta:
    name: str = option("", help="display name (default: the scheduler's name)")
    authors: tuple[str, ...] | None = option(None, help="who made it")
    description: str = option("", help="one paragraph")
    url: str = option("", help="code or paper")
    hyperparameter_tuning: str = option("", help="how the hyper-parameters were chosen ('none' for the defaults); required for learning schedulers")


def read_meta(directory: Path) -> SubmissionMeta | None:
    path = directory / "submission.toml"
    if not path.is_file():
        return None
    try:
        data = tomllib.loads(read_text(path, "submission.toml", limit=1 << 20))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError("submission.toml", str(path), f"valid TOML ({exc})") from None
    return from_dict(SubmissionMeta, data, source=str(path))


def find_bundle_dirs(root: Path) -> list[Path]:
    """Directories holding a manifest.json: `root` itself, or every one below it."""
    if (root / "manifest.json").is_file():
        return [root]
    return sorted(p.parent for p in root.rglob("manifest.json") if not any(part.startswith(".") for part in p.relative_to(root).parts))


SUBMITTED = " (submitted)"  # appended to a built-in's name on an entry that does not come from the committed results


def builtin_name(text: str | None) -> str | None:
    """The built-in scheduler whose name `text` is (case and surrounding spaces ignored), or None."""
    from schedulers.registry import BUILTINS

    key = (text or "").strip().casefold()
    return next((name for name in BUILTINS if name.casefold() == key), None) if key else None


@dataclass
class Submission:
    """The bundles of one entry, before validation. `committed`: whether they come from the committed results
    (set by the site builder; None where nobody asked, e.g. `bench leaderboard validate`)."""

    root: Path
    bundle_dirs: list[Path]
    meta: SubmissionMeta | None
    meta_error: str | None = None
    bundles: list[Bundle] = field(default_factory=list)
    committed: bool | None = None

    def load(self, verify: bool) -> list[str]:
        """Read the bundles; return one line per bundle that cannot be read."""
        problems = []
        self.bundles = []
        for d in self.bundle_dirs:
            try:
                self.bundles.append(read_bundle(d, verify=verify))
            except BenchError as exc:
                problems.append(str(exc))
        return problems

    @property
    def label(self) -> str:
        """The display name; a built-in's name from outside the committed results gets SUBMITTED, so that no
        submission can pass for the suite's own run of a built-in (it keeps its own chart style and entry page)."""
        label = self._named()
        return label + SUBMITTED if self.committed is False and builtin_name(label) else label

    def _named(self) -> str:
        if self.meta and self.meta.name:
            return self.meta.name
        if self.bundles:
            m = self.bundles[0].manifest["scheduler"]
            name = m.get("name") if isinstance(m.get("name"), str) else json.dumps(m.get("name"))  # refused by validation; shown as given
            return name + (" " + json.dumps(m["params"], sort_keys=True) if m["params"] and not _default_params(m) else "")
        return self.root.name

    @property
    def entry_id(self) -> str:
        if not self.bundles:
            return _slug(self.root.name)
        m = self.bundles[0].manifest
        digest = hashlib.sha256(json.dumps([m["scheduler"]["params"], self.label], sort_keys=True).encode()).hexdigest()[:6]
        return f"{_slug(m['scenario']['name'])}--{_slug(m['scheduler']['name'])}-{digest}"


def _default_params(scheduler: dict) -> bool:
    """Whether a scheduler ran with its class defaults (then its name alone labels it)."""
    from schedulers.registry import config_dict, make

    try:
        return config_dict(make(scheduler["name"])) == scheduler["params"]
    except BenchError:
        return False


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]+", "-", text).strip("-") or "entry"


def discover(roots: list[Path]) -> list[Submission]:
    """Submissions under the given directories (see the module docstring)."""
    submissions: list[Submission] = []
    for root in roots:
        if not root.exists():
            raise BenchError(f"--results = {str(root)!r} is not allowed; expected an existing directory of bundles")
        owned: set[Path] = set()
        for meta_file in sorted(root.rglob("submission.toml")):
            directory = meta_file.parent
            dirs = find_bundle_dirs(directory)
            owned.update(dirs)
            try:
                meta, error = read_meta(directory), None
            except BenchError as exc:
                meta, error = None, str(exc)
            submissions.append(Submission(directory, dirs, meta, error))
        loose: dict[str, list[Path]] = {}
        for d in find_bundle_dirs(root):
            if d in owned:
                continue
            try:
                m = json.loads((d / "manifest.json").read_text(encoding="utf-8"))
                key = json.dumps([m["scheduler"]["name"], m["scheduler"]["params"], m["scenario"]["hash"], m["protocol"]], sort_keys=True)
            except (OSError, ValueError, KeyError):
                key = str(d)
            loose.setdefault(key, []).append(d)
        for dirs in loose.values():
            submissions.append(Submission(dirs[0].parent if len(dirs) > 1 else dirs[0], dirs, None))
    return submissions
