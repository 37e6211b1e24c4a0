"""What the four deep-RL schedulers share: one agent per base station, batched across agents.

Agent b decides the tasks that arrive at base station b. Its observation of task n is the paper's
`[d, w, Q_t[0..B-1]]` (input Mbit, work Gcycles, slot-start backlog in Gcycles), or with `observation = "extended"`
that and, per server, the task's expected compute time, whether its model is resident and the queued requests. A slot's decisions
of all agents are computed at once: tasks are placed on an (agents x arrival index) grid, each agent's
network runs on its own row (stacked parameters), and the chosen servers are read back.

Transitions. An agent's transition links one of its decisions to its next one: (s, a, r = -delay, s'),
where s' is the observation of the agent's next task. Within a slot that is the next task of the same
base station; for the last task of a slot it is the agent's first task of its next slot with tasks,
whose observation (with the next slot's backlog) exists only then. Such a transition is completed at
that later slot; the last one of an episode is dropped (there is no next decision). The reference code
instead read the next slot's backlog before computing it, and stored views of the latent memory that
later writes overwrote; here every stored value is a copy.

Serving scenarios whose request classes offer several variants (docs/serving.md): the action is the pair (server,
variant), index variant x B + server, over the variants that meet the scenario's quality floor (all offered ones for
a request none of whose variants does) and that the server runs; the reward stays -delay, so a learner trades
quality only within the floor. Learners never hold requests.

Learning. After each slot with tasks, every agent whose buffer holds more than `min_buffer`
transitions does one update on `batch_size` transitions sampled from its own buffer (the reference
updated agent b right after base station b's tasks; agents are independent and decisions depend only
on the slot-start backlog, so updating all of them after the slot is the same computation).
No learning happens while `training` is False; decisions are then sampled from the policy (or greedy
with `eval_policy = "greedy"`).

All randomness (initial weights, diffusion noise, replay sampling, action sampling) comes from one
torch generator seeded from the scheduler's stream; the torch thread count is fixed by `threads`, so
results do not depend on the machine's core count.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch

from bench.core.config import option
from bench.core.errors import ConfigError
from schedulers.interface import Batch, Decision, EnvInfo, Scheduler, SlotFeedback
from schedulers.rl.replay import EnsembleReplay


@dataclass(frozen=True)
class LearnerConfig:
    hidden: int = option(20, help="hidden units of every network's two hidden layers", ge=1)
    gamma: float = option(0.95, help="reward discount", ge=0, le=1)
    buffer_size: int = option(1000, help="replay capacity per agent (FIFO)", ge=1)
    min_buffer: int = option(300, help="an agent starts learning once its buffer holds more than this many transitions", ge=0)
    batch_size: int = option(64, help="transitions per agent per update", ge=1)
    eval_policy: Literal["sample", "greedy"] = option("sample", help="evaluation decisions: sampled from the policy (as in the paper) or its most likely server")
    observation: Literal["paper", "extended"] = option(
        "paper", help="what an agent sees of a task: the paper's [d, w, backlog] or, extended, also per server the backlog plus the "
                      "task's expected compute time there (its model's load included where not resident), whether its model is "
                      "resident, and the requests queued there (observation v2)")
    threads: int = option(1, help="torch CPU threads (fixed so results do not depend on the machine)", ge=1)
    device: str = option("cpu", help="torch device: cpu, cuda or cuda:N")
    flush_denormal: bool = option(True, help="flush subnormal floats to zero on the CPU (much faster; process-wide torch setting)")

    def __post_init__(self) -> None:
        if self.device != "cpu" and not (self.device == "cuda" or self.device.startswith("cuda:")):
            raise ConfigError("device", self.device, "'cpu', 'cuda' or 'cuda:N'")
        if self.batch_size > self.buffer_size:
            raise ConfigError("batch_size", self.batch_size, f"at most buffer_size = {self.buffer_size}")


class DeepLearner(Scheduler):
    """Base of LAD-TS, D2SAC-TS, SAC-TS and DQN-TS; subclasses build networks and define act/update."""

    batch_unit = "slot"
    event_batches = "window"  # the paper's agents observe the queues at the start of each slot (event model: window)
    learns = True
    Config = LearnerConfig
    uses_latent = False  # LAD-TS stores the chain's start point with each decision

    # ---- set-up --------------------------------------------------------------------------------
    def reset(self, info: EnvInfo, rng: np.random.Generator) -> None:
        super().reset(info, rng)
        cfg = self.config
        if cfg.device.startswith("cuda") and not torch.cuda.is_available():
            raise ConfigError("device", cfg.device, "'cpu' (no CUDA device is available here)")
        torch.set_num_threads(cfg.threads)
        # Subnormal floats (tiny probabilities deep in the chain) make CPU arithmetic several times
        # slower; flushing them to zero changes results by less than 1e-38 per value.
        torch.set_flush_denormal(cfg.flush_denormal)
        self.device = torch.device(cfg.device)
        self.gen = torch.Generator(device=self.device)
        self.gen.manual_seed(int(rng.integers(2**62)))
        self.n_agents = info.n_servers
        self.n_variants = len(info.variant_names) if info.chooses_variants else 1  # the product action (module docstring)
        self._floor_ok = info.floor_ok() if info.chooses_variants else None
        self.n_actions = info.n_servers * self.n_variants
        self.obs_dim = info.n_servers + 2 if cfg.observation == "paper" else 4 * info.n_servers + 2
        self._build()
        fields: dict[str, tuple[tuple[int, ...], torch.dtype]] = {
            "obs": ((self.obs_dim,), torch.float32),
            "next_obs": ((self.obs_dim,), torch.float32),
            "action": ((), torch.int64),
            "reward": ((), torch.float32),
        }
        if self.uses_latent:
            fields["latent"] = ((self.n_actions,), torch.float32)
            fields["next_latent"] = ((self.n_actions,), torch.float32)
        self.replay = EnsembleReplay(self.n_agents, cfg.buffer_size, fields, self.device)
        e = self.n_agents
        self._pending = {name: torch.zeros((e, *shape), dtype=dtype, device=self.device) for name, (shape, dtype) in fields.items() if not name.startswith("next_")}
        self._has_pending = np.zeros(e, dtype=bool)
        self._slot_parts: list[dict[str, Any]] = []
        self.training = False
        self.updates = 0  # agent-updates (one agent, one gradient step on each of its networks)
        self.update_rounds = 0  # slots in which at least one agent updated

    def _build(self) -> None:
        raise NotImplementedError

    # ---- the subclass's policy -------------------------------------------------------------------
    def _chain_start(self, batch: Batch, k: int) -> torch.Tensor | None:
        """Start of the actor's chain for the (agents x k) grid, or None when the actor has no chain."""
        return None

    def _scores(self, obs: torch.Tensor, start: torch.Tensor | None) -> torch.Tensor:
        """(E, K, A) action probabilities (or Q values for DQN) for the grid of observations."""
        raise NotImplementedError

    def _choose(self, scores: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        """Actions (n,) from per-task scores (n, A); default: sample from probabilities, or greedy."""
        probs = scores if mask is None else scores * mask
        if self.config.eval_policy == "greedy" and not self.training:
            return probs.argmax(dim=-1) if mask is None else probs.masked_fill(mask <= 0, float("-inf")).argmax(dim=-1)
        return sample_categorical(probs, mask, self.gen)

    def _after_decide(self, batch: Batch, agent: torch.Tensor, pos: torch.Tensor, scores: torch.Tensor) -> None:
        """Hook after the slot's decisions (LAD-TS writes its memory here)."""

    def _update(self, sample: dict[str, torch.Tensor], active: torch.Tensor) -> None:
        raise NotImplementedError

    # ---- decisions -----------------------------------------------------------------------------
    def observation(self, batch: Batch) -> torch.Tensor:
        """The paper's observation [d, w, Q_t in Gcycles] of every task, (n, B + 2) float32; extended: then per server
        log(1 + backlog + expected compute, s) (the model's expected load included where it is not resident; a server
        the task may not use: as 10^4 s), resident (0/1) and log(1 + queued requests), (n, 4B + 2)."""
        obs = np.empty((len(batch), self.obs_dim), dtype=np.float32)
        obs[:, 0] = batch.size_mbit
        obs[:, 1] = batch.work_gcycles
        b = batch.n_servers
        obs[:, 2 : 2 + b] = (batch.backlog_s * batch.capacity_gcps)[None, :]
        if self.config.observation == "extended":
            finish = batch.backlog_s[None, :] + batch.compute_s  # the expected wait and compute there, the load included
            finish = np.where(batch.mask, finish, 1e4) if batch.has_mask else finish
            obs[:, 2 + b : 2 + 2 * b] = np.log1p(np.minimum(finish, 1e4))
            obs[:, 2 + 2 * b : 2 + 3 * b] = batch.resident
            obs[:, 2 + 3 * b :] = np.log1p(batch.waiting + batch.running)[None, :]
        return torch.from_numpy(obs).to(self.device)

    @torch.no_grad()
    def decide(self, batch: Batch) -> np.ndarray:
        obs = self.observation(batch)
        agent = torch.from_numpy(batch.origin.copy()).to(self.device)
        pos = torch.from_numpy(batch.index.copy()).to(self.device)
        k = int(batch.index.max()) + 1
        grid = torch.zeros(self.n_agents, k, self.obs_dim, device=self.device)
        grid[agent, pos] = obs
        start = self._chain_start(batch, k)
        used = start[agent, pos].clone() if self.uses_latent else None  # copied before the memory is rewritten
        scores = self._scores(grid, start)[agent, pos]
        if self.n_variants > 1:
            mask = torch.tensor(self._product_mask(batch), dtype=scores.dtype, device=self.device)
        else:
            mask = torch.tensor(batch.mask, dtype=scores.dtype, device=self.device) if batch.has_mask else None
        actions = self._choose(scores, mask)
        self._after_decide(batch, agent, pos, scores)
        if self.training:
            part = {"agent": batch.origin.copy(), "obs": obs, "action": actions.clone()}
            if self.uses_latent:
                part["latent"] = used
            self._slot_parts.append(part)
        chosen = actions.cpu().numpy()
        if self.n_variants > 1:
            b = batch.n_servers
            return Decision(server=chosen % b, variant=chosen // b)
        return chosen

    def _product_mask(self, batch: Batch) -> np.ndarray:
        """(n, V x B): the (variant, server) pairs allowed, index variant x B + server (module docstring)."""
        runs = batch.variant_ok[:, :, None] & np.isfinite(batch.variant_service_s)  # (n, V, B)
        good = runs & self._floor_ok[None, :, None]
        some = good.reshape(len(batch), -1).any(axis=1)
        return np.where(some[:, None, None], good, runs).reshape(len(batch), -1)

    # ---- learning ------------------------------------------------------------------------------
    def begin_episode(self, episode: int, training: bool) -> None:
        self.training = training
        self._slot_parts = []
        self._has_pending[:] = False

    def observe(self, feedback: SlotFeedback) -> None:
        if not self.training:
            return
        parts, self._slot_parts = self._slot_parts, []
        agent = np.concatenate([p["agent"] for p in parts])
        if not np.array_equal(agent, feedback.origin):
            raise RuntimeError("observe() got a slot that does not match the decisions made (decision order broken)")
        now = {name: torch.cat([p[name] for p in parts]) for name in parts[0] if name != "agent"}
        now["reward"] = -torch.tensor(feedback.delay_s, dtype=torch.float32, device=self.device)
        # each agent's decisions in its own order (the slotted model gives them agent by agent already; in the event
        # model a window's arrivals interleave base stations): a stable sort keeps each agent's order
        by_agent = np.argsort(agent, kind="stable")
        if np.any(by_agent[1:] < by_agent[:-1]):
            agent = agent[by_agent]
            index = torch.as_tensor(by_agent, device=self.device)
            now = {name: v[index] for name, v in now.items()}
        state_fields = [f for f in ("obs", "latent") if f in now]

        first = np.flatnonzero(np.r_[True, agent[1:] != agent[:-1]])
        last = np.flatnonzero(np.r_[agent[1:] != agent[:-1], True])
        inner = np.flatnonzero(agent[:-1] == agent[1:])  # decision i whose next decision is i + 1
        completing = first[self._has_pending[agent[first]]]
        rows: dict[str, list[torch.Tensor]] = {name: [] for name in self.replay.fields}
        owners = []
        if completing.size:
            who = torch.as_tensor(agent[completing], device=self.device)
            nxt = torch.as_tensor(completing, device=self.device)
            for name in self._pending:
                rows[name].append(self._pending[name][who])
            for f in state_fields:
                rows["next_" + f].append(now[f][nxt])
            owners.append(agent[completing])
        if inner.size:
            cur = torch.as_tensor(inner, device=self.device)
            for name in self._pending:
                rows[name].append(now[name][cur])
            for f in state_fields:
                rows["next_" + f].append(now[f][cur + 1])
            owners.append(agent[inner])
        if owners:
            self.replay.add(np.concatenate(owners), {name: torch.cat(v) for name, v in rows.items()})
        # the last decision of each agent in this slot waits for the agent's next decision
        lst = torch.as_tensor(last, device=self.device)
        who = torch.as_tensor(agent[last], device=self.device)
        for name in self._pending:
            self._pending[name][who] = now[name][lst]
        self._has_pending[agent[last]] = True

        active_np = self.replay.size > self.config.min_buffer
        if active_np.any():
            active = torch.as_tensor(active_np, device=self.device)
            self._update(self.replay.sample(self.config.batch_size, self.gen), active)
            self.updates += int(active_np.sum())
            self.update_rounds += 1

    def end_episode(self) -> None:
        self._slot_parts = []
        self._has_pending[:] = False

    def stats(self) -> dict[str, float]:
        return {"updates": self.updates, "update_rounds": self.update_rounds}

    # ---- checkpoints -----------------------------------------------------------------------------
    def _tensors(self) -> dict[str, torch.Tensor]:
        """Every tensor that decisions (and inspection) need, by name; subclasses extend it."""
        return {}

    def state_dict(self) -> dict[str, Any]:
        """Networks, entropy temperature, latent memory and the random generator: enough to reproduce
        every later decision. Replay buffers and optimiser moments are not included (a checkpoint
        evaluates a policy; it does not resume training)."""
        return {
            "tensors": {k: v.detach().cpu().clone() for k, v in self._tensors().items()},
            "generator": self.gen.get_state().clone(),
            "updates": self.updates,
            "update_rounds": self.update_rounds,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        mine = self._tensors()
        missing = set(mine) - set(state["tensors"])
        if missing:
            raise ConfigError("checkpoint", sorted(missing), f"a state with tensors {sorted(mine)}")
        with torch.no_grad():
            for k, v in mine.items():
                if v.shape != state["tensors"][k].shape:
                    raise ConfigError(f"checkpoint tensor {k}", tuple(state["tensors"][k].shape), f"shape {tuple(v.shape)} (another scenario or network size?)")
                v.copy_(state["tensors"][k].to(v.device))
        self.gen.set_state(state["generator"])
        self.updates = int(state.get("updates", 0))
        self.update_rounds = int(state.get("update_rounds", 0))


def sample_categorical(weights: torch.Tensor, mask: torch.Tensor | None, gen: torch.Generator) -> torch.Tensor:
    """One index per row drawn with probability proportional to `weights` (n, A), never a masked-out one.

    Inverse-CDF sampling with u uniform in [0, total): the index is the first whose cumulative weight
    exceeds u (so u = 0 cannot select a leading zero weight). A row whose allowed weights all underflow to
    zero (or are not finite) falls back to a uniform draw over its allowed indices; rounding that puts u at
    the total is clamped to the row's last index of positive weight.
    """
    allowed = torch.ones_like(weights, dtype=torch.bool) if mask is None else mask > 0
    w = torch.where(allowed, weights, torch.zeros_like(weights))
    total = w.sum(dim=-1, keepdim=True)
    bad = ~(torch.isfinite(total) & (total > 0))
    if bad.any():  # every allowed weight underflowed: uniform over the allowed indices
        w = torch.where(bad, allowed.to(w.dtype), w)
    cdf = torch.cumsum(w, dim=-1)
    u = torch.rand(w.shape[0], 1, generator=gen, device=w.device) * cdf[:, -1:]
    index = torch.searchsorted(cdf, u, right=True).squeeze(1)
    positive = w > 0
    last = w.shape[-1] - 1 - positive.flip(-1).to(torch.int8).argmax(dim=-1)
    return torch.minimum(index, last)


def entropy(probs: torch.Tensor) -> torch.Tensor:
    """-sum p log(p + 1e-8) over the last axis (the reference's guard against log 0)."""
    return -(probs * torch.log(probs + 1e-8)).sum(dim=-1)


__all__ = ["DeepLearner", "LearnerConfig", "entropy", "sample_categorical"]
