"""The paper's cost formulas as tables over all servers, in one place: a batch's per-(task, server) times in the
cycle-cost model are a function of the batch's public fields (sizes, work, result sizes, origins) and the servers'
capacities and link rates alone. The engine's cost model (bench/engine/costs.py) and a scheduler's own process
(the sandbox channel computes them there instead of shipping them) call these, so both hold the same bits.
It lives in bench.core because schedulers may not import the engine."""

from __future__ import annotations

import numpy as np
from numba import njit


def upload_table(size_mbit: np.ndarray, origin: np.ndarray, inv_rate: np.ndarray) -> np.ndarray:
    """(n, B): d / rate of the server, 0 at the task's own base station."""
    table = size_mbit[:, None] * inv_rate[None, :]
    table[np.arange(size_mbit.shape[0]), origin] = 0.0
    return table


def download_table(result_mbit: np.ndarray, inv_rate: np.ndarray) -> np.ndarray:
    """(n, B): o / rate of the server."""
    return result_mbit[:, None] * inv_rate[None, :]


def compute_and_service(size_mbit: np.ndarray, work_gcycles: np.ndarray, result_mbit: np.ndarray, origin: np.ndarray,
                        inv_capacity: np.ndarray, inv_rate: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(compute, service) tables (n, B): w / f, and upload + compute + download."""
    n = size_mbit.shape[0]
    compute, service = np.empty((n, inv_capacity.shape[0])), np.empty((n, inv_capacity.shape[0]))
    _tables(size_mbit, work_gcycles, result_mbit, origin, inv_capacity, inv_rate, compute, service)
    return compute, service


@njit(cache=True, nogil=True)
def _tables(size, work, result, origin, inv_capacity, inv_rate, compute, service):  # pragma: no cover - compiled
    n, n_servers = compute.shape
    for i in range(n):
        for a in range(n_servers):
            c = work[i] * inv_capacity[a]
            up = 0.0 if a == origin[i] else size[i] * inv_rate[a]
            compute[i, a] = c
            service[i, a] = up + c + result[i] * inv_rate[a]
