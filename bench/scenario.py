"""Moved to `bench.scenarios`; this alias keeps existing imports working for one release (until 0.2)."""

import importlib
import warnings

warnings.warn("bench.scenario moved to bench.scenarios; the old name goes away in release 0.2", DeprecationWarning, stacklevel=2)
globals().update({k: v for k, v in vars(importlib.import_module("bench.scenarios")).items() if not k.startswith("__")})
