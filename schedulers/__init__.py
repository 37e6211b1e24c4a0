"""Schedulers: the interface, the registry, and the built-in rules.

The public API for a scheduler of your own (it stays stable across releases):

    from schedulers import Batch, Scheduler, option

`Scheduler` is the base class, `Batch` what `decide` receives, `option` makes a hyper-parameter field of a
`Config` dataclass (with its help text and limits). docs/schedulers.md walks through an example.
"""

from bench.core.config import option
from schedulers.interface import Batch, Decision, EnvInfo, Scheduler, SlotFeedback
from schedulers.registry import available, make, resolve

__all__ = ["Scheduler", "Batch", "Decision", "EnvInfo", "SlotFeedback", "option", "make", "resolve", "available"]
