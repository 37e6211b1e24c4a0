"""The deep-RL schedulers: batched agents equal separate agents, the diffusion chain, the latent memory,
transitions, learning on `tiny`, checkpoints."""

import copy
import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from bench.experiments.runs.bundles import load_checkpoint, write_bundle
from bench.experiments.runs.runner import run, run_episode
from bench.scenarios import load_scenario
from bench.engine.system import System
from schedulers import make
from schedulers.rl.ensemble import EnsembleAdam

# ---- separate agents written plainly, in the reference code's style ------------------------------


class RefMLP(torch.nn.Module):
    def __init__(self, sizes):
        super().__init__()
        self.layers = torch.nn.ModuleList(torch.nn.Linear(a, b) for a, b in zip(sizes[:-1], sizes[1:]))

    def forward(self, x):
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i < len(self.layers) - 1:
                x = F.relu(x)
        return x

    def load_from(self, ensemble, row):
        with torch.no_grad():
            for i, layer in enumerate(self.layers):
                layer.weight.copy_(ensemble.weight(i)[row].T)
                layer.bias.copy_(ensemble.bias(i)[row, 0])


def ref_flat(ref: RefMLP) -> torch.Tensor:
    return torch.cat([torch.cat([l.weight.T.reshape(-1), l.bias]) for l in ref.layers])


class RefDiffusionActor(torch.nn.Module):
    """The textbook DDPM reverse chain with separate x_recon / posterior mean / variance steps."""

    def __init__(self, sizes, steps=5, beta_min=0.1, beta_max=10.0, t_dim=16):
        super().__init__()
        self.net = RefMLP(sizes)
        self.steps, self.t_dim = steps, t_dim
        t = np.arange(1, steps + 1)
        betas = 1 - np.exp(-beta_min / steps - 0.5 * (beta_max - beta_min) * (2 * t - 1) / steps**2)
        alphas = 1 - betas
        ac = np.cumprod(alphas)
        ac_prev = np.concatenate([[1.0], ac[:-1]])
        self.sqrt_recip = np.sqrt(1 / ac)
        self.sqrt_recipm1 = np.sqrt(1 / ac - 1)
        self.c1 = betas * np.sqrt(ac_prev) / (1 - ac)
        self.c2 = (1 - ac_prev) * np.sqrt(alphas) / (1 - ac)
        self.logvar = np.log(np.clip(betas * (1 - ac_prev) / (1 - ac), 1e-20, None))

    def embed(self, i, n):
        half = self.t_dim // 2
        freq = torch.exp(torch.arange(half) * -(math.log(10000) / (half - 1)))
        e = i * freq
        return torch.cat([e.sin(), e.cos()]).expand(n, -1)

    def forward(self, s, x, noise):
        k = 0
        for i in reversed(range(self.steps)):
            eps = F.softmax(self.net(torch.cat([x, self.embed(i, x.shape[0]), s], dim=1)), dim=1)
            x_recon = self.sqrt_recip[i] * x - self.sqrt_recipm1[i] * eps
            mean = self.c1[i] * x_recon + self.c2[i] * x
            if i > 0:
                x = mean + math.exp(0.5 * self.logvar[i]) * noise[k]
                k += 1
            else:
                x = mean
        return F.softmax(x, dim=1)


