"""`bench leaderboard verify`: submissions believed because they were re-run (issue: forged submissions passed)."""

import json
import shutil
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from typer.testing import CliRunner

from bench.cli import app
from bench.experiments.runs.bundles import write_bundle
from bench.experiments.runs.runner import run
from bench.scenarios import load_scenario
from leaderboard.verify import read_records, verify_bundle, write_record
from tests.forge import resign

runner = CliRunner()

RULE = """
import numpy as np
from schedulers import Scheduler


class Nearest(Scheduler):
    name = "nearest-queue"

    def decide(self, batch):
        placed = batch.assigned_s.copy()
        out = np.empty(len(batch), dtype=np.int64)
        for i in range(len(batch)):
            a = int(np.argmin(np.where(batch.mask[i], batch.backlog_s + placed, np.inf)))
            out[i] = a
            placed[a] += batch.compute_s[i, a]
        return out
"""


@pytest.fixture(scope="module")
def bundles(tmp_path_factory):
    root = tmp_path_factory.mktemp("verify")
    tiny = load_scenario("tiny")
    write_bundle(run(tiny, "p2c", seeds=[0, 1], episodes=3), root / "p2c")
    write_bundle(run(tiny, "sac-ts", params=["min_buffer=40"], seeds=[0, 1], episodes=3, train_episodes=20), root / "sac", checkpoint=False)
    (root / "plugin").mkdir()
    (root / "plugin" / "nearest.py").write_text(RULE)
    write_bundle(run(tiny, f"{root}/plugin/nearest.py:Nearest", seeds=[0], episodes=2), root / "plugin-run")
    return root


def _copy(bundles, name, tmp_path):
    shutil.copytree(bundles / name, tmp_path / name)
    return tmp_path / name


def test_honest_bundles_verify_and_records_tie_to_the_digest(bundles, tmp_path):
    for name in ("p2c", "sac"):
        v = verify_bundle(bundles / name)
        assert v.ok, v.reasons
        assert v.decision_us_per_task > 0 and v.measured_in == "process"
    assert verify_bundle(bundles / "sac").rerun_mean_delay_s == verify_bundle(bundles / "sac").claimed_mean_delay_s  # same machine: exact
    path = write_record(verify_bundle(bundles / "p2c"), tmp_path / "records")
    digest = json.loads((bundles / "p2c" / "manifest.json").read_text())["digest"]
    assert read_records(tmp_path / "records")[digest]["ok"] is True and path.name.startswith(digest[:16])


def test_a_learners_record_keeps_its_retrained_episodes(bundles, tmp_path):
    """The site ranks a learner on what verify's retraining measured, not on its claim (up to 10% away): the record
    keeps the retrained evaluation's episodes, one row per (seed, episode) re-run, and stays small."""
    from leaderboard.verify import RANKED_COLUMNS, RECORD_BYTES

    v = verify_bundle(bundles / "sac")
    assert v.ok and v.measured["seeds"] == [0, 1]
    rows = v.measured["episodes"]
    assert [(r["seed"], r["episode"]) for r in rows] == [(s, e) for s in (0, 1) for e in range(3)]
    assert all(set(r) == {"seed", "episode", *RANKED_COLUMNS} for r in rows)
    assert np.mean([r["mean_delay_s"] for r in rows]) == pytest.approx(v.rerun_mean_delay_s)
    path = write_record(v, tmp_path / "records")
    assert json.loads(path.read_text())["measured"] == json.loads(json.dumps(v.measured))
    assert verify_bundle(bundles / "p2c").measured is None  # a rule's own episodes are measured: verify reproduces its actions
    assert verify_bundle(bundles / "sac", seeds=1).measured["seeds"] == [0]
    # a paper learner's record (3 seeds x 20 episodes) stays far below the 1 MiB that read_records accepts
    v.measured = {"seeds": [0, 1, 2], "episodes": [dict(rows[0], seed=s, episode=e) for s in range(3) for e in range(20)]}
    size = write_record(v, tmp_path / "paper").stat().st_size
    assert size < RECORD_BYTES // 16, size


