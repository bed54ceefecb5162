"""shoal graph nodes seen by dask: a ``Delayed``'s graph as dask task-spec
nodes, so ``dd.from_delayed`` and ``dask.delayed`` accept shoal objects.
"""

from __future__ import annotations

import pickle
from typing import Any

from ..core import serialize
from ..core.graph import Node
from ..futures import Future


def _run_shoal_call(function: bytes, frames: list[bytes], inputs: list) -> Any:
    """Run a shoal node's call under a dask scheduler (``inputs``: the
    values of its dependencies, in order).
    """
    fn = pickle.loads(function)
    args, kwargs = serialize.loads_args(frames, inputs)
    return fn(*args, **kwargs)


def _result_of(x: Any) -> Any:
    return x.result() if isinstance(x, Future) else x


def node_graph(roots: list[Node]) -> dict[str, Any]:
    """The graph behind shoal nodes as dask task-spec nodes."""
    from dask._task_spec import DataNode, List, Task, TaskRef

    graph: dict[str, Any] = {}
    stack = list(roots)
    while stack:
        d = stack.pop()
        if d._key in graph:
            continue
        if d._future is not None:
            graph[d._key] = Task(d._key, _result_of, d._future)
        elif d._func is None:
            graph[d._key] = DataNode(d._key, serialize.loads(d._spec_frames()))
        else:
            inputs = List(*(TaskRef(dep._key) for dep in d._deps))
            graph[d._key] = Task(d._key, _run_shoal_call, d._func[2], d._frames, inputs)
        stack.extend(x for x in d._deps if isinstance(x, Node))
    return graph
