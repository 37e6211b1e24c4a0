"""Live mode (bench/live, docs/live.md): real model servers on Ray, the gateway's records, the bundle, faults, a
clean stop, and the simulator's error against the run.

The Ray tests share one local Ray instance (a module fixture: one start for all of them) and check, when it
stops, that every process it started is gone and every port they listened on is free. The Ctrl-C test starts its
own `bench live` process (its own Ray instance) and interrupts it while its servers start.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import polars as pl
import pytest

pytest.importorskip("ray")

from bench.core.errors import ConfigError  # noqa: E402
from bench.live import cluster as live_cluster  # noqa: E402
from bench.experiments.runs.live_records import check_records, delay_parts, live_metrics, replay_live  # noqa: E402
from bench.scenarios import load_scenario  # noqa: E402

SCENARIO = "live-cpu"  # bench/scenarios/presets/live-cpu.toml
TINY_MODELS = ["sd15-tiny", "sd21-tiny", "sdxl-tiny", "sd3-medium-tiny", "sd3-medium-no-t5-tiny", "pixart-sigma-tiny"]


# ---- without Ray ---------------------------------------------------------------------------------------------

@pytest.fixture()
def one_thread():
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.mark.parametrize("model", TINY_MODELS)
def test_every_tiny_model_runs_as_a_diffusers_pipeline(model, one_thread):
    from bench.live.pipelines import Request, make_pipeline

    pipe = make_pipeline(model)
    a = pipe.run(Request(model, 64, 2, 3, seed=11))
    b = pipe.run(Request(model, 64, 2, 3, seed=11))
    c = pipe.run(Request(model, 64, 2, 3, seed=12))
    assert a.image.shape == (2, 64, 64, 3) and a.image.dtype == np.float32
    assert np.isfinite(a.image).all() and a.image.std() > 0
    assert a.digest == b.digest and a.digest != c.digest  # the same request seed, the same image
    assert a.text_s > 0 and a.denoise_s > 0 and a.vae_s > 0 and 0 < a.first_step_s <= a.denoise_s


def test_the_server_keeps_models_by_the_cost_models_memory_rule(tmp_path, monkeypatch, one_thread):
    """Two models that cannot both stay resident: running the second evicts the first and pays a timed load."""
    import asyncio

    from bench.live.server import ModelServer, ServerSpec

    monkeypatch.setenv("TMPDIR", str(tmp_path))
    spec = ServerSpec(index=0, hardware="cpu-test", device="cpu", dtype="float32", memory_bytes=80.0, models=("sd15-tiny", "sd21-tiny"),
                      preload=("sd15-tiny",), weights_bytes={"sd15-tiny": 60.0, "sd21-tiny": 60.0}, run_id="test")
    server = ModelServer(spec)
    try:
        assert list(server._resident) == ["sd15-tiny"] and server.start_load_s["sd15-tiny"] > 0
        assert server._ensure("sd15-tiny", 30.0) == (0.0, 0)  # resident, fits beside nothing else
        load, evicted = server._ensure("sd21-tiny", 30.0)
        assert load > 0 and evicted == 1 and list(server._resident) == ["sd21-tiny"]
        out = server._serve(7, {"model": "sd21-tiny", "resolution": 64, "batch": 1, "steps": 2, "seed": 3, "peak_bytes": 30.0})
        assert out["load_s"] == 0.0 and out["image"].shape == (1, 64, 64, 3) and out["start"] <= out["end"]
        status = asyncio.run(server.status())
        assert status["queued"] == [] and status["running"] is None and 7 in status["finished"] and status["evictions"] == 1
    finally:
        asyncio.run(server.stop())
    assert not server.work_dir.exists()


def test_initial_resident_follows_the_memory_rule():
    """Models are preloaded in mix order while every kept one fits beside the others' weights at its peak."""
    from types import SimpleNamespace

    from bench.live.session import initial_resident

    def costs(memory: float) -> SimpleNamespace:
        return SimpleNamespace(models=["a", "b", "c"], class_model=np.array([0, 1, 2]), fits=np.array([[True], [True], [False]]),
                               weights_bytes=np.array([[60.0], [60.0], [1.0]]), peak_bytes=np.array([[30.0], [30.0], [1.0]]),
                               memory_bytes=np.array([memory]))

    assert initial_resident(costs(100.0), 0, ["a", "b", "c"]) == ["a", "b"]  # c does not run there
    assert initial_resident(costs(80.0), 0, ["b", "a"]) == ["b"]  # a beside b would need 90


