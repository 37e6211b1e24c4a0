"""Moved to `bench.engine.gym_env`; this alias keeps existing imports working for one release (until 0.2)."""

import importlib
import warnings

warnings.warn("bench.gym_env moved to bench.engine.gym_env; the old name goes away in release 0.2", DeprecationWarning, stacklevel=2)
globals().update({k: v for k, v in vars(importlib.import_module("bench.engine.gym_env")).items() if not k.startswith("__")})
