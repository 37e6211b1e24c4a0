"""LAD-TS, D2SAC-TS and SAC-TS: discrete soft actor-critic with three actors.

- `lad-ts`: the diffusion actor whose chain starts from the latent action memory: the action
  probabilities the agent produced for the same (slot, base station, arrival index) in the previous
  episode (Gaussian before the first visit). The memory is part of the policy: it is read and written
  at every decision, in training and in evaluation, and it is saved in checkpoints.
- `d2sac-ts`: the same agent with the chain started from fresh N(0, I) noise at every decision.
- `sac-ts`: an MLP actor (obs -> hidden -> hidden -> A, softmax).

The update, per agent, on a sampled batch (as in the reference):
  target  y = r + gamma * sum_a' pi(a'|s') (min(Q1', Q2')(s', a') + alpha H(pi(.|s')))   (no terminal mask)
  critics minimise mean (Q_k(s, a) - y)^2, k = 1, 2, then
  actor   minimises mean(-alpha H(pi(.|s)) - sum_a pi(a|s) min(Q1, Q2)(s, a)) with the updated critics,
  alpha   log-parameterised, minimises mean((H - target_entropy) alpha),
  targets Q' <- (1 - tau) Q' + tau Q.
The default target entropy -1 (the paper's) can never be reached by a categorical policy, whose
entropy is >= 0, so alpha only shrinks; it is configurable.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from bench.core.config import option
from schedulers.interface import Batch
from schedulers.rl.diffusion import DiffusionActor, MLPActor
from schedulers.rl.ensemble import EnsembleAdam, EnsembleMLP, backward, soft_update
from schedulers.rl.learner import DeepLearner, LearnerConfig, entropy


@dataclass(frozen=True)
class SACConfig(LearnerConfig):
    actor_lr: float = option(1e-4, help="Adam learning rate of the actor", gt=0)
    critic_lr: float = option(1e-3, help="Adam learning rate of the two critics", gt=0)
    alpha: float = option(0.05, help="initial entropy temperature", gt=0)
    alpha_lr: float = option(3e-4, help="Adam learning rate of log(alpha)", ge=0)
    target_entropy: float = option(-1.0, help="target entropy of the temperature update (the paper's -1 only shrinks alpha)")
    tau: float = option(0.005, help="soft update rate of the target critics", ge=0, le=1)


@dataclass(frozen=True)
class DiffusionConfig(SACConfig):
    denoising_steps: int = option(5, help="denoising steps I of the actor's chain", ge=1)
    beta_min: float = option(0.1, help="VP schedule beta_min", gt=0)
    beta_max: float = option(10.0, help="VP schedule beta_max", gt=0)
    t_dim: int = option(16, help="size of the sinusoidal step embedding (even, >= 4)", ge=4)


class _SoftActorCritic(DeepLearner):
    Config = SACConfig

    def _make_actor(self) -> torch.nn.Module:
        raise NotImplementedError

    def _build(self) -> None:
        cfg, e, a, s = self.config, self.n_agents, self.n_actions, self.obs_dim
        self.actor = self._make_actor()
        # the twin critics are one ensemble of 2E: rows 0..E-1 are Q1 of each agent, rows E..2E-1 are Q2
        self.critics = EnsembleMLP(2 * e, [s, cfg.hidden, cfg.hidden, a], self.gen, self.device)
        self.targets = EnsembleMLP(2 * e, [s, cfg.hidden, cfg.hidden, a], self.gen, self.device)
        with torch.no_grad():
            self.targets.flat.copy_(self.critics.flat)
        self.log_alpha = torch.full((e,), math.log(cfg.alpha), device=self.device, requires_grad=True)
        self.actor_opt = EnsembleAdam([self.actor.net.flat], cfg.actor_lr)
        self.critic_opt = EnsembleAdam([self.critics.flat], cfg.critic_lr)
        self.alpha_opt = EnsembleAdam([self.log_alpha], cfg.alpha_lr)

    def _twin(self, net: EnsembleMLP, obs2: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Q1 and Q2 of every agent; `obs2` is the observations twice over (torch.cat([obs, obs]), made once per update)."""
        q = net(obs2)
        return q[: self.n_agents], q[self.n_agents :]

    def _scores(self, obs: torch.Tensor, start: torch.Tensor | None) -> torch.Tensor:
        return self.actor(obs, start, generator=self.gen)

    def _update_starts(self, sample: dict[str, torch.Tensor]) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """Chain starts for the sampled states and next states."""
        return None, None

    def _update(self, sample: dict[str, torch.Tensor], active: torch.Tensor, noise: dict[str, torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
        """One soft actor-critic step for every active agent; `noise` fixes the actor's draws (tests)."""
        cfg = self.config
        obs, act, rew, nobs = sample["obs"], sample["action"], sample["reward"], sample["next_obs"]
        start, next_start = self._update_starts(sample)
        if noise is not None:
            start, next_start = noise.get("start", start), noise.get("next_start", next_start)
        mask = active.to(obs.dtype)
        both = torch.cat([active, active])
        alpha = self.log_alpha.detach().exp()
        obs2, nobs2 = torch.cat([obs, obs]), torch.cat([nobs, nobs])

        with torch.no_grad():
            p_next = self.actor(nobs, next_start, noise=None if noise is None else noise.get("next_chain"), generator=self.gen)
            t1, t2 = self._twin(self.targets, nobs2)
            v_next = (p_next * torch.minimum(t1, t2)).sum(-1) + alpha[:, None] * entropy(p_next)
            y = rew + cfg.gamma * v_next

        q1, q2 = self._twin(self.critics, obs2)
        q1a = q1.gather(-1, act[..., None]).squeeze(-1)
        q2a = q2.gather(-1, act[..., None]).squeeze(-1)
        critic_loss = ((((q1a - y) ** 2).mean(1) + ((q2a - y) ** 2).mean(1)) * mask).sum()
        self.critic_opt.zero_grad()
        backward(critic_loss)
        self.critic_opt.step(both)

        probs = self.actor(obs, start, noise=None if noise is None else noise.get("chain"), generator=self.gen)
        ent = entropy(probs)
        with torch.no_grad():
            c1, c2 = self._twin(self.critics, obs2)
            q_min = torch.minimum(c1, c2)
        actor_loss = ((-alpha[:, None] * ent - (probs * q_min).sum(-1)).mean(1) * mask).sum()
        self.actor_opt.zero_grad()
        backward(actor_loss)
        self.actor_opt.step(active)

        alpha_loss = (((ent.detach() - cfg.target_entropy).mean(1)) * self.log_alpha.exp() * mask).sum()
        self.alpha_opt.zero_grad()
        backward(alpha_loss)
        self.alpha_opt.step(active)

        soft_update(self.targets.flat, self.critics.flat, cfg.tau, both)
        return {"critic_loss": critic_loss.detach(), "actor_loss": actor_loss.detach(), "entropy": ent.detach().mean(1)}

    def _tensors(self) -> dict[str, torch.Tensor]:
        return {"actor": self.actor.net.flat, "critics": self.critics.flat, "targets": self.targets.flat, "log_alpha": self.log_alpha}


class SACTS(_SoftActorCritic):
    name = "sac-ts"
    summary = "discrete soft actor-critic, one MLP actor per base station (paper baseline)"

    def _make_actor(self) -> torch.nn.Module:
        return MLPActor(self.n_agents, self.obs_dim, self.n_actions, hidden=self.config.hidden, generator=self.gen, device=self.device)


class D2SACTS(_SoftActorCritic):
    name = "d2sac-ts"
    summary = "diffusion soft actor-critic: the chain starts from fresh Gaussian noise (paper baseline)"
    Config = DiffusionConfig

    def _make_actor(self) -> torch.nn.Module:
        c = self.config
        return DiffusionActor(
            self.n_agents, self.obs_dim, self.n_actions, hidden=c.hidden, steps=c.denoising_steps,
            beta_min=c.beta_min, beta_max=c.beta_max, t_dim=c.t_dim, generator=self.gen, device=self.device,
        )

    def _chain_start(self, batch: Batch, k: int) -> torch.Tensor:
        return torch.randn(self.n_agents, k, self.n_actions, generator=self.gen, device=self.device)

    def _update_starts(self, sample):
        shape = sample["obs"].shape[:2] + (self.n_actions,)
        return (torch.randn(shape, generator=self.gen, device=self.device), torch.randn(shape, generator=self.gen, device=self.device))


class LADTS(D2SACTS):
    name = "lad-ts"
    summary = "latent action diffusion: the chain starts from last episode's action probabilities (the paper's method)"
    uses_latent = True

    def _build(self) -> None:
        super()._build()
        info = self.info
        # memory[t, b, n]: the start of the chain for the n-th task of base station b in slot t (in the event time
        # model: window t); ranks beyond max_arrivals_per_bs share the last entry
        self.memory = torch.randn(info.n_slots, self.n_agents, info.max_arrivals_per_bs, self.n_actions, generator=self.gen, device=self.device)

    def _chain_start(self, batch: Batch, k: int) -> torch.Tensor:
        cap = self.memory.shape[2]
        if k <= cap:
            return self.memory[batch.slot, :, :k]
        # more arrivals at one base station in one window than the memory holds (event time model, a burst):
        # ranks beyond the last share its entry
        return self.memory[batch.slot][:, torch.clamp(torch.arange(k, device=self.device), max=cap - 1)]

    def _after_decide(self, batch: Batch, agent: torch.Tensor, pos: torch.Tensor, scores: torch.Tensor) -> None:
        self.memory[batch.slot, agent, torch.clamp(pos, max=self.memory.shape[2] - 1)] = scores

    def _update_starts(self, sample):
        return sample["latent"], sample["next_latent"]

    def _tensors(self) -> dict[str, torch.Tensor]:
        return {**super()._tensors(), "memory": self.memory}