def test_live_mode_refuses_what_it_cannot_run():
    from bench.live.session import check_live_scenario, run_live

    with pytest.raises(ConfigError, match="profile-driven"):
        check_live_scenario(load_scenario("paper"))
    with pytest.raises(ConfigError, match="one worker per server"):
        check_live_scenario(load_scenario(SCENARIO, ["servers.gpus=2"]))
    with pytest.raises(ConfigError, match="does not learn"):
        run_live(load_scenario(SCENARIO), "dqn-ts")
    with pytest.raises(ConfigError, match="time-scale"):
        run_live(load_scenario(SCENARIO), "opt-ts", time_scale=0)


def _frame(**over) -> pl.DataFrame:
    n = 4
    base = {
        "request": np.arange(n, dtype=np.uint32), "origin": np.array([0, 1, 2, 0], dtype=np.uint32), "action": np.array([0, 2, 2, 1], dtype=np.int32),
        "arrival_s": np.array([0.0, 0.1, 0.1, 0.5]), "first_dispatch_s": np.array([0.01, 0.11, 0.11, 0.51]),
        "dispatch_s": np.array([0.01, 0.11, 0.11, 0.51]), "enqueue_s": np.array([0.01, 0.15, 0.16, 0.6]),
        "start_s": np.array([0.02, 0.16, 0.5, 0.61]), "end_s": np.array([0.4, 0.5, 0.9, 1.0]), "return_s": np.array([0.45, 0.56, 0.95, 1.1]),
        "load_s": np.array([0.0, 0.1, 0.0, 0.0]), "evictions": np.zeros(n, dtype=np.uint16), "best_service_s": np.full(n, 0.3),
        "deadline_s": np.array([1.0, 1.0, np.inf, 0.1]), "status": ["done"] * n, "failure": [""] * n, "image_sha256": ["a" * 64] * n,
    }
    base.update(over)
    return delay_parts(pl.DataFrame(base))


def test_metrics_come_from_the_timestamps():
    f = _frame()
    m = live_metrics(f, horizon_s=0.8)
    delay = np.array([0.45, 0.46, 0.85, 0.6])
    assert m["tasks"] == 4 and m["mean_delay_s"] == pytest.approx(delay.mean())
    assert m["p95_delay_s"] == pytest.approx(np.percentile(delay, 95))
    parts = sum(m[k] for k in ("mean_upload_s", "mean_wait_s", "mean_load_s", "mean_compute_s", "mean_download_s"))
    assert parts == pytest.approx(m["mean_delay_s"])
    assert m["drain_s"] == pytest.approx(0.2) and m["throughput_per_s"] == pytest.approx(4 / 1.1)
    assert m["cold_starts"] == 1 and m["deadline_tasks"] == 3 and m["slo_attainment"] == pytest.approx(2 / 3)
    assert m["offload_fraction"] == pytest.approx(0.5) and m["energy_j_per_request"] is None
    assert check_records(f) == []
    failed = _frame(status=["done", "done", "failed", "done"], failure=["", "", "lost on server 2; no live server can run it", ""])
    assert live_metrics(failed, 0.8)["tasks"] == 4 and live_metrics(failed, 0.8)["mean_delay_s"] == pytest.approx(np.mean([0.45, 0.46, 0.6]))


def test_record_checks_catch_disorder_and_missing_reasons():
    bad = _frame(start_s=np.array([0.02, 0.16, 0.1, 0.61]))  # request 2 starts before it was queued
    assert any("request 2: start_s" in p for p in check_records(bad))
    assert any("reason" in p for p in check_records(_frame(status=["done", "failed", "done", "done"])))


