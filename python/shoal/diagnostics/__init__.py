"""Seeing what the cluster does from Python: progress bars, the task stream,
performance reports and the cluster's memory over time (the dashboard
itself is served by the scheduler).
"""

from .memory_sampler import MemorySampler
from .progress import futures_of, progress
from .task_stream import get_task_stream, performance_report

__all__ = ["MemorySampler", "futures_of", "get_task_stream", "performance_report", "progress"]
