"""Untrusted scheduler code in a confined child: Linux confinement (`confine.py`), the parent's side of a run
(`run.py`: results rebuilt from the child's actions) and the child's (`worker.py`)."""