def test_cli_refuses_bad_flags_in_one_line():
    import typer
    from typer.testing import CliRunner

    from bench.cli.live import live

    app = typer.Typer()
    app.command("live")(live)
    app.command("other")(lambda: None)
    runner = CliRunner()
    for args, fragment in (
        (["--kill-server", "1"], "SERVER@SECONDS"),
        (["--kill-server", "x@3"], "SERVER@SECONDS"),
        (["--profile-out", "p"], "without --compare-sim"),
        (["--no-save", "--out", "x"], "--no-save"),
        (["--scenario", "paper"], "profile-driven"),
    ):
        argv = ["live", "--scheduler", "opt-ts", *([] if "--scenario" in args else ["--scenario", str(SCENARIO)]), *args]
        r = runner.invoke(app, argv)
        assert r.exit_code == 2 and fragment in r.output and "Traceback" not in r.output, (args, r.output)


def test_an_address_nobody_listens_on_fails_at_once():
    import ray

    from bench.live.cluster import LiveCluster, LiveError

    if ray.is_initialized():
        pytest.skip("this process already runs Ray (the module's shared cluster): no address is joined")
    with pytest.raises(LiveError, match="--address = '127.0.0.1:1' is not allowed"):
        with LiveCluster("127.0.0.1:1"):
            pass
    assert not ray.is_initialized()  # refused by a connection check, before Ray tried to join


def test_listening_addresses_are_read_and_judged_right():
    """/proc/net/tcp{,6} print addresses as hex 32-bit words in the machine's byte order; "::" and "0.0.0.0" are
    every interface, "::ffff:127.0.0.1" (IPv4 on a dual-stack socket) is loopback."""
    if sys.byteorder != "little":
        pytest.skip("the hex below is a little-endian machine's")
    assert live_cluster._proc_address("0100007F") == "127.0.0.1"
    assert live_cluster._proc_address("0000000000000000FFFF00000100007F") == "::ffff:7f00:1"
    assert live_cluster._proc_address("00000000000000000000000001000000") == "::1"
    assert [live_cluster.is_loopback(a) for a in ("127.0.0.1", "::1", "::ffff:7f00:1", "0.0.0.0", "::", "203.0.113.7", "::ffff:cb00:7107")] == [
        True, True, True, False, False, False, False]
    # a socket this process listens on is found with its address
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        assert ("127.0.0.1", s.getsockname()[1]) in live_cluster.listening_sockets([os.getpid()])


def test_the_watchdog_kills_and_removes_what_is_under_the_cluster_directory(tmp_path):
    """At end of file on its pipe (the driver closed it, or died of any signal), the watchdog kills every process
    that names the cluster's directory or holds a file below it, and removes the directory and what it was told of;
    the driver and other processes are left alone. (The real driver's death: test_the_cluster_dies_with_its_driver.)"""
    root = tmp_path / "aigc-ray-test"
    root.mkdir()
    work = tmp_path / "aigc-live-0000-s0-x"
    work.mkdir()
    sleep = "import os, sys, time; f = open(os.environ['HOLD'], 'w') if os.environ.get('HOLD') else None; time.sleep(600)"
    named = subprocess.Popen([sys.executable, "-c", sleep, str(root)])  # names the directory (Ray's services)
    holder = subprocess.Popen([sys.executable, "-c", sleep], env={**os.environ, "HOLD": str(root / "log")})  # holds a log (its workers)
    other = subprocess.Popen([sys.executable, "-c", sleep])
    try:
        while not (root / "log").exists():  # the holder opened its file
            time.sleep(0.05)
        dog = live_cluster.Watchdog(str(root))
        dog.remove_later(str(tmp_path / "aigc-live-0000-s*"))
        assert dog.proc.poll() is None  # it waits while the driver lives
        dog.close(timeout_s=120)
        assert dog.proc.returncode == 0
        assert named.wait(timeout=120) == -signal.SIGKILL and holder.wait(timeout=120) == -signal.SIGKILL
        assert other.poll() is None and not root.exists() and not work.exists()
    finally:
        for p in (named, holder, other):
            if p.poll() is None:
                p.kill()
                p.wait()


