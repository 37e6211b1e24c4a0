"""DQN-TS: one deep Q-network per base station (the paper's DQN baseline), batched across agents.

Per agent, as in the reference: epsilon-greedy decisions (epsilon = 0.01), target
y = r + gamma * max_a' Q'(s', a') (no terminal mask), mean squared error, Adam, and the target network
copied from the online network before every `target_update`-th update (the first update included).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from bench.core.config import option
from schedulers.rl.ensemble import EnsembleAdam, EnsembleMLP, backward
from schedulers.rl.learner import DeepLearner, LearnerConfig, sample_categorical


@dataclass(frozen=True)
class DQNConfig(LearnerConfig):
    lr: float = option(1e-4, help="Adam learning rate", gt=0)
    epsilon: float = option(0.01, help="probability of a uniformly random allowed server (training and sampled evaluation)", ge=0, le=1)
    target_update: int = option(200, help="copy the online network to the target every this many updates", ge=1)


class DQNTS(DeepLearner):
    name = "dqn-ts"
    summary = "deep Q-network per base station, epsilon-greedy (paper baseline)"
    Config = DQNConfig

    def _build(self) -> None:
        cfg, e, a, s = self.config, self.n_agents, self.n_actions, self.obs_dim
        self.q = EnsembleMLP(e, [s, cfg.hidden, cfg.hidden, a], self.gen, self.device)
        self.target = EnsembleMLP(e, [s, cfg.hidden, cfg.hidden, a], self.gen, self.device)
        with torch.no_grad():
            self.target.flat.copy_(self.q.flat)
        self.opt = EnsembleAdam([self.q.flat], cfg.lr)
        self.agent_updates = torch.zeros(e, dtype=torch.int64, device=self.device)

    def _scores(self, obs: torch.Tensor, start: torch.Tensor | None) -> torch.Tensor:
        return self.q(obs)

    def _choose(self, scores: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        n = scores.shape[0]
        allowed = torch.ones_like(scores) if mask is None else mask
        greedy = scores.masked_fill(allowed <= 0, float("-inf")).argmax(dim=-1)
        if self.config.eval_policy == "greedy" and not self.training:
            return greedy
        explore = torch.rand(n, generator=self.gen, device=scores.device) < self.config.epsilon
        uniform = sample_categorical(allowed, mask, self.gen)
        return torch.where(explore, uniform, greedy)

    def _update(self, sample: dict[str, torch.Tensor], active: torch.Tensor) -> dict[str, torch.Tensor]:
        cfg = self.config
        with torch.no_grad():
            sync = active & (self.agent_updates % cfg.target_update == 0)
            self.target.flat.copy_(torch.where(sync[:, None], self.q.flat, self.target.flat))
            self.agent_updates += active.to(torch.int64)
            y = sample["reward"] + cfg.gamma * self.target(sample["next_obs"]).max(dim=-1).values
        qa = self.q(sample["obs"]).gather(-1, sample["action"][..., None]).squeeze(-1)
        loss = (((qa - y) ** 2).mean(1) * active.to(qa.dtype)).sum()
        self.opt.zero_grad()
        backward(loss)
        self.opt.step(active)
        return {"loss": loss.detach()}

    def _tensors(self) -> dict[str, torch.Tensor]:
        return {"q": self.q.flat, "target": self.target.flat, "agent_updates": self.agent_updates}
