"""Arrays handed out read-only, so that a caller cannot change what the engine or a cost model still uses."""

from __future__ import annotations

import numpy as np


def read_only(a: np.ndarray) -> np.ndarray:
    """Mark `a` not writeable (in place, no copy) and return it: copy first where the caller still writes its own."""
    a.flags.writeable = False
    return a


def read_only_copy(a: np.ndarray) -> np.ndarray:
    """A read-only copy of `a`: what a caller hands out when the original stays writeable for its owner."""
    return read_only(np.array(a, copy=True))
