"""Seeing what the cluster does from Python: progress bars, the task stream
and performance reports (the dashboard itself is served by the scheduler).
"""

from .progress import futures_of, progress
from .task_stream import get_task_stream, performance_report

__all__ = ["futures_of", "get_task_stream", "performance_report", "progress"]
