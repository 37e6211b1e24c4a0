"""Schedulers: the interface, the registry, and the built-in rules.

    from schedulers import Scheduler, Batch, make
"""

from schedulers.interface import Batch, EnvInfo, Scheduler, SlotFeedback
from schedulers.registry import available, make, resolve

__all__ = ["Scheduler", "Batch", "EnvInfo", "SlotFeedback", "make", "resolve", "available"]