# ---- on Ray ----------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def ray_cluster():
    """One local Ray instance for the module's live runs; stopping it must leave no process, no port and no
    server work directory."""
    import tempfile

    with live_cluster.LiveCluster(num_cpus=4) as c:
        yield c
        c.record_processes()
        assert c.processes, "the fixture did not see Ray's processes"
        root = c.temp_root
    procs, ports = c.leftovers()
    assert procs == [] and ports == set(), f"left running: {procs}, still listening: {ports}"
    assert [s for s in c.sockets if not live_cluster.is_loopback(s[0])] == []  # the servers' too, all module long
    assert root and not os.path.exists(root)  # Ray's session (logs, sockets) removed with the instance
    assert RUN_IDS or not WATCHED, "no run of the module said its run id"  # (a -k selection may run none)
    # this module's runs only: another job on the machine (a second CI) may have live servers of its own in /tmp
    assert not [d for rid in RUN_IDS for d in Path(tempfile.gettempdir()).glob(f"aigc-live-{rid}-*")]


@pytest.mark.slow
def test_a_local_cluster_listens_on_this_machine_only(ray_cluster):
    """Every process of a local cluster started as `bench live` starts it listens on 127.0.0.1 only: Ray's
    services, its agents and its workers. Before, gcs_server, the raylet and every worker listened on all interfaces
    ("::") and the runtime-env agent on the machine's address."""
    import ray

    @ray.remote(num_cpus=0)
    class Probe:
        def pid(self) -> int:
            return os.getpid()

    probe = Probe.remote()
    try:
        worker = ray.get(probe.pid.remote())
        ray_cluster.record_processes()
        assert worker in ray_cluster.processes
        held = {pid: live_cluster.listening_sockets([pid]) for pid in live_cluster.alive(ray_cluster.processes)}
    finally:
        ray.kill(probe)
    listening = {pid: socks for pid, socks in held.items() if socks}
    assert held[worker] and len(listening) >= 3, listening  # gcs_server, the raylet, the runtime-env agent, workers
    assert {pid: s for pid, socks in listening.items() for s in socks if not live_cluster.is_loopback(s[0])} == {}


RUN_IDS: set[str] = set()  # the run ids of this module's live runs (their servers' work directories carry them)
WATCHED: list[object] = []  # the module's live runs on the shared cluster (each watched by `_watch`)
RUN_ID = re.compile(r"model servers on Ray, run ([0-9a-f]{8})")


def _watch(cluster):
    """A progress callback that records the shared cluster's processes (the servers included) as a run starts its
    replay, so the fixture's final check covers the servers' processes too, and the run's id."""
    WATCHED.append(cluster)
    def say(message: str) -> None:
        RUN_IDS.update(RUN_ID.findall(message))
        if message.startswith("replaying"):
            cluster.record_processes()
            servers = [p for p in cluster.processes if "ModelServer" in _cmdline(p)]
            assert len(servers) >= 3, "the servers' processes were not seen"
    return say


@pytest.fixture(scope="module")
def live_run(ray_cluster, tmp_path_factory):
    """The acceptance run: 3 servers, the tiny SD 1.5 model, 49 requests, compared with the simulator."""
    from bench.live.bundle import write_live_bundle
    from bench.live.session import run_live

    result = run_live(load_scenario(SCENARIO), "least-loaded", compare_sim=True, profile_s=6.0, progress=_watch(ray_cluster))
    out = write_live_bundle(result, tmp_path_factory.mktemp("live") / "bundle", command=["test"])
    return result, out


@pytest.mark.slow
def test_live_run_records_every_request_and_its_image(live_run, one_thread):
    from bench.live.gateway import request_seed
    from bench.live.pipelines import Request, make_pipeline

    result, _ = live_run
    f = result.frame
    assert f.height == 49 and (f["status"] == "done").all() and result.redispatched == 0
    assert check_records(f, float(max(result.clock["uncertainty_s"])) + 1e-6) == []
    for name in ("arrival_s", "dispatch_s", "enqueue_s", "start_s", "end_s", "return_s"):
        assert np.isfinite(f[name].to_numpy()).all() and (f[name].to_numpy() >= 0).all()
    arrival = f["arrival_s"].to_numpy()
    # replayed in order and never early; how late a loaded machine sends them is measured (scheduled_s), not bounded here
    assert (np.diff(arrival) >= 0).all() and (arrival >= f["scheduled_s"].to_numpy() - 1e-3).all()
    assert (f["image_shape"] == "1x64x64x3").all() and (f["image_sha256"].str.len_chars() == 64).all()
    assert sorted(set(f["action"].to_list())) == [0, 1, 2]
    assert result.warmup["same_seed_same_image"] is True  # one seed, three servers, one image
    # a live server's image is the one this process computes for the same request
    pipe = make_pipeline("sd15-tiny")
    for i in (0, 25):
        row = f.row(i, named=True)
        mine = pipe.run(Request("sd15-tiny", 64, 1, int(row["steps"]), request_seed(0, 0, i)))
        assert mine.digest == row["image_sha256"]
    # the servers ran one request at a time: on each server, a start never precedes the previous end
    for a in range(3):
        g = f.filter(pl.col("action") == a).sort("start_s")
        assert (g["start_s"].to_numpy()[1:] >= g["end_s"].to_numpy()[:-1] - 1e-6).all()
    assert all(s["threads"] == 1 for s in result.servers)


