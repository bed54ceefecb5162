"""Task arguments too large to travel inside a task spec.

Specs go to the scheduler inside its messages, so the pickled arguments of
one task may be at most ``MAX_SPEC_BYTES``. Past that, each top-level
argument larger than ``LIFT_ABOVE`` pickled is scattered first (straight to
a worker's memory, see :mod:`.scatter`) and the task takes its future, as a
user would write it by hand; like any scattered value, it is then lost with
its worker.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .. import _engine
from . import serialize

#: The most bytes of pickled arguments one task spec carries.
MAX_SPEC_BYTES: int = _engine.MAX_SPEC_BYTES

#: Arguments larger than this (pickled) are scattered when a spec would be
#: too large.
LIFT_ABOVE: int = 64 << 20


def lift_large(
    scatter: Callable[[Any], Any], args: tuple, kwargs: dict
) -> tuple[tuple, dict, bool]:
    """``args`` and ``kwargs`` with every value larger than ``LIFT_ABOVE``
    replaced by its future (``scatter([value])[0]``); and whether any was.
    """
    lifted = False

    def one(v: Any) -> Any:
        nonlocal lifted
        if serialize.nbytes(serialize.dumps(v)) <= LIFT_ABOVE:
            return v
        lifted = True
        # In a list of one, so that a list or dict is one value, not many.
        return scatter([v])[0]

    new_args = tuple(one(a) for a in args)
    new_kwargs = {k: one(v) for k, v in kwargs.items()}
    return new_args, new_kwargs, lifted
