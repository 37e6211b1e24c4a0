"""Stacked ("ensemble") networks and optimiser: E independent agents computed as one batch.

Every agent owns its own weights; they are stored side by side in one flat parameter tensor of shape
(E, P) per network, and a forward pass is one batched matrix product per layer
(`torch.baddbmm` over the agent dimension). Because the agents' losses are summed, not averaged,
each agent's gradient is exactly the gradient of its own loss, and `EnsembleAdam` applies
`torch.optim.Adam`'s update rule per agent, with a per-agent step count and only for agents that are
active. So E stacked agents compute what E separate agents would (tests/test_learners.py checks it
against separate `torch.nn` agents).
"""

from __future__ import annotations

import math
import warnings

import torch


class EnsembleMLP(torch.nn.Module):
    """E independent MLPs `sizes[0] -> sizes[1] -> ... -> sizes[-1]` with ReLU between layers.

    Initialised like `torch.nn.Linear` (weights and biases uniform in ±1/sqrt(fan_in)), per agent.
    The first layer's weight can be split by input block (`first_layer_blocks`) so that a caller can
    feed inputs that are concatenated conceptually without materialising the concatenation.
    """

    def __init__(self, n_agents: int, sizes: list[int], generator: torch.Generator, device: str | torch.device = "cpu"):
        super().__init__()
        self.n_agents = n_agents
        self.sizes = list(sizes)
        self.layers: list[tuple[int, int, int, int]] = []  # (weight offset, bias offset, fan_in, fan_out)
        offset = 0
        for fan_in, fan_out in zip(sizes[:-1], sizes[1:]):
            self.layers.append((offset, offset + fan_in * fan_out, fan_in, fan_out))
            offset += fan_in * fan_out + fan_out
        flat = torch.empty(n_agents, offset, device=device)
        for w, b, fan_in, fan_out in self.layers:
            bound = 1.0 / math.sqrt(fan_in)
            flat[:, w:b] = (torch.rand(n_agents, fan_in * fan_out, generator=generator, device=device) * 2 - 1) * bound
            flat[:, b : b + fan_out] = (torch.rand(n_agents, fan_out, generator=generator, device=device) * 2 - 1) * bound
        self.flat = torch.nn.Parameter(flat)
        # Gradients land in one flat buffer: every weight and bias used in a forward pass is a leaf tensor
        # that aliases its slice of `flat`, with `.grad` aliasing the same slice of `flat.grad`. Autograd
        # then accumulates straight into the buffer (no slicing in the graph), and the optimiser sees one
        # (E, P) parameter and gradient.
        self.flat.grad = torch.zeros_like(flat)
        self._aliases: dict[tuple[int, int, tuple[int, ...]], torch.Tensor] = {}

    def alias(self, start: int, stop: int, shape: tuple[int, ...], rows: slice | None = None) -> torch.Tensor:
        """A leaf tensor viewing flat[:, start:stop] as (E, *shape) (optionally a row block of a weight)."""
        key = (start, stop, shape, None if rows is None else (rows.start, rows.stop))
        leaf = self._aliases.get(key)
        if leaf is None:
            leaf = self.flat.detach()[:, start:stop].view(self.n_agents, *shape)
            grad = self.flat.grad[:, start:stop].view(self.n_agents, *shape)
            if rows is not None:
                leaf, grad = leaf[:, rows], grad[:, rows]
            leaf.requires_grad_(True)
            leaf.grad = grad
            self._aliases[key] = leaf
        return leaf

    def zero_grad(self) -> None:
        self.flat.grad.zero_()

    def weight(self, layer: int, rows: slice | None = None) -> torch.Tensor:
        """(E, fan_in, fan_out) weight of a layer (x @ W convention); `rows` selects a block of inputs."""
        w, b, fan_in, fan_out = self.layers[layer]
        return self.alias(w, b, (fan_in, fan_out), rows)

    def bias(self, layer: int) -> torch.Tensor:
        """(E, 1, fan_out) bias of a layer."""
        w, b, fan_in, fan_out = self.layers[layer]
        return self.alias(b, b + fan_out, (1, fan_out))

    def parameters_by_layer(self) -> list[tuple[torch.Tensor, torch.Tensor]]:
        return [(self.weight(i), self.bias(i)) for i in range(len(self.layers))]

    def forward(self, x: torch.Tensor, first: torch.Tensor | None = None, layers: list | None = None) -> torch.Tensor:
        """x: (E, N, sizes[0]) -> (E, N, sizes[-1]).

        If `first` is given it replaces the first layer's pre-activation (the caller computed it).
        """
        layers = self.parameters_by_layer() if layers is None else layers
        h = torch.bmm(x, layers[0][0]) + layers[0][1] if first is None else first
        for w, b in layers[1:]:
            h = torch.bmm(torch.relu(h), w) + b  # bmm + add is faster here than baddbmm's broadcast bias
        return h