@pytest.mark.slow
def test_live_bundle_is_marked_live_and_replays_from_its_records(live_run, tmp_path):
    import shutil

    from bench.experiments.runs.bundle_checks import digest
    from bench.experiments.runs.bundles import read_bundle, sha256_file

    result, out = live_run
    bundle = read_bundle(out)
    m = bundle.manifest
    assert m["mode"] == "live" and "metrics" in m["reported"] and m["live"]["warmup"]["excluded_from_metrics"] is True
    assert m["live"]["faults"]["redispatched_requests"] == 0 and m["live"]["sim_to_real"]["comparable"] is True
    assert bundle.summary["mode"] == "live" and bundle.summary["tasks"] == 49
    assert replay_live(bundle) == []
    # a forged bundle (one return time changed, hashes and digest made consistent) no longer replays
    forged = tmp_path / "forged"
    shutil.copytree(out, forged)
    frame = pl.read_parquet(forged / "tasks.parquet")
    frame = frame.with_columns(pl.when(pl.col("request") == 3).then(pl.col("return_s") + 1.0).otherwise(pl.col("return_s")).alias("return_s"))
    frame.write_parquet(forged / "tasks.parquet")
    manifest = json.loads((forged / "manifest.json").read_text())
    manifest["files"]["tasks.parquet"] = {"sha256": sha256_file(forged / "tasks.parquet"), "bytes": (forged / "tasks.parquet").stat().st_size}
    manifest["digest"] = digest(manifest)
    (forged / "manifest.json").write_text(json.dumps(manifest))
    problems = replay_live(read_bundle(forged))
    assert any("delay_s of request 3" in p for p in problems) and any(p.startswith("mean_delay_s is") for p in problems), problems


def test_live_bundle_replays_validates_and_shows_apart_on_the_site(live_run, tmp_path):
    import shutil

    from bench.experiments.runs.replay import replay
    from leaderboard.site import build_site
    from leaderboard.verify import verify_bundle

    _, out = live_run
    report = replay(out)  # bench replay: a live bundle is recomputed from its records, not re-simulated
    assert report.ok and report.episodes == 1
    v = verify_bundle(out)
    assert v.ok and v.check.startswith("live") and v.decision_us_per_task is None  # nothing re-run, nothing re-measured
    results = tmp_path / "results"
    shutil.copytree(out, results / "live-run")
    site = build_site([results], tmp_path / "site")
    assert not site.entries and len(site.live) == 1 and not site.invalid  # valid, and never ranked with simulated entries
    index = (tmp_path / "site" / "index.html").read_text()
    assert "Live runs (measured, reported)" in index and "never ranked with simulated entries" in index
    assert (tmp_path / "site" / f"entry-{site.live[0].id}.html").read_text().count("measured, not ranked") == 1