def test_the_site_says_which_decision_times_verify_re_measured(tmp_path):
    from leaderboard.site import build_site

    results, tiny = tmp_path / "results", load_scenario("tiny")
    for name in ("p2c", "random"):  # the leaderboard's minimum protocol on tiny
        write_bundle(run(tiny, name, seeds=[0, 1, 2], episodes=10), results / "tiny" / name)
    write_record(verify_bundle(results / "tiny" / "p2c"), tmp_path / "records")
    report = build_site([results], tmp_path / "site", records=read_records(tmp_path / "records"))
    pages = {e.result.scheduler: (tmp_path / "site" / f"entry-{e.id}.html").read_text() for e in report.entries}
    assert "decision (µs/task, re-measured by verify)" in pages["p2c"]
    assert "decision (µs/task, reported)" in pages["random"]
    # records from two directories (the committed ones and one's own), no copying folders together
    write_record(verify_bundle(results / "tiny" / "random"), tmp_path / "mine")
    r = runner.invoke(app, ["leaderboard", "build", "--results", str(results), "--out", str(tmp_path / "site2"),
                            "--verified", str(tmp_path / "records"), "--verified", str(tmp_path / "mine")])
    assert r.exit_code == 0 and "2 entries (2 verified" in r.stdout, r.output


def test_another_schedulers_actions_are_rejected(bundles, tmp_path):
    """A manifest claiming opt-ts over p2c's actions: its files agree, replay passes, verify does not."""
    forged = _copy(bundles, "p2c", tmp_path)

    def claim_opt_ts(m):
        m["scheduler"].update(name="opt-ts", ref="opt-ts", **{"class": "schedulers.opt_ts:OptTS"})

    resign(forged, claim_opt_ts)
    v = verify_bundle(forged)
    assert not v.ok and v.reasons[0].startswith("actions: seed 0 episode 0") and "does not produce" in v.reasons[0]


def test_an_edited_training_budget_is_rejected(bundles, tmp_path):
    forged = _copy(bundles, "sac", tmp_path)

    def fewer_episodes(m):
        m["protocol"]["train_episodes"] = 2

    resign(forged, fewer_episodes)
    v = verify_bundle(forged)
    assert not v.ok and v.reasons[0].startswith("training: retrained within the claimed budget (2 episodes)")


def test_duplicated_rows_are_rejected_before_anything_runs(bundles, tmp_path):
    forged = _copy(bundles, "p2c", tmp_path)
    episodes = pl.read_parquet(forged / "episodes.parquet")
    pl.concat([episodes, episodes.head(2)]).write_parquet(forged / "episodes.parquet")
    resign(forged)
    v = verify_bundle(forged)
    assert not v.ok and "more than once" in v.reasons[0] and v.reasons[0].startswith("schema:")


@pytest.mark.slow
def test_a_plugin_is_verified_from_its_carried_source_in_the_sandbox(bundles, tmp_path):
    v = verify_bundle(bundles / "plugin-run", allow_unisolated=True)
    assert v.ok, v.reasons
    assert v.measured_in == "sandbox" and v.scheduler == "nearest-queue"
    stripped = _copy(bundles, "plugin-run", tmp_path)

    def drop_source(m):
        for name in [n for n in m["files"] if n.startswith("source/")]:
            del m["files"][name]

    resign(stripped, drop_source)
    v = verify_bundle(stripped, allow_unisolated=True)
    assert not v.ok and v.reasons[0].startswith("source: the bundle carries no code")


def test_verify_from_the_command_line(bundles, tmp_path):
    forged = _copy(bundles, "p2c", tmp_path)
    resign(forged, lambda m: m["scheduler"].update(name="random", ref="random", **{"class": "schedulers.classical:RandomScheduler"}))
    r = runner.invoke(app, ["leaderboard", "verify", str(bundles / "p2c"), str(forged), "--record", str(tmp_path / "rec")])
    assert r.exit_code == 1
    assert "VERIFIED p2c" in r.stdout and "FAILED   random" in r.stdout and "does not produce" in r.stdout
    assert len(list(Path(tmp_path / "rec").glob("*.json"))) == 2