class RefSACAgent:
    """One agent of the reference's LADSAC / SAC, with its own torch.optim.Adam optimisers."""

    def __init__(self, learner, e, diffusion):
        cfg = learner.config
        a, s, h = learner.n_actions, learner.obs_dim, cfg.hidden
        if diffusion:
            self.actor = RefDiffusionActor([a + cfg.t_dim + s, h, h, a])
            self.actor.net.load_from(learner.actor.net, e)
        else:
            self.actor = RefMLP([s, h, h, a])
            self.actor.load_from(learner.actor.net, e)
        self.diffusion = diffusion
        self.q = [RefMLP([s, h, h, a]) for _ in range(2)]
        self.t = [RefMLP([s, h, h, a]) for _ in range(2)]
        for k in range(2):
            self.q[k].load_from(learner.critics, e + k * learner.n_agents)
            self.t[k].load_from(learner.targets, e + k * learner.n_agents)
        self.log_alpha = torch.tensor(float(learner.log_alpha[e].detach()), requires_grad=True)
        self.opt_actor = torch.optim.Adam(self.actor.parameters(), lr=cfg.actor_lr)
        self.opt_q = [torch.optim.Adam(q.parameters(), lr=cfg.critic_lr) for q in self.q]
        self.opt_alpha = torch.optim.Adam([self.log_alpha], lr=cfg.alpha_lr)
        self.cfg = cfg

    def probs(self, s, x, noise):
        if self.diffusion:
            return self.actor(s, x, noise)
        return F.softmax(self.actor(s), dim=1)

    def update(self, b, noise):
        cfg = self.cfg
        s, a, r, ns = b["obs"], b["action"].view(-1, 1), b["reward"].view(-1, 1), b["next_obs"]
        with torch.no_grad():
            p = self.probs(ns, noise["next_start"], noise["next_chain"])
            ent = -torch.sum(p * torch.log(p + 1e-8), dim=1, keepdim=True)
            v = torch.sum(p * torch.min(self.t[0](ns), self.t[1](ns)), dim=1, keepdim=True) + self.log_alpha.exp() * ent
            y = r + cfg.gamma * v
        for k in range(2):
            loss = torch.mean(F.mse_loss(self.q[k](s).gather(1, a), y))
            self.opt_q[k].zero_grad()
            loss.backward()
            self.opt_q[k].step()
        p = self.probs(s, noise["start"], noise["chain"])
        ent = -torch.sum(p * torch.log(p + 1e-8), dim=1, keepdim=True)
        qmin = torch.min(self.q[0](s), self.q[1](s))
        actor_loss = torch.mean(-self.log_alpha.exp() * ent - torch.sum(p * qmin, dim=1, keepdim=True))
        self.opt_actor.zero_grad()
        actor_loss.backward()
        self.opt_actor.step()
        alpha_loss = torch.mean((ent - cfg.target_entropy).detach() * self.log_alpha.exp())
        self.opt_alpha.zero_grad()
        alpha_loss.backward()
        self.opt_alpha.step()
        with torch.no_grad():
            for q, t in zip(self.q, self.t):
                for pt, pq in zip(t.parameters(), q.parameters()):
                    pt.copy_(pt * (1 - cfg.tau) + pq * cfg.tau)


def _trained_learner(name, episodes=3, params=()):
    system = System.build(load_scenario("tiny"), 0)
    learner = make(name, ["min_buffer=40", *params])
    learner.reset(system.info(), system.streams.scheduler())
    env = system.env()
    for e in range(episodes):
        run_episode(env, learner, system.workload(e, training=True), episode=e, training=True, who=name)
    return system, learner