@pytest.mark.slow
def test_sim_to_real_is_reported_overall_per_class_and_per_part(live_run):
    result, _ = live_run
    c = result.comparison
    for key in ("measured_mean_delay_s", "simulated_mean_delay_s", "sim_to_real_error_pct"):
        assert np.isfinite(c[key])
    assert c["measured_mean_delay_s"] == pytest.approx(result.metrics["mean_delay_s"])
    assert set(c["per_part"]) == {"upload_s", "wait_s", "load_s", "compute_s", "download_s"}
    assert set(c["per_class"]) == {"sd15-tiny 64px x1"} and set(c["overall"]["error_pct"]) == {"mean_delay_s", "p95_delay_s", "p99_delay_s"}
    # with the measured compute times the event model reproduces the run: the rest of the error is the profile's
    assert abs(c["with_measured_compute"]["error_pct"]["mean_delay_s"]) < 15.0
    profile = next(iter(result.profiles["profiles"].values()))
    assert profile["hardware"]["id"] == "live-cpu-intel-xeon-1t" and profile["hardware"]["threads"] == 1
    print(f"\nsim-to-real (live-cpu, least-loaded, 49 requests, load {result.machine_load['load_average_1min']}): "
          f"measured {c['measured_mean_delay_s']:.3f} s, simulated {c['simulated_mean_delay_s']:.3f} s, error {c['sim_to_real_error_pct']:+.1f}%; "
          f"p95 {c['overall']['error_pct']['p95_delay_s']:+.1f}%, p99 {c['overall']['error_pct']['p99_delay_s']:+.1f}%; parts "
          + ", ".join(f"{p} {v['error_pct']:+.1f}%" for p, v in c["per_part"].items() if v["error_pct"] is not None)
          + f"; with measured compute {c['with_measured_compute']['error_pct']['mean_delay_s']:+.1f}%")


@pytest.mark.slow
def test_a_killed_server_loses_no_request(ray_cluster):
    from bench.live.session import run_live

    # twice as dense (time scale 2: the 3-s episode in 1.5 s), so that server 1 has a queue when it is killed
    result = run_live(load_scenario(SCENARIO), "opt-ts", warmup=0, kills=[(1, 0.8)], time_scale=2.0, progress=_watch(ray_cluster))
    f = result.frame
    late = f["arrival_s"].to_numpy() - f["scheduled_s"].to_numpy()
    assert 1.2 < f["scheduled_s"].max() < 1.5 and (late >= -1e-3).all()  # the schedule, and never early (lateness: a measurement)
    assert (f["status"] == "done").all(), f.filter(pl.col("status") != "done")["failure"].to_list()
    moved = f.filter(pl.col("redispatches") > 0)
    assert moved.height >= 1 and result.faults["redispatched_requests"] == moved.height
    assert (moved["first_server"] == 1).all() and (moved["action"] != 1).all()
    assert [d["server"] for d in result.faults["died"]] == [1] and result.faults["killed"][0]["server"] == 1
    died = result.faults["died"][0]["detected_s"]
    assert (f.filter(pl.col("dispatch_s") > died + 0.5)["action"] != 1).all()  # nothing placed on the dead server later
    assert check_records(f, float(max(result.clock["uncertainty_s"])) + 1e-6) == []


RAY_DIR = re.compile(r"(/[^\s=]*?aigc-ray-[A-Za-z0-9_]+)")  # a local cluster's own directory (Ray's _temp_dir)


def _start_bench_live(tmp_path):
    """`bench live` on the smallest scenario in its own session, watched until its servers are being created.
    Returns the process, every process of its cluster seen ({pid: start}: the driver's descendants and the processes
    naming the cluster's directory), the (address, port) they listened on, and that directory."""
    code = "import typer; from bench.cli.live import live; typer.run(live)"
    proc = subprocess.Popen([sys.executable, "-c", code, "--scheduler", "opt-ts", "--scenario", str(SCENARIO), "--no-save"],
                            cwd=tmp_path, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, start_new_session=True)
    seen: dict[int, int] = {}
    sockets: set[tuple[str, int]] = set()
    root = None

    def look() -> dict[int, int]:
        nonlocal root
        now = live_cluster.descendants(proc.pid)
        for pid in now:
            root = root or next(iter(RAY_DIR.findall(_cmdline(pid))), None)
        if root:
            now.update(_naming(root))
        seen.update(now)
        sockets.update(live_cluster.listening_sockets(now))
        return now

    deadline = time.monotonic() + 600  # a guard against a hang; the loop ends on what it waits for
    try:
        while time.monotonic() < deadline:  # watch what it starts until its servers are being created
            now = look()
            if any("ModelServer" in _cmdline(p) for p in now) and sockets and len(seen) >= 3:  # what the checks need
                break
            time.sleep(0.2)
        else:
            pytest.fail("bench live never started its model servers")
        look()
    except BaseException:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        raise
    assert root is not None, "no process of the run names its Ray directory"
    return proc, seen, sockets, root