def test_a_quick_verification_re_runs_the_first_episodes_only_and_writes_no_record(bundles, tmp_path):
    """--episodes K: each seed's first K evaluation episodes, actions compared exactly (a forged rule still fails);
    refused with --record, which states a full verification."""
    v = verify_bundle(bundles / "p2c", episodes=1)
    assert v.ok and v.episodes == 1, v.reasons
    forged = _copy(bundles, "p2c", tmp_path)
    resign(forged, lambda m: m["scheduler"].update(name="random", ref="random", **{"class": "schedulers.classical:RandomScheduler"}))
    assert not verify_bundle(forged, episodes=1).ok
    r = runner.invoke(app, ["leaderboard", "verify", str(bundles / "p2c"), "--episodes", "1"])
    assert r.exit_code == 0 and "x 1 episodes" in r.stdout, r.output
    r = runner.invoke(app, ["leaderboard", "verify", str(bundles / "p2c"), "--episodes", "1", "--record", str(tmp_path / "rec")])
    assert r.exit_code == 2 and "--episodes is not allowed with --record" in r.output and not (tmp_path / "rec").exists()


def test_verify_records_from_several_directories_merge_and_a_failure_wins():
    from leaderboard.verify import merge_records

    ok, bad = {"digest": "d1", "ok": True}, {"digest": "d1", "ok": False}
    assert merge_records([{"d1": ok}, {"d1": bad}]) == {"d1": bad}
    assert merge_records([{"d1": bad}, {"d1": ok}]) == {"d1": bad}
    assert merge_records([{"d1": ok}, {"d2": {"digest": "d2", "ok": True}}]).keys() == {"d1", "d2"}


def test_build_takes_verify_records_from_several_directories(tmp_path):
    from typer.testing import CliRunner

    from bench.cli import app

    r = CliRunner().invoke(app, ["leaderboard", "build", "--out", str(tmp_path / "site"), "--verified", str(tmp_path / "nowhere")])
    assert r.exit_code == 2 and "--verified = " in r.stderr and "nowhere" in r.stderr and not (tmp_path / "site").exists()


# ------------------------------------------------------------------------------ issue 21 item 6: what verify believes


def _forge_actions(bundle: Path, every: int, learns: bool) -> None:
    """Change every `every`-th action, recompute episodes.parquet and summary.json from the new actions (so replay
    agrees, as a careful forger makes it), set `learns` in the manifest and re-sign."""
    from bench.engine.metrics import episode_metrics
    from bench.engine.system import System
    from bench.experiments.runs.summary import episodes_independent, summarize
    from bench.scenarios import scenario_from_dict

    m = json.loads((bundle / "manifest.json").read_text())
    scenario = scenario_from_dict(m["scenario"]["config"])
    actions, episodes = pl.read_parquet(bundle / "actions.parquet"), pl.read_parquet(bundle / "episodes.parquet")
    forged, rows = [], []
    for row in episodes.iter_rows(named=True):
        seed, episode = row["seed"], row["episode"]
        part = actions.filter((pl.col("seed") == seed) & (pl.col("episode") == episode))
        a = part["action"].to_numpy().astype(np.int64)
        a[::every] = (a[::every] + 1) % scenario.n_servers
        system = System.build(scenario, seed)
        metrics = episode_metrics(system.env().evaluate(system.workload(episode), a))
        rows.append({**row, **{k: v for k, v in metrics.items() if k in row}})
        forged.append(part.with_columns(pl.Series("action", a).cast(part["action"].dtype)))
    pl.concat(forged).write_parquet(bundle / "actions.parquet")
    pl.DataFrame(rows, schema=episodes.schema).write_parquet(bundle / "episodes.parquet")
    summary = json.loads((bundle / "summary.json").read_text())
    summary.update(summarize(rows, learns=learns, independent=episodes_independent(m["scenario"]["config"])))
    (bundle / "summary.json").write_text(json.dumps(summary))
    resign(bundle, lambda m: m["scheduler"].update(learns=learns))