@pytest.mark.parametrize("name", ["lad-ts", "d2sac-ts", "sac-ts"])
def test_batched_soft_actor_critic_equals_separate_agents(name):
    system, learner = _trained_learner(name)
    assert learner.updates > 0
    e_agents, a = learner.n_agents, learner.n_actions
    diffusion = name != "sac-ts"
    # fresh optimisers on both sides (the separate agents start with fresh torch.optim.Adam)
    learner.actor_opt = EnsembleAdam([learner.actor.net.flat], learner.config.actor_lr)
    learner.critic_opt = EnsembleAdam([learner.critics.flat], learner.config.critic_lr)
    learner.alpha_opt = EnsembleAdam([learner.log_alpha], learner.config.alpha_lr)
    refs = [RefSACAgent(learner, e, diffusion) for e in range(e_agents)]
    active = torch.tensor([True, True, False, True])  # agent 2 sits out: nothing of it may change
    frozen = {k: v.detach().clone() for k, v in learner._tensors().items()}
    g = torch.Generator().manual_seed(5)
    for _ in range(2):  # two steps: checks Adam's per-agent step counts and moments
        sample = learner.replay.sample(16, learner.gen)
        n = sample["obs"].shape[1]
        noise = {
            "start": sample["latent"] if name == "lad-ts" else torch.randn(e_agents, n, a, generator=g),
            "next_start": sample["next_latent"] if name == "lad-ts" else torch.randn(e_agents, n, a, generator=g),
            "chain": torch.randn(4, e_agents, n, a, generator=g),
            "next_chain": torch.randn(4, e_agents, n, a, generator=g),
        }
        learner._update(sample, active, noise=noise)
        for e, ref in enumerate(refs):
            if active[e]:
                ref.update(
                    {k: v[e] for k, v in sample.items()},
                    {"start": noise["start"][e], "next_start": noise["next_start"][e], "chain": noise["chain"][:, e], "next_chain": noise["next_chain"][:, e]},
                )
    for e, ref in enumerate(refs):
        actor_net = ref.actor.net if diffusion else ref.actor
        if active[e]:
            torch.testing.assert_close(learner.actor.net.flat[e], ref_flat(actor_net), rtol=2e-4, atol=2e-6)
            for k in range(2):
                torch.testing.assert_close(learner.critics.flat[e + k * e_agents], ref_flat(ref.q[k]), rtol=2e-4, atol=2e-6)
                torch.testing.assert_close(learner.targets.flat[e + k * e_agents], ref_flat(ref.t[k]), rtol=2e-4, atol=2e-6)
            torch.testing.assert_close(learner.log_alpha[e], ref.log_alpha.detach(), rtol=1e-5, atol=1e-7)
        else:
            for key in ("actor", "critics", "targets"):
                assert torch.equal(learner._tensors()[key][e], frozen[key][e])
            assert learner.log_alpha[e] == frozen["log_alpha"][e]


