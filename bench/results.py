"""Moved to `bench.experiments.bundles`; this alias keeps existing imports working for one release (until 0.2)."""

import importlib
import warnings

warnings.warn("bench.results moved to bench.experiments.bundles; the old name goes away in release 0.2", DeprecationWarning, stacklevel=2)
globals().update({k: v for k, v in vars(importlib.import_module("bench.experiments.bundles")).items() if not k.startswith("__")})