def test_a_builtin_learns_only_if_the_registry_says_so(tmp_path):
    """Review: opt-ts with forged actions and `learns: true` in its manifest was held to the learners' 10% window
    (learns was read from the manifest) and VERIFIED. A built-in's learns and class are the registry's."""
    from leaderboard.submission import discover
    from leaderboard.validate import validate

    honest = write_bundle(run(load_scenario("tiny"), "opt-ts", seeds=[0], episodes=2), tmp_path / "opt-ts")
    forged, as_rule = tmp_path / "forged", tmp_path / "as-rule"
    for copy, learns in ((forged, True), (as_rule, False)):
        shutil.copytree(honest, copy)
        _forge_actions(copy, every=10, learns=learns)
    claimed = pl.read_parquet(forged / "episodes.parquet")["mean_delay_s"].mean()
    assert abs(claimed / pl.read_parquet(honest / "episodes.parquet")["mean_delay_s"].mean() - 1) < 0.10  # inside the learners' window
    v = verify_bundle(forged)
    assert not v.ok and v.reasons == ["scheduler: learns = true is not allowed for the built-in 'opt-ts'; expected false (the registry's)"]
    failures = validate(discover([forged])[0]).failures
    assert any(f.startswith("scheduler: ") and "learns = true is not allowed for the built-in 'opt-ts'" in f for f in failures), failures
    v = verify_bundle(as_rule)  # the same actions with the registry's learns: held to the actions, and caught by them
    assert not v.ok and v.check == "rule: actions" and v.reasons[0].startswith("actions: seed 0 episode 0")
    r = runner.invoke(app, ["leaderboard", "verify", str(forged)])
    assert r.exit_code == 1 and "learns = true is not allowed" in r.stdout, r.output


SANDBOXED_RULE = RULE.replace("class Nearest", "class Sandboxed").replace('"nearest-queue"', '"sandboxed-queue"')


@pytest.mark.slow
def test_a_sandboxed_file_plugin_carries_its_source_and_verifies(tmp_path):
    """Review: `bench run --sandbox` of path/to/file.py:Class wrote no source/ (the code was looked for by importing
    it, which the parent never does for sandboxed code), so its bundle could never verify."""
    import sys

    (tmp_path / "plugin").mkdir()
    (tmp_path / "plugin" / "sandboxed_rule.py").write_text(SANDBOXED_RULE)
    ref = f"{tmp_path}/plugin/sandboxed_rule.py:Sandboxed"
    r = runner.invoke(app, ["run", "-s", ref, "--scenario", "tiny", "-n", "2", "--sandbox", "--out", str(tmp_path / "boxed"), "--no-progress"])
    assert r.exit_code == 0, r.output
    assert not [name for name in sys.modules if "sandboxed_rule" in name]  # the parent never imported it
    boxed = json.loads((tmp_path / "boxed" / "manifest.json").read_text())
    assert boxed["scheduler"]["source"] == {"loader": "file", "entry": "sandboxed_rule.py:Sandboxed"}
    assert "source/sandboxed_rule.py" in boxed["files"]
    r = runner.invoke(app, ["leaderboard", "verify", str(tmp_path / "boxed"), "--allow-unisolated"])
    assert r.exit_code == 0 and "VERIFIED sandboxed-queue" in r.stdout and "(sandbox)" in r.stdout, r.output
    # exactly what an in-process run of the same plugin carries
    r = runner.invoke(app, ["run", "-s", ref, "--scenario", "tiny", "-n", "2", "--out", str(tmp_path / "in-process"), "--no-progress"])
    assert r.exit_code == 0, r.output
    here = json.loads((tmp_path / "in-process" / "manifest.json").read_text())
    assert here["scheduler"]["source"] == boxed["scheduler"]["source"]
    assert {n: f for n, f in here["files"].items() if n.startswith("source/")} == {n: f for n, f in boxed["files"].items() if n.startswith("source/")}