class EnsembleAdam:
    """`torch.optim.Adam` (no weight decay, no amsgrad) applied per agent, to active agents only.

    Parameters are (E, ...) tensors. `step(active)` updates the agents where `active` is True and
    advances only their step counts, so an agent that starts learning later gets the bias correction a
    fresh optimiser would give it.
    """

    def __init__(self, params: list[torch.Tensor], lr: float, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8):
        self.params = list(params)
        self.lr = lr
        self.beta1, self.beta2 = betas
        self.eps = eps
        n = self.params[0].shape[0]
        device = self.params[0].device
        self.steps = torch.zeros(n, device=device)
        self.exp_avg = [torch.zeros_like(p) for p in self.params]
        self.exp_avg_sq = [torch.zeros_like(p) for p in self.params]

    def zero_grad(self) -> None:
        for p in self.params:
            if p.grad is not None:
                p.grad.zero_()

    @torch.no_grad()
    def step(self, active: torch.Tensor) -> None:
        act = active.to(self.steps.dtype)
        self.steps += act
        steps = self.steps.clamp(min=1.0)
        step_size = self.lr / (1 - self.beta1**steps)  # (E,)
        bias_correction2_sqrt = torch.sqrt(1 - self.beta2**steps)
        everyone = bool(active.all())
        for p, m, v in zip(self.params, self.exp_avg, self.exp_avg_sq):
            if p.grad is None:
                continue
            shape = (-1,) + (1,) * (p.dim() - 1)
            if everyone:  # the same arithmetic without the mask (x * 1.0 is x): fewer operations once every agent learns
                g = p.grad
                m.mul_(self.beta1).add_(g * (1 - self.beta1))
                v.mul_(self.beta2).add_(g * g * (1 - self.beta2))
                p.sub_(step_size.view(shape) * m / (v.sqrt() / bias_correction2_sqrt.view(shape) + self.eps))
                continue
            mask = act.view(shape)
            g = p.grad * mask
            # inactive agents: m and v stay as they are (they have never been updated, so they are zero)
            m.mul_(torch.where(mask > 0, self.beta1, 1.0)).add_(g * (1 - self.beta1))
            v.mul_(torch.where(mask > 0, self.beta2, 1.0)).add_(g * g * (1 - self.beta2))
            denom = v.sqrt() / bias_correction2_sqrt.view(shape) + self.eps
            p.sub_(step_size.view(shape) * mask * m / denom)

    def state_dict(self) -> dict:
        return {"steps": self.steps.clone(), "exp_avg": [m.clone() for m in self.exp_avg], "exp_avg_sq": [v.clone() for v in self.exp_avg_sq]}

    def load_state_dict(self, state: dict) -> None:
        self.steps.copy_(state["steps"])
        for m, s in zip(self.exp_avg, state["exp_avg"]):
            m.copy_(s)
        for v, s in zip(self.exp_avg_sq, state["exp_avg_sq"]):
            v.copy_(s)


def backward(loss: torch.Tensor) -> None:
    """loss.backward(), quiet about the flat gradient buffer: its slices are not contiguous, which
    autograd reports as a possible slowdown (it accumulates into them in place all the same)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="grad and param do not obey the gradient layout contract")
        loss.backward()


@torch.no_grad()
def soft_update(target: torch.Tensor, source: torch.Tensor, tau: float, active: torch.Tensor) -> None:
    """target <- (1 - tau) * target + tau * source, for active agents (rows) only."""
    if bool(active.all()):
        target.mul_(1.0 - tau).add_(source * tau)
        return
    mask = active.view((-1,) + (1,) * (target.dim() - 1))
    target.copy_(torch.where(mask, target * (1.0 - tau) + source * tau, target))