def test_batched_diffusion_chain_equals_textbook_chain():
    system, learner = _trained_learner("d2sac-ts", episodes=1)
    g = torch.Generator().manual_seed(1)
    obs = torch.rand(4, 7, learner.obs_dim, generator=g) * 10
    x = torch.randn(4, 7, learner.n_actions, generator=g)
    noise = torch.randn(4, 4, 7, learner.n_actions, generator=g)
    with torch.no_grad():
        probs = learner.actor(obs, x, noise=noise)
        for e in range(4):
            ref = RefDiffusionActor([learner.n_actions + 16 + learner.obs_dim, 20, 20, learner.n_actions])
            ref.net.load_from(learner.actor.net, e)
            torch.testing.assert_close(probs[e], ref(obs[e], x[e], noise[:, e]), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(probs.sum(-1), torch.ones(4, 7))
    assert (probs >= 0).all()


def test_batched_dqn_equals_separate_agents():
    system, learner = _trained_learner("dqn-ts", params=["target_update=2"])
    cfg = learner.config
    learner.opt = EnsembleAdam([learner.q.flat], cfg.lr)
    refs = []
    for e in range(4):
        q = RefMLP([learner.obs_dim, 20, 20, 4])
        t = RefMLP([learner.obs_dim, 20, 20, 4])
        q.load_from(learner.q, e)
        t.load_from(learner.target, e)
        refs.append((q, t, torch.optim.Adam(q.parameters(), lr=cfg.lr), int(learner.agent_updates[e])))
    active = torch.tensor([True, False, True, True])
    for _ in range(3):  # crosses a target synchronisation (every 2 updates)
        sample = learner.replay.sample(16, learner.gen)
        learner._update(sample, active)
        for e, (q, t, opt, count) in enumerate(refs):
            if not active[e]:
                continue
            if count % cfg.target_update == 0:
                t.load_state_dict(q.state_dict())
            refs[e] = (q, t, opt, count + 1)
            b = {k: v[e] for k, v in sample.items()}
            with torch.no_grad():
                y = b["reward"].view(-1, 1) + cfg.gamma * t(b["next_obs"]).max(1)[0].view(-1, 1)
            loss = torch.mean(F.mse_loss(q(b["obs"]).gather(1, b["action"].view(-1, 1)), y))
            opt.zero_grad()
            loss.backward()
            opt.step()
    for e, (q, t, _, _) in enumerate(refs):
        torch.testing.assert_close(learner.q.flat[e], ref_flat(q), rtol=2e-4, atol=2e-6)
        torch.testing.assert_close(learner.target.flat[e], ref_flat(t), rtol=2e-4, atol=2e-6)


def test_latent_memory_is_written_back_and_read_next_episode():
    system = System.build(load_scenario("tiny"), 0)
    learner = make("lad-ts")
    learner.reset(system.info(), system.streams.scheduler())
    initial = learner.memory.clone()
    env = system.env()
    wl = system.workload(0, training=True)
    run_episode(env, learner, wl, episode=0, training=True, who="lad")
    after_first = learner.memory.clone()
    visited = torch.zeros(initial.shape[:3], dtype=torch.bool)
    visited[torch.from_numpy(wl.slot.copy()), torch.from_numpy(wl.origin.copy()), torch.from_numpy(wl.index.copy())] = True
    # visited (slot, BS, index) cells now hold probability vectors; the others are untouched Gaussians
    torch.testing.assert_close(after_first[visited].sum(-1), torch.ones(int(visited.sum())))
    assert torch.equal(after_first[~visited], initial[~visited])
    # in the next episode, each decision's chain starts from what the previous episode wrote there
    wl2 = system.workload(1, training=True)
    env.reset(wl2)
    learner.begin_episode(1, True)
    batch = env.batch(env.pending("slot"))
    learner.decide(batch)
    started = learner._slot_parts[0]["latent"]
    expected = after_first[batch.slot, torch.from_numpy(batch.origin.copy()), torch.from_numpy(batch.index.copy())]
    assert torch.equal(started, expected)
    # and the stored start is a copy: the memory has moved on to the new probabilities
    assert not torch.equal(learner.memory[batch.slot, torch.from_numpy(batch.origin.copy()), torch.from_numpy(batch.index.copy())], expected)


def test_transitions_link_each_decision_to_the_agents_next_one():
    system = System.build(load_scenario("tiny"), 0)
    learner = make("sac-ts")
    learner.reset(system.info(), system.streams.scheduler())
    env = system.env()
    wl = system.workload(0, training=True)
    trace, _ = run_episode(env, learner, wl, episode=0, training=True, who="sac")
    cap = system.costs.capacity_gcps
    for b in range(4):
        mine = np.flatnonzero(wl.origin == b)
        stored = int(learner.replay.size[b])
        assert stored == mine.size - 1  # every decision but the episode's last has a successor
        data = {k: v[b, :stored] for k, v in learner.replay.data.items()}
        for j, (i, nxt) in enumerate(zip(mine[:-1], mine[1:])):
            t, t_next = wl.slot[i], wl.slot[nxt]
            assert data["obs"][j, 0] == pytest.approx(wl.size_mbit[i], rel=1e-6)
            assert data["obs"][j, 1] == pytest.approx(wl.work_gcycles[i], rel=1e-6)
            np.testing.assert_allclose(data["obs"][j, 2:].numpy(), trace.backlog_s[t] * cap, rtol=1e-6)
            assert data["next_obs"][j, 0] == pytest.approx(wl.size_mbit[nxt], rel=1e-6)
            # the next observation carries the backlog of the slot where the next decision happens
            np.testing.assert_allclose(data["next_obs"][j, 2:].numpy(), trace.backlog_s[t_next] * cap, rtol=1e-6)
            assert int(data["action"][j]) == trace.actions[i]
            assert data["reward"][j] == pytest.approx(-trace.delay_s[i], rel=1e-6)


def test_short_training_on_tiny_beats_the_untrained_policy():
    scenario = load_scenario("tiny")
    params = ["min_buffer=64", "actor_lr=0.001"]
    untrained = run(scenario, "sac-ts", params=params, seeds=[0], episodes=10, train_episodes=0).summary()["mean_delay_s"]
    trained = run(scenario, "sac-ts", params=params, seeds=[0], episodes=10, train_episodes=60).summary()["mean_delay_s"]
    assert trained < 0.85 * untrained


@pytest.mark.parametrize("name", ["lad-ts", "dqn-ts"])
def test_checkpoint_round_trip_gives_identical_decisions(name, tmp_path):
    scenario = load_scenario("tiny")
    params = ["min_buffer=40"]
    first = run(scenario, name, params=params, seeds=[0, 1], episodes=3, train_episodes=4)
    out = write_bundle(first, tmp_path / "b")
    ckpt = load_checkpoint(out)
    assert sorted(ckpt.states) == [0, 1]
    again = run(scenario, name, params=params, seeds=[0, 1], episodes=3, checkpoint=ckpt)
    assert again.train_episodes == 4 and len(again.per_seed[0].training) == 4  # trained elsewhere, reported
    for a, b in zip(first.per_seed, again.per_seed):
        for x, y in zip(a.actions, b.actions):
            assert np.array_equal(x, y)
    s1, s2 = first.summary(), again.summary()
    assert s1["mean_delay_s"] == s2["mean_delay_s"]


def test_checkpoint_mismatches_are_refused(tmp_path):
    from bench.core.errors import BundleError

    scenario = load_scenario("tiny")
    out = write_bundle(run(scenario, "sac-ts", seeds=[0], episodes=1, train_episodes=1), tmp_path / "b")
    ckpt = load_checkpoint(out)
    with pytest.raises(BundleError, match="holds a 'sac-ts' policy"):
        run(scenario, "dqn-ts", seeds=[0], episodes=1, checkpoint=ckpt)
    with pytest.raises(BundleError, match="no state for seed"):
        run(scenario, "sac-ts", seeds=[3], episodes=1, checkpoint=ckpt)
    with pytest.raises(BundleError, match="scenario hash"):
        run(load_scenario("tiny", ["episode.slots=5"]), "sac-ts", seeds=[0], episodes=1, checkpoint=ckpt)


def test_a_checkpoint_brings_its_hyper_parameters_and_refuses_other_ones(tmp_path):
    """A policy trained with denoising_steps=10 loads into a 10-step actor without being told (a newcomer's report:
    evaluating a checkpoint asked for its parameters again), and never into a 5-step one (review defect)."""
    from bench.core.errors import BundleError

    scenario = load_scenario("tiny")
    out = write_bundle(run(scenario, "lad-ts", params=["denoising_steps=10"], seeds=[0], episodes=1, train_episodes=1), tmp_path / "b")
    ckpt = load_checkpoint(out)
    with pytest.raises(BundleError, match="trained with denoising_steps = 10; this run has 5"):
        run(scenario, "lad-ts", params=["denoising_steps=5"], seeds=[0], episodes=1, checkpoint=ckpt)
    for params in ([], ["denoising_steps=10"], {"denoising_steps": 10}):
        again = run(scenario, "lad-ts", params=params, seeds=[0], episodes=1, checkpoint=ckpt)
        assert again.train_episodes == 1 and again.scheduler_params["denoising_steps"] == 10


@pytest.mark.parametrize("name", ["lad-ts", "sac-ts", "dqn-ts"])
def test_masked_sampling_never_returns_a_forbidden_server(name, monkeypatch):
    """Review defect: with the uniform draw exactly 0, or every allowed probability underflowed, the samplers
    returned server 0 even where the mask forbids it."""
    system = System.build(load_scenario("tiny"), 0)
    sched = make(name)
    sched.reset(system.info(), system.streams.scheduler())
    sched.training = True
    monkeypatch.setattr(torch, "rand", lambda *shape, generator=None, device=None: torch.zeros(*shape))
    mask = torch.tensor([[0.0, 1.0, 1.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    scores = torch.tensor([[0.5, 0.2, 0.3], [0.9, 0.0, 0.1], [1.0, 0.0, 0.0]])  # rows 2-3: allowed probabilities are 0
    if name == "dqn-ts":
        sched.config = type(sched.config)(**{**sched.config.__dict__, "epsilon": 1.0})  # always explore
    actions = sched._choose(scores, mask)
    assert mask[torch.arange(3), actions].all(), actions.tolist()
    assert actions.tolist()[1:] == [1, 2]


def test_learners_pass_conformance():
    from bench.experiments.runs.conformance import check

    for name in ("lad-ts", "dqn-ts"):
        report = check(name, ["min_buffer=20"])
        failed = [c for c in report if not c.passed and not c.skipped]
        assert not failed, (name, failed)
        assert {c.name: c for c in report}["learning hooks"].passed


def test_training_summary_records_curve_convergence_and_updates():
    result = run(load_scenario("tiny"), "dqn-ts", params=["min_buffer=40"], seeds=[0], episodes=2, train_episodes=12)
    s = result.summary()
    per = s["training"]["per_seed"][0]
    assert per["updates"] > 0 and per["update_rounds"] > 0
    assert len(result.per_seed[0].training) == 12
    assert per["converged_episode"] is None or 10 <= per["converged_episode"] <= 12


def test_config_is_validated():
    from bench.core.errors import ConfigError

    with pytest.raises(ConfigError, match="lad-ts.device = 'tpu'"):
        make("lad-ts", ["device=tpu"])
    with pytest.raises(ConfigError, match="batch_size"):
        make("sac-ts", ["batch_size=5000"])
    with pytest.raises(ConfigError, match="eval_policy"):
        make("dqn-ts", ["eval_policy=best"])
    assert make("lad-ts").config.denoising_steps == 5
    assert copy.deepcopy(make("lad-ts").config) == make("lad-ts").config


OBVIOUS = ["servers.count=2", "servers.capacity_gcps=[50, 5]", "servers.rate_mbps=[450, 450]", "tasks.arrivals_per_bs=[1, 3]", "episode.slots=8"]


@pytest.mark.slow
@pytest.mark.parametrize("name", ["lad-ts", "d2sac-ts", "sac-ts", "dqn-ts"])
def test_learners_find_an_obvious_policy(name):
    """Two servers, one ten times faster and never saturated: the best policy sends every task to it.

    A sanity check that each learner can learn at all (a learner that failed to beat simple baselines
    on `paper` was first checked here): after 150 short episodes each sends most tasks to the fast
    server and more than halves the random policy's delay (opt-ts: 0.089 s, random: 0.478 s here).
    """
    scenario = load_scenario("tiny", OBVIOUS)
    result = run(scenario, name, params=["min_buffer=50", "batch_size=32"], seeds=[0], episodes=10, train_episodes=150)
    actions = np.concatenate(result.per_seed[0].actions)
    random_delay = run(scenario, "random", seeds=[0], episodes=10).summary()["mean_delay_s"]
    assert (actions == 0).mean() > 0.75
    assert result.summary()["mean_delay_s"] < 0.5 * random_delay


def test_evaluation_from_a_bundle_checkpoint_carries_its_training(tmp_path):
    scenario = load_scenario("tiny")
    first = run(scenario, "sac-ts", params=["min_buffer=40"], seeds=[0], episodes=3, train_episodes=5)
    source = write_bundle(first, tmp_path / "trained")
    again = run(scenario, "sac-ts", params=["min_buffer=40"], seeds=[0], episodes=2, checkpoint=load_checkpoint(source))
    assert again.train_episodes == 5
    assert [r["mean_delay_s"] for r in again.per_seed[0].training] == [r["mean_delay_s"] for r in first.per_seed[0].training]
    assert again.per_seed[0].stats["updates"] == first.per_seed[0].stats["updates"]
    # the first two evaluation episodes are the same decisions as the original run's
    assert all(np.array_equal(a, b) for a, b in zip(again.per_seed[0].actions, first.per_seed[0].actions[:2]))
    out = write_bundle(again, tmp_path / "evaluated", checkpoint=False)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["protocol"]["train_episodes"] == 5 and manifest["trained_from_checkpoint"]["sha256"]
    assert not (out / "checkpoint.pt").exists() and (out / "training.parquet").is_file()