@pytest.mark.slow
def test_a_sandboxed_module_plugin_carries_its_package_and_verifies(tmp_path, monkeypatch):
    """module:Class with its directory on PYTHONPATH: the bundle carries the whole top-level package, found by
    reading directories, never by importing it in the parent."""
    import sys

    package = tmp_path / "lib" / "boxed_pkg"
    (package / "rules").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "rules" / "__init__.py").write_text("")
    (package / "rules" / "queue.py").write_text(SANDBOXED_RULE)
    (package / "helpers.py").write_text("UNUSED = 1\n")
    monkeypatch.setenv("PYTHONPATH", str(tmp_path / "lib"))  # what the sandboxed child imports from
    monkeypatch.syspath_prepend(str(tmp_path / "lib"))  # what this process would import from (it must not)
    r = runner.invoke(app, ["run", "-s", "boxed_pkg.rules.queue:Sandboxed", "--scenario", "tiny", "-n", "2", "--sandbox",
                            "--out", str(tmp_path / "boxed"), "--no-progress"])
    assert r.exit_code == 0, r.output
    assert "boxed_pkg" not in sys.modules
    m = json.loads((tmp_path / "boxed" / "manifest.json").read_text())
    assert m["scheduler"]["source"] == {"loader": "module", "entry": "boxed_pkg.rules.queue:Sandboxed"}
    assert sorted(n for n in m["files"] if n.startswith("source/")) == [
        "source/boxed_pkg/__init__.py", "source/boxed_pkg/helpers.py", "source/boxed_pkg/rules/__init__.py", "source/boxed_pkg/rules/queue.py"]
    monkeypatch.delenv("PYTHONPATH")  # verify runs the carried copy, not the one on the path
    r = runner.invoke(app, ["leaderboard", "verify", str(tmp_path / "boxed"), "--allow-unisolated"])
    assert r.exit_code == 0 and "VERIFIED sandboxed-queue" in r.stdout, r.output


LOOK_AHEAD = '''
import numpy as np
from schedulers import Scheduler


class LookAhead(Scheduler):
    """Plays opt-ts's rule, but where the episode's workload is reachable (a batch's private field, in process) it
    places each task by the work still to come on each server: a plan no real gateway could make."""
    name = "look-ahead"
    batch_unit = "slot"

    def decide(self, batch):
        service = batch.service_s
        wl = getattr(batch, "_wl", None)
        if wl is not None:  # the future: how much work arrives after this batch, per origin
            lo, hi = batch.task_range
            later = np.bincount(np.asarray(wl.origin[hi:]), minlength=batch.n_servers)[: batch.n_servers]
            service = service + 1e-3 * later[None, :]
        placed = batch.assigned_s.copy()
        out = np.empty(len(batch), dtype=np.int64)
        for i in range(len(batch)):
            value = np.where(batch.mask[i], service[i] + batch.backlog_s + placed, np.inf)
            out[i] = int(np.argmin(value))
            placed[out[i]] += batch.compute_s[i, out[i]]
        return out
'''


@pytest.mark.slow
def test_a_bundle_made_with_look_ahead_in_process_fails_verification(tmp_path):
    """The review's look-ahead attack, run where it works (in process, trusted) and submitted: verify re-runs the
    carried code in the sandbox, where no workload is reachable, so the actions differ and the bundle fails."""
    (tmp_path / "plugin").mkdir()
    (tmp_path / "plugin" / "look_ahead.py").write_text(LOOK_AHEAD)
    ref = f"{tmp_path}/plugin/look_ahead.py:LookAhead"
    r = runner.invoke(app, ["run", "-s", ref, "--scenario", "tiny", "-n", "2", "--out", str(tmp_path / "cheat"), "--no-progress"])
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["leaderboard", "verify", str(tmp_path / "cheat"), "--allow-unisolated"])
    assert r.exit_code != 0 and r.output.startswith("FAILED") and "actions: seed 0 episode" in r.output, r.output
    # the same code run in the sandbox makes a bundle that verifies: it is the look-ahead that fails, not the code
    r = runner.invoke(app, ["run", "-s", ref, "--scenario", "tiny", "-n", "2", "--sandbox", "--out", str(tmp_path / "honest"), "--no-progress"])
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["leaderboard", "verify", str(tmp_path / "honest"), "--allow-unisolated"])
    assert r.exit_code == 0 and "VERIFIED look-ahead" in r.output, r.output
    # in process the look-ahead gains; sandboxed it finds no workload and is no better than opt-ts on the same episodes
    opt = np.mean([row["mean_delay_s"] for row in run(load_scenario("tiny"), "opt-ts", seeds=[0], episodes=2).rows])
    cheat = pl.read_parquet(tmp_path / "cheat" / "episodes.parquet")["mean_delay_s"].mean()
    boxed = pl.read_parquet(tmp_path / "honest" / "episodes.parquet")["mean_delay_s"].mean()
    assert cheat < opt <= boxed + 1e-12, (cheat, opt, boxed)


