"""The seed paper's system model as a plain per-task Python loop, written straight from docs/environment.md.

Deliberately naive and independent of the suite's code: backlog and placed work in Gcycles, one task at a
time, the delay formulas exactly as stated. Tests compare the vectorised environment against it, and the
benchmarks use it as the in-run baseline for speed ratios.
"""

from __future__ import annotations


def reference_delays(capacity, rate, slot_s, counts, size, work, result, actions):
    """Every task's delay for fixed actions (tasks in order: slot, base station, arrival index)."""
    n_slots, n_bs = len(counts), len(counts[0])
    capacity = [float(f) for f in capacity]
    rate = [float(v) for v in rate]
    queue = [0.0] * n_bs  # Q_t, Gcycles
    delays = []
    i = 0
    for t in range(n_slots):
        placed = [0.0] * n_bs  # P_t, Gcycles
        for b in range(n_bs):
            for _ in range(int(counts[t][b])):
                a = int(actions[i])
                wait = (queue[a] + placed[a]) / capacity[a]
                if a == b:
                    delay = work[i] / capacity[a] + result[i] / rate[a] + wait
                else:
                    delay = size[i] / rate[a] + work[i] / capacity[a] + result[i] / rate[a] + wait
                placed[a] += work[i]
                delays.append(delay)
                i += 1
        queue = [max(queue[a] + placed[a] - capacity[a] * slot_s, 0.0) for a in range(n_bs)]
    return delays


def reference_opt_ts(capacity, rate, slot_s, counts, size, work, result):
    """The paper's Opt-TS as the reference code does it: per task, the server with the smallest delay (strict <)."""
    n_slots, n_bs = len(counts), len(counts[0])
    capacity = [float(f) for f in capacity]
    rate = [float(v) for v in rate]
    queue = [0.0] * n_bs
    actions, delays = [], []
    i = 0
    for t in range(n_slots):
        placed = [0.0] * n_bs
        for b in range(n_bs):
            for _ in range(int(counts[t][b])):
                best, best_delay = -1, float("inf")
                for a in range(n_bs):
                    wait = (queue[a] + placed[a]) / capacity[a]
                    upload = 0.0 if a == b else size[i] / rate[a]
                    delay = upload + work[i] / capacity[a] + result[i] / rate[a] + wait
                    if delay < best_delay:
                        best, best_delay = a, delay
                placed[best] += work[i]
                actions.append(best)
                delays.append(best_delay)
                i += 1
        queue = [max(queue[a] + placed[a] - capacity[a] * slot_s, 0.0) for a in range(n_bs)]
    return actions, delays
