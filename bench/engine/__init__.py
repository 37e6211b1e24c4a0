"""The engine: what a task costs (`costs.py`, `profiled_costs.py`), the contract every time model keeps and the
bookkeeping they share (`environment.py`), the two engines that charge placements (`slotted.py`, `events.py`), the
episode trace (`trace.py`), a scenario made concrete for one seed (`system.py`), the per-episode metrics
(`metrics.py`) and the Gymnasium views (`gym_env.py`)."""
