"""The engine: what a task costs (`costs.py`, `profiled_costs.py`), the environment that charges placements
(`slotted.py`), a scenario made concrete for one seed (`system.py`), the per-episode metrics (`metrics.py`)
and the Gymnasium view (`gym_env.py`)."""
