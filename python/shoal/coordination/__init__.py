"""Coordination between clients and tasks, held by the scheduler (in Rust):
:class:`Queue`, :class:`Variable`, :class:`Lock`, :class:`Semaphore`,
:class:`MultiLock`, :class:`Event`, :class:`Pub` and :class:`Sub`.

Each object is named; objects of the same kind and name, in any client or
task, are the same object. They pickle by name, so they can be passed to
tasks. Every wait takes a timeout in seconds or Dask's strings
(``"200 ms"``), counted by the scheduler.
"""

from .event import Event
from .locks import Lock, MultiLock, Semaphore
from .pubsub import Pub, Sub
from .queue import Queue
from .variable import Variable

__all__ = ["Event", "Lock", "MultiLock", "Pub", "Queue", "Semaphore", "Sub", "Variable"]