PLAN_BOOK = '''
import numpy as np
from schedulers import Scheduler

BOOK = {book!r}  # first-batch fingerprint -> the episode's actions, computed offline on the public seeds


class PlanBook(Scheduler):
    """Recognises a public evaluation episode by its first batch and replays a plan made offline; elsewhere it
    keeps every request at its base station."""
    name = "plan-book"

    def begin_episode(self, episode, training):
        self.plan, self.at = None, 0

    def decide(self, batch):
        if self.at == 0:
            self.plan = BOOK.get(repr(np.round(batch.size_mbit, 6).tolist()))
        n = len(batch)
        out = np.asarray(self.plan[self.at : self.at + n]) if self.plan is not None else np.asarray(batch.origin)
        self.at += n
        return out
'''


@pytest.mark.slow
def test_a_plan_book_gains_nothing_on_the_ranking_round(tmp_path):
    """The review's plan-book rule: on the public seeds it replays opt-ts's plan exactly (as good as the plan it
    carries); on a ranking round's fresh seeds it recognises no episode and is ranked on what it really does."""
    tiny = load_scenario("tiny")
    reference = run(tiny, "opt-ts", seeds=[0, 1, 2], episodes=10)  # the leaderboard's protocol for tiny
    from bench.engine.system import System

    book = {}
    for s in reference.per_seed:
        system = System.build(tiny, s.seed)
        for e, actions in enumerate(s.actions):
            wl = system.workload(e)
            first = wl.batch_offsets[np.flatnonzero(np.diff(wl.batch_offsets))[0] + 1]  # the end of the first non-empty batch
            book[repr(np.round(wl.size_mbit[:first], 6).tolist())] = [int(a) for a in actions]
    (tmp_path / "plugin").mkdir()
    (tmp_path / "plugin" / "plan_book.py").write_text(PLAN_BOOK.format(book=book))
    roots = tmp_path / "results"
    write_bundle(reference, roots / "opt-ts")
    r = runner.invoke(app, ["run", "-s", f"{tmp_path}/plugin/plan_book.py:PlanBook", "--scenario", "tiny", "--seed", "0,1,2", "-n", "10", "--sandbox",
                            "--out", str(roots / "plan-book"), "--no-progress"])
    assert r.exit_code == 0, r.output
    public = pl.read_parquet(roots / "plan-book" / "episodes.parquet")["mean_delay_s"].to_numpy()
    assert np.array_equal(public, np.array([row["mean_delay_s"] for s in reference.per_seed for row in s.rows]))  # the book works on public seeds

    (tmp_path / "key").write_text("a key published after every digest was fixed")
    r = runner.invoke(app, ["leaderboard", "verify", str(roots), "--allow-unisolated", "--ranking-key-file", str(tmp_path / "key"),
                            "--record", str(tmp_path / "records")])
    assert r.exit_code == 0 and r.output.count("ranking round") == 2, r.output
    records = {rec["scheduler"]: rec["ranked"] for rec in read_records(tmp_path / "records").values()}
    assert records["plan-book"]["seeds"] == records["opt-ts"]["seeds"] and 0 not in records["opt-ts"]["seeds"]  # one fresh set for both
    mean = {name: np.mean([row["mean_delay_s"] for row in ranked["episodes"]]) for name, ranked in records.items()}
    assert mean["plan-book"] > 1.2 * mean["opt-ts"], mean  # no episode recognised: it plays its fallback

    from leaderboard.site import build_site
    from leaderboard.verify import read_records as records_of

    report = build_site([roots], tmp_path / "site", records=records_of(tmp_path / "records"), committed=roots)
    assert not report.invalid, [v.failures for v in report.invalid]
    view = next(v for v in report.views if v.name == "tiny")
    assert view.round is not None and [e.scheduler for e in view.entries] == ["opt-ts", "plan-book"]
    assert view.entries[1].submitted_mean == pytest.approx(view.entries[0].submitted_mean)  # equal on the public seeds ...
    assert view.entries[1].mean > 1.2 * view.entries[0].mean  # ... ranked on the round, where the book is no help