def _naming(text: str) -> dict[int, int]:
    """{pid: start time} of the processes whose command line contains `text`."""
    found = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit() and text in _cmdline(int(entry)):
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            found[int(entry)] = int(stat[stat.rindex(")") + 2:].split()[19])
    return found


def _gone(seen: dict[int, int], root: str, run_ids: list[str]) -> list[str]:
    """What is left of a stopped run: its processes, its Ray directory, its servers' work directories."""
    import tempfile

    left = [f"process {p}: {_cmdline(p)[:80]}" for p in live_cluster.alive(seen)]
    left += [root] * os.path.exists(root)
    return left + [str(d) for rid in run_ids for d in Path(tempfile.gettempdir()).glob(f"aigc-live-{rid}-*")]


@pytest.mark.slow
def test_ctrl_c_stops_every_process_and_port(tmp_path):
    """`bench live` interrupted while its servers start: exit 130, its Ray instance and servers gone, ports free,
    and nothing of it listened beyond this machine."""
    proc, seen, sockets, root = _start_bench_live(tmp_path)
    try:
        os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C in a terminal does: the whole foreground group
        _, stderr = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == 130, stderr[-2000:]
    assert "interrupted" in stderr and "Traceback" not in stderr
    ports = {port for _, port in sockets}
    assert len(seen) >= 3 and ports, "the run's Ray processes were not seen"
    assert [s for s in sockets if not live_cluster.is_loopback(s[0])] == []  # bound to 127.0.0.1 only
    assert live_cluster.alive(seen) == [] and not (ports & live_cluster.listening_ports())
    rid = RUN_ID.findall(stderr)
    assert len(rid) == 1, stderr[-2000:]
    assert _gone(seen, root, rid) == []  # its servers' model copies and Ray's files removed (not another job's)


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGKILL], ids=["sigterm", "sigkill"])
def test_the_cluster_dies_with_its_driver(tmp_path, signum):
    """`bench live` ended by SIGTERM (to the driver alone: `kill PID`) or SIGKILL (nothing runs in the driver) while
    its servers start: every process of its cluster ends, its Ray directory and the servers' work directories are
    removed. Before, Ray's dashboard and runtime-env agents lived on for about a minute, and SIGTERM aborted the
    driver (Ray's own handler) without its clean stop."""
    proc, seen, sockets, root = _start_bench_live(tmp_path)
    try:
        os.kill(proc.pid, signum)
        _, stderr = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    rid = RUN_ID.findall(stderr)
    assert len(rid) == 1, stderr[-2000:]
    if signum == signal.SIGTERM:  # the clean stop ran
        assert proc.returncode == 130 and "interrupted" in stderr and "Traceback" not in stderr, stderr[-2000:]
    else:
        assert proc.returncode == -signal.SIGKILL
    assert len(seen) >= 3, "the run's Ray processes were not seen"
    deadline = time.monotonic() + 120  # a guard; the loop ends when nothing is left
    while _gone(seen, root, rid) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _gone(seen, root, rid) == []
    ports = {port for _, port in sockets}
    assert not (ports & live_cluster.listening_ports())


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


class _FakeServer:
    """A model server answering `generate` after `seconds` (asyncio, no Ray): a slow machine, or a hung one."""

    def __init__(self, seconds: float):
        self.generate = self
        self.seconds = seconds

    def remote(self, request_id, request):
        import asyncio

        async def answer():
            await asyncio.sleep(self.seconds)
            return {"end": time.time(), "image": b""}
        return answer()


