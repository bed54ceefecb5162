"""The one walk over nested containers: Futures, Delayed objects and
collections given inside lists, tuples, sets and dicts (Dask looks inside
those, and only those).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

#: The containers looked into (dicts: their values).
CONTAINERS = (list, tuple, set, frozenset)

#: What a ``rebuild`` function returns to leave a leaf out of its container.
SKIP: Any = object()


def leaves(obj: Any) -> Iterator[Any]:
    """Everything in ``obj`` that is not a container, in order, depth first
    (``obj`` itself if it is not one). Iterative: deep nesting never
    recurses.
    """
    stack = [obj]
    while stack:
        x = stack.pop()
        if isinstance(x, dict):
            stack.extend(reversed(list(x.values())))
        elif isinstance(x, CONTAINERS):
            stack.extend(reversed(list(x)))
        else:
            yield x


def rebuild(obj: Any, leaf: Callable[[Any], Any]) -> Any:
    """``obj`` with each leaf replaced by ``leaf(x)``, containers rebuilt as
    the same types (named tuples too); a leaf mapped to :data:`SKIP` is
    left out of its container.
    """
    if isinstance(obj, dict):
        out = {k: rebuild(v, leaf) for k, v in obj.items()}
        return {k: v for k, v in out.items() if v is not SKIP}
    if isinstance(obj, CONTAINERS):
        items = [v for v in (rebuild(x, leaf) for x in obj) if v is not SKIP]
        if isinstance(obj, list):
            return items
        if isinstance(obj, tuple) and hasattr(obj, "_fields"):
            return type(obj)(*items)
        return type(obj)(items)
    return leaf(obj)
