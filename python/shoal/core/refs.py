"""How a task's pickled arguments refer to its inputs: by position.

A Future or a Delayed inside a task's arguments pickles as ``ref(i)``, the
task's ``i``-th dependency (see :func:`shoal.core.serialize.dumps_args`),
not by its key: the arguments of a reduction over a million tasks stay a
few bytes each in the scheduler, and loading them looks up no key. The
module's name is part of every such pickle, so it stays short.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

_local = threading.local()


def set_inputs(values: Sequence[Any] | None) -> None:
    """The values ``ref`` returns on this thread while a task's arguments
    are unpickled (its inputs in the order of its dependencies), or None
    once they are.
    """
    _local.values = values


def ref(i: int) -> Any:
    """Unpickling side of a dependency in a task's arguments: the value of
    the task's ``i``-th input.
    """
    values = getattr(_local, "values", None)
    if values is None:
        raise RuntimeError(
            "these are a task's arguments, which refer to its inputs by position: "
            "load them with shoal.core.serialize.loads_args and the inputs' values"
        )
    return values[i]
