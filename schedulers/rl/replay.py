"""Per-agent replay buffers stored side by side in one (E, capacity, width) tensor per dtype.

Each agent's buffer is a FIFO of `capacity` transitions (the reference's deque(maxlen=capacity)).
Sampling draws, for every agent at once, `batch` distinct transitions uniformly from that agent's own
buffer (the reference's random.sample, without replacement). Stored values are copies.
Fields of one dtype share a tensor (columns side by side), so a sample is one gather per dtype.
"""

from __future__ import annotations

import math

import numpy as np
import torch


class EnsembleReplay:
    def __init__(self, n_agents: int, capacity: int, fields: dict[str, tuple[tuple[int, ...], torch.dtype]], device: str | torch.device = "cpu"):
        self.n_agents = n_agents
        self.capacity = capacity
        self.device = device
        self.fields = dict(fields)
        self._columns: dict[str, tuple[torch.dtype, int, int, tuple[int, ...]]] = {}  # name -> (dtype, start, stop, shape)
        widths: dict[torch.dtype, int] = {}
        for name, (shape, dtype) in fields.items():
            width = math.prod(shape)
            start = widths.get(dtype, 0)
            self._columns[name] = (dtype, start, start + width, shape)
            widths[dtype] = start + width
        self.store = {dtype: torch.zeros((n_agents, capacity, width), dtype=dtype, device=device) for dtype, width in widths.items()}
        self.size = np.zeros(n_agents, dtype=np.int64)
        self.next = np.zeros(n_agents, dtype=np.int64)  # write position of each agent's ring
        self._row_start = torch.arange(n_agents, device=device)[:, None] * capacity

    @property
    def data(self) -> dict[str, torch.Tensor]:
        """Every field as an (E, capacity, *shape) view."""
        return {name: self._view(self.store[dt][:, :, a:b], shape) for name, (dt, a, b, shape) in self._columns.items()}

    @staticmethod
    def _view(t: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor:
        return t.reshape(*t.shape[:2], *shape) if shape else t[..., 0]

    def add(self, agent: np.ndarray, values: dict[str, torch.Tensor]) -> None:
        """Append transitions; `agent[i]` owns row i of every value. Rows of one agent keep their order."""
        if agent.size == 0:
            return
        order = np.argsort(agent, kind="stable")
        agent_sorted = agent[order]
        counts = np.bincount(agent_sorted, minlength=self.n_agents)
        starts = np.concatenate(([0], np.cumsum(counts)[:-1]))
        rank = np.arange(agent.size) - starts[agent_sorted]
        slot = (self.next[agent_sorted] + rank) % self.capacity
        a = torch.as_tensor(agent_sorted, device=self.device)
        s = torch.as_tensor(slot, device=self.device)
        o = torch.as_tensor(order, device=self.device)
        for name, (dt, lo, hi, _) in self._columns.items():
            self.store[dt][a, s, lo:hi] = values[name][o].reshape(agent.size, hi - lo).to(dt)
        self.next = (self.next + counts) % self.capacity
        self.size = np.minimum(self.size + counts, self.capacity)

    def sample(self, batch: int, generator: torch.Generator) -> dict[str, torch.Tensor]:
        """`batch` distinct transitions per agent, (E, batch, ...) per field. Agents with fewer than
        `batch` transitions get repeats (they are masked out of learning anyway)."""
        keys = torch.rand(self.n_agents, self.capacity, generator=generator, device=self.device)
        size = torch.as_tensor(self.size, device=self.device)
        keys = keys.masked_fill(torch.arange(self.capacity, device=self.device)[None, :] >= size[:, None], 2.0)
        index = torch.topk(keys, batch, dim=1, largest=False, sorted=False).indices  # (E, batch)
        index = torch.minimum(index, (size[:, None] - 1).clamp(min=0))
        # rows of the (E x capacity, width) store: one index_select per dtype (advanced indexing is several times slower)
        flat = (index + self._row_start).view(-1)
        picked = {dt: t.view(-1, t.shape[2]).index_select(0, flat).view(self.n_agents, batch, t.shape[2]) for dt, t in self.store.items()}
        return {name: self._view(picked[dt][:, :, a:b], shape) for name, (dt, a, b, shape) in self._columns.items()}

    def state_dict(self) -> dict:
        return {"store": {str(k): v.clone() for k, v in self.store.items()}, "size": self.size.copy(), "next": self.next.copy()}

    def load_state_dict(self, state: dict) -> None:
        for k, v in self.store.items():
            v.copy_(state["store"][str(k)])
        self.size = np.array(state["size"], dtype=np.int64)
        self.next = np.array(state["next"], dtype=np.int64)
