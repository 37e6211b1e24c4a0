"""Many runs at once: grids of cells (`sweep.py`), the paper's reproduction (`reproduce.py`) and the regression gate
with its power analysis (`gate.py`, `gate_power.py`)."""