def test_profiling_extends_itself_until_every_server_has_its_samples():
    """A server slower than the profile's length gets the time it needs (the run is not lost); one that never
    answers ends profiling at the stated maximum with one line naming each server's count."""
    from types import SimpleNamespace

    from bench.live.cluster import LiveError
    from bench.live.session import PROFILE_MIN_SAMPLES, profile_samples

    specs = [SimpleNamespace(index=0, hardware="fast-cpu"), SimpleNamespace(index=1, hardware="slow-cpu")]
    mix = (SimpleNamespace(model="sd15-tiny", resolution=64, batch=1, steps=(2, 4)),)
    costs = SimpleNamespace(fits=np.ones((1, 2), dtype=bool), peak_bytes=np.zeros((1, 2)))
    samples = profile_samples([_FakeServer(0.01), _FakeServer(0.2)], specs, np.zeros(2), mix, costs, seconds=0.05)
    assert len(samples[1]) >= PROFILE_MIN_SAMPLES and len(samples[0]) > len(samples[1])
    assert all("image" not in r for v in samples.values() for r in v)
    with pytest.raises(LiveError, match=r"profiling gave too few finished requests in 0\.3 s \(each server needs 2\): "
                                        r"fast-cpu \(server 0\) \d+, slow-cpu \(server 1\) 0$"):
        profile_samples([_FakeServer(0.01), _FakeServer(60.0)], specs, np.zeros(2), mix, costs, seconds=0.05, max_seconds=0.3)


@pytest.mark.slow
def test_a_replay_is_saved_before_profiling_and_its_comparison_can_be_redone(ray_cluster, monkeypatch, tmp_path):
    """`bench live --compare-sim` lost a finished 226 s replay when the profiling after it failed (a newcomer's
    report): the bundle is written as soon as the replay ends, and `--replayed` redoes the comparison from it."""
    from typer.testing import CliRunner

    from bench.cli import app
    from bench.experiments.runs.bundles import read_bundle
    from bench.experiments.runs.live_records import replay_live
    from bench.live import session
    from bench.live.bundle import write_live_bundle
    from bench.live.cluster import LiveError

    calls = []
    real = session.profile_samples

    def fails_after_the_replay(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise LiveError("profiling gave too few finished requests (made to fail here)")
        return real(*args, **kwargs)

    monkeypatch.setattr(session, "profile_samples", fails_after_the_replay)
    saved = tmp_path / "replay"
    with pytest.raises(LiveError, match="made to fail here"):
        session.run_live(load_scenario(SCENARIO), "least-loaded", compare_sim=True, profile_s=2.0, time_scale=10.0, warmup=1,
                         on_replayed=lambda r: write_live_bundle(r, saved, command=["test"]), progress=_watch(ray_cluster))
    bundle = read_bundle(saved)
    assert replay_live(bundle) == [] and "sim_to_real" not in bundle.manifest["live"] and bundle.tasks().height == 49
    profiles = Path(__file__).resolve().parents[1] / "profiles" / "data"
    r = CliRunner().invoke(app, ["live", "--replayed", str(saved), "--compare-sim", "--sim-profiles", str(profiles), "--json"])
    assert r.exit_code == 0, r.output
    again = read_bundle(saved)
    assert replay_live(again) == [] and again.manifest["live"]["sim_to_real"]["profile"]["kind"] == "given"
    assert json.loads(r.stdout)["simulated_mean_delay_s"] > 0


def test_replayed_refuses_a_re_signed_manifest_in_one_line(tmp_path):
    """A live bundle's manifest is only hashed, not signed: one rewritten and re-hashed must end in one line."""
    import shutil

    from typer.testing import CliRunner

    from bench.cli import app
    from bench.experiments.runs.bundles import digest

    repo = Path(__file__).resolve().parents[1]
    bundle = tmp_path / "live"
    shutil.copytree(repo / "leaderboard" / "results" / "live-cpu" / "opt-ts", bundle)
    manifest = json.loads((bundle / "manifest.json").read_text())
    manifest["live"]["episode"] = "x"
    manifest["digest"] = digest(manifest)
    (bundle / "manifest.json").write_text(json.dumps(manifest))
    before = (bundle / "manifest.json").read_bytes()
    r = CliRunner().invoke(app, ["live", "--replayed", str(bundle), "--compare-sim", "--sim-profiles", str(repo / "profiles" / "data")])
    assert r.exit_code == 2 and "Traceback" not in r.output and "a live bundle whose manifest holds what bench live writes" in r.stderr
    assert (bundle / "manifest.json").read_bytes() == before
