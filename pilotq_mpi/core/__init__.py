"""The pure core: task specs, task states, inventory, scheduler, dependencies (no MPI)."""
from .dependencies import DependencyTracker
from .inventory import Inventory, QpuSpec, RankInfo
from .scheduler import Placement, Scheduler
from .specs import TaskSpec
from .states import InvalidTransition, TaskEvent, TaskState, next_state

__all__ = [
    "DependencyTracker", "Inventory", "InvalidTransition", "Placement", "QpuSpec", "RankInfo",
    "Scheduler", "TaskEvent", "TaskSpec", "TaskState", "next_state",
]
