"""Moved to `bench.core.config`; this alias keeps existing imports working for one release (until 0.2)."""

import importlib
import warnings

warnings.warn("bench.config moved to bench.core.config; the old name goes away in release 0.2", DeprecationWarning, stacklevel=2)
globals().update({k: v for k, v in vars(importlib.import_module("bench.core.config")).items() if not k.startswith("__")})
