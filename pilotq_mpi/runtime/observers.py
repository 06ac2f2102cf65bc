"""Observers of task endings plugged into the master: trace file (more to come)."""
from __future__ import annotations

from ..core.inventory import Inventory
from .master import TaskObserver
from .options import PilotOptions


def build_observer(options: PilotOptions, inventory: Inventory) -> TaskObserver:
    """The observer the options ask for (a no-op one when none)."""
    return TaskObserver()
