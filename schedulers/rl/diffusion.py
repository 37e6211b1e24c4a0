"""The denoising-diffusion actor of LAD-TS and D2SAC-TS, for E agents at once.

A conditional DDPM over an A-dimensional action vector (Ho et al. 2020; as used by D2SAC, Du et al.
2023, and LAD-TS):

- VP beta schedule over I steps: beta_i = 1 - exp(-beta_min / I - (beta_max - beta_min)(2i - 1) / (2 I^2)).
- The noise network eps(x_i, i, s) is an MLP on [x_i, sinusoidal embedding of i (t_dim), s] with two
  hidden ReLU layers and a softmax output (the reference's choice).
- Reverse step from i to i-1: x0 = sqrt(1/ab_i) x_i - sqrt(1/ab_i - 1) eps; the posterior mean
  c1_i x0 + c2_i x_i; plus sigma_i z with z ~ N(0, I), except at the last step. We fold these into
  x_{i-1} = a_i x_i - b_i eps + sigma_i z (the same arithmetic, fewer tensor operations).
- The chain starts at x_I, which LAD-TS takes from its latent action memory and D2SAC-TS draws from
  N(0, I); the final x_0 becomes action probabilities by a softmax. Gradients flow through the chain.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from schedulers.rl.ensemble import EnsembleMLP


def vp_betas(steps: int, beta_min: float, beta_max: float) -> np.ndarray:
    i = np.arange(1, steps + 1)
    alpha = np.exp(-beta_min / steps - 0.5 * (beta_max - beta_min) * (2 * i - 1) / steps**2)
    return 1.0 - alpha


def sinusoidal_embedding(steps: int, dim: int) -> torch.Tensor:
    """(steps, dim): [sin(i f_k), cos(i f_k)] with f_k = 10000^(-k / (dim/2 - 1)), k < dim/2."""
    half = dim // 2
    freq = torch.exp(torch.arange(half, dtype=torch.float64) * -(math.log(10000) / (half - 1)))
    arg = torch.arange(steps, dtype=torch.float64)[:, None] * freq[None, :]
    return torch.cat([arg.sin(), arg.cos()], dim=1).float()


class DiffusionActor(torch.nn.Module):
    def __init__(
        self,
        n_agents: int,
        obs_dim: int,
        n_actions: int,
        *,
        hidden: int,
        steps: int,
        beta_min: float,
        beta_max: float,
        t_dim: int,
        generator: torch.Generator,
        device: str | torch.device = "cpu",
    ):
        super().__init__()
        self.n_agents, self.obs_dim, self.n_actions, self.steps, self.t_dim = n_agents, obs_dim, n_actions, steps, t_dim
        self.net = EnsembleMLP(n_agents, [n_actions + t_dim + obs_dim, hidden, hidden, n_actions], generator, device)
        betas = vp_betas(steps, beta_min, beta_max)
        alphas = 1.0 - betas
        ab = np.cumprod(alphas)
        ab_prev = np.concatenate(([1.0], ab[:-1]))
        c1 = betas * np.sqrt(ab_prev) / (1.0 - ab)
        c2 = (1.0 - ab_prev) * np.sqrt(alphas) / (1.0 - ab)
        post_var = betas * (1.0 - ab_prev) / (1.0 - ab)
        self.coef_x = (c1 * np.sqrt(1.0 / ab) + c2).tolist()
        self.coef_eps = (c1 * np.sqrt(1.0 / ab - 1.0)).tolist()
        self.sigma = np.exp(0.5 * np.log(np.clip(post_var, 1e-20, None))).tolist()
        self.register_buffer("embedding", sinusoidal_embedding(steps, t_dim).to(device))

    def forward(self, obs: torch.Tensor, x: torch.Tensor, noise: torch.Tensor | None = None, generator: torch.Generator | None = None) -> torch.Tensor:
        """obs (E, N, obs_dim), x = x_I (E, N, A) -> action probabilities (E, N, A).

        `noise` (steps - 1, E, N, A) fixes the per-step Gaussian draws (tests); otherwise they come from `generator`.
        """
        a = self.n_actions
        layers = self.net.parameters_by_layer()
        b1 = layers[0][1]
        w_x = self.net.weight(0, slice(0, a))
        w_t = self.net.weight(0, slice(a, a + self.t_dim))
        w_s = self.net.weight(0, slice(a + self.t_dim, None))
        # layer 1 on [x, embedding(i), s] = x W_x + (s W_s + b1 + embedding(i) W_t): the bracket once per chain
        # (per step, not as one (E, steps, N, hidden) tensor: its backward would zero-fill that whole tensor per step)
        step_part = torch.matmul(self.embedding, w_t)  # (E, steps, hidden)
        fixed = torch.bmm(obs, w_s) + b1  # (E, N, hidden)
        if noise is None and self.steps > 1:
            noise = torch.randn((self.steps - 1, *x.shape), generator=generator, device=x.device)
        k = 0
        for i in reversed(range(self.steps)):
            pre = torch.bmm(x, w_x) + (fixed + step_part[:, i, None])
            eps = torch.softmax(self.net(x, first=pre, layers=layers), dim=-1)
            x = torch.add(x * self.coef_x[i], eps, alpha=-self.coef_eps[i])
            if i > 0:
                x = torch.add(x, noise[k], alpha=self.sigma[i])
                k += 1
        return torch.softmax(x, dim=-1)


class MLPActor(torch.nn.Module):
    """SAC-TS's actor: obs -> hidden -> hidden -> A, softmax."""

    def __init__(self, n_agents: int, obs_dim: int, n_actions: int, *, hidden: int, generator: torch.Generator, device: str | torch.device = "cpu"):
        super().__init__()
        self.net = EnsembleMLP(n_agents, [obs_dim, hidden, hidden, n_actions], generator, device)

    def forward(self, obs: torch.Tensor, x: torch.Tensor | None = None, noise: torch.Tensor | None = None, generator: torch.Generator | None = None) -> torch.Tensor:
        return torch.softmax(self.net(obs), dim=-1)
