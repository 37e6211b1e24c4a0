"""Moved to `bench.core.errors`; this alias keeps existing imports working for one release (until 0.2)."""

import importlib
import warnings

warnings.warn("bench.errors moved to bench.core.errors; the old name goes away in release 0.2", DeprecationWarning, stacklevel=2)
globals().update({k: v for k, v in vars(importlib.import_module("bench.core.errors")).items() if not k.startswith("__")})
