"""Turning Delayed graphs into tasks, and ``compute`` / ``persist``.

The graph is materialised here, on the client: every node becomes one task
spec, in depth-first post-order from the outputs, and the whole graph goes
to the scheduler in one message. Only the outputs are *wanted*, so the
scheduler frees each intermediate as soon as its dependents are done; the
post-order is the submission order, which the scheduler's queue follows, so
a reduction tree runs depth-first and never holds all its leaves at once.
"""

from __future__ import annotations

import atexit
import os
import threading
from typing import TYPE_CHECKING, Any, Callable

from . import _engine
from ._delayed import Delayed
from ._future import Future

if TYPE_CHECKING:
    from .client import Client

# One spec: (key, func hash, frames, dependency keys, wanted, priority, retries, workers)
Spec = tuple[str, int, list[bytes], list[str], bool, int, int, list[str]]

_default_lock = threading.Lock()
_default_local: Client | None = None


def _implicit_client() -> Client:
    """The client ``compute`` uses when none is given.

    The current default client if there is one; otherwise a cluster on
    threads of this process, started on first use and reused: it starts in
    milliseconds and, like Dask's default threaded scheduler, suits the
    I/O-bound tasks (HTTP calls) that lazy graphs are often made of. It has
    as many threads as ``concurrent.futures.ThreadPoolExecutor`` would
    (``min(32, cpus + 4)``): enough to overlap waiting on I/O, while
    CPU-bound Python gains nothing from more threads either way.
    """
    global _default_local
    from .client import Client, _current_default

    c = _current_default()
    if c is not None:
        return c
    with _default_lock:
        if _default_local is None or _default_local.status != "running":
            _default_local = Client(
                processes=False,
                n_workers=1,
                threads_per_worker=min(32, (os.cpu_count() or 1) + 4),
                set_as_default=False,
            )
        return _default_local


@atexit.register
def _close_implicit() -> None:
    if _default_local is not None:
        _default_local.close()


def resolve_client(scheduler: Any = None) -> Client:
    """The client to run on: ``scheduler`` if it is one, else the implicit one."""
    from .client import Client

    if isinstance(scheduler, Client):
        return scheduler
    if scheduler not in _SCHEDULER_NAMES:
        raise ValueError(
            f"shoal cannot run on scheduler={scheduler!r}; pass a shoal Client, or one of "
            f"{sorted(n for n in _SCHEDULER_NAMES if n)}"
        )
    return _implicit_client()


# Names Dask users pass as ``scheduler=``: all run on the default client, or
# on the in-process cluster (threads) when there is none.
_SCHEDULER_NAMES = {
    None,
    "shoal",
    "distributed",
    "dask.distributed",
    "threads",
    "threading",
    "sync",
    "synchronous",
    "single-threaded",
}


def post_order(
    roots: list[Any], key: Callable[[Any], Any], children: Callable[[Any], Any]
) -> list[Any]:
    """Nodes reachable from ``roots``, each once, dependencies first
    (iterative depth-first post-order: deep graphs never recurse).

    ``children(node)`` gives a node's dependencies, or None for a node that is
    not part of the graph (it is skipped).
    """
    order: list[Any] = []
    seen: set[Any] = set()
    stack: list[tuple[Any, bool]] = [(r, False) for r in reversed(roots)]
    while stack:
        node, expanded = stack.pop()
        if expanded:
            order.append(node)
            continue
        k = key(node)
        if k in seen:
            continue
        seen.add(k)
        kids = children(node)
        if kids is None:
            continue
        stack.append((node, True))
        stack.extend((c, False) for c in reversed(list(kids)))
    return order


def _delayed_children(node: Any) -> Any:
    if not isinstance(node, Delayed) or node._future is not None:
        return None  # a future, or persisted: its data is already in the cluster
    return [d for d in node._deps if isinstance(d, Delayed)]


def graph_specs(
    roots: list[Any], wanted: set[str]
) -> tuple[list[tuple[int, str, bytes]], list[Spec]]:
    """Functions and task specs for every Delayed reachable from ``roots``,
    dependencies first. Keys in ``wanted`` are the ones the client will hold
    futures for.
    """
    functions: dict[int, tuple[int, str, bytes]] = {}
    nodes = post_order(roots, lambda n: n.key, _delayed_children)
    specs = [_spec(n, n._key in wanted, functions) for n in nodes]
    return list(functions.values()), specs


def _spec(node: Delayed, wanted: bool, functions: dict[int, tuple[int, str, bytes]]) -> Spec:
    deps = [d._key if isinstance(d, Delayed) else d.key for d in node._deps]
    if node._func is None:
        return (node._key, _engine.LITERAL_FUNC, node._spec_frames(), [], wanted, 0, 0, [])
    h = node._func[0]
    functions.setdefault(h, node._func)
    return (node._key, h, node._frames, deps, wanted, 0, 0, [])  # type: ignore[return-value]


def collect(args: tuple, traverse: bool) -> list[Any]:
    """Every Delayed (or dask collection) in ``args``, looking inside lists,
    tuples, sets and dicts when ``traverse``.
    """
    from ._dask_interop import is_dask_collection

    found: list[Any] = []
    stack = list(reversed(args))
    while stack:
        x = stack.pop()
        if isinstance(x, Delayed) or is_dask_collection(x):
            found.append(x)
        elif traverse and isinstance(x, (list, tuple, set, frozenset)):
            stack.extend(reversed(list(x)))
        elif traverse and isinstance(x, dict):
            stack.extend(reversed(list(x.values())))
    return found


def submit_graph(client: Client, delayeds: list[Delayed]) -> list[Future]:
    """Send the graph behind ``delayeds``; return one Future per output."""
    wanted = {d._key for d in delayeds}
    functions, specs = graph_specs(delayeds, wanted)
    functions = [f for f in functions if not client._core.has_function(f[0])]
    client._check_running()
    # Outputs already held (persisted, or computed earlier) get a reference.
    held = [d for d in delayeds if d._future is not None]
    client._core.submit(functions, specs)
    for d in held:
        client._core.acquire(d._key)
    return [Future._adopt(d._key, client) for d in delayeds]


def _substitute(obj: Any, values: dict[int, Any], traverse: bool) -> Any:
    if id(obj) in values:
        return values[id(obj)]
    if not traverse:
        return obj
    if isinstance(obj, (list, tuple, set, frozenset)):
        items = [_substitute(x, values, traverse) for x in obj]
        if isinstance(obj, tuple) and hasattr(obj, "_fields"):
            return type(obj)(*items)
        return type(obj)(items)
    if isinstance(obj, dict):
        return {k: _substitute(v, values, traverse) for k, v in obj.items()}
    return obj


def _as_delayed(collections: list[Any]) -> list[Delayed]:
    from ._dask_interop import wrap_collection

    return [c if isinstance(c, Delayed) else wrap_collection(c) for c in collections]


def compute(
    *args: Any,
    traverse: bool = True,
    optimize_graph: bool = True,
    scheduler: Any = None,
    get: Any = None,
    **kwargs: Any,
) -> tuple:
    """Compute Delayed objects (and dask collections) and return their values.

    Returns a tuple with one entry per argument; arguments that are not lazy
    come back unchanged, and with ``traverse`` lazy objects inside lists,
    tuples and dicts are replaced by their values.
    """
    collections = collect(args, traverse)
    if not collections:
        return args
    client = resolve_client(scheduler)
    futures = submit_graph(client, _as_delayed(collections))
    results = client.gather(futures)
    values = {id(c): r for c, r in zip(collections, results)}
    return tuple(_substitute(a, values, traverse) for a in args)


def persist(*args: Any, traverse: bool = True, scheduler: Any = None, **kwargs: Any) -> tuple:
    """Start computing in the cluster; return Delayed objects backed by the
    results (one per argument, like :func:`compute`).

    Dask collections are persisted by dask itself with the shoal client as
    its scheduler: they come back holding their computed partitions.
    """
    found = collect(args, traverse)
    if not found:
        return args
    client = resolve_client(scheduler)
    lazy = [c for c in found if isinstance(c, Delayed)]
    futures = submit_graph(client, lazy)
    values = {id(c): persisted(c, f) for c, f in zip(lazy, futures)}
    others = [c for c in found if not isinstance(c, Delayed)]
    if others:
        import dask

        # A plain function, not the client: dask hands a client with a
        # `persist` method the job back, and that is this function.
        def get(dsk: Any, keys: Any, **kw: Any) -> Any:
            return client.get(dsk, keys, **kw)

        for c, p in zip(others, dask.persist(*others, scheduler=get)):
            values[id(c)] = p
    return tuple(_substitute(a, values, traverse) for a in args)


def persisted(d: Delayed, future: Future) -> Delayed:
    """A Delayed whose value is the result ``future`` points at."""
    out = Delayed(d._key, None, None, (future,), d._length)
    object.__setattr__(out, "_future", future)
    return out


def dask_get(dsk: Any, keys: Any, scheduler: Any = None, **kwargs: Any) -> Any:
    """Run a dask graph on the implicit client (``__dask_scheduler__``)."""
    return resolve_client(scheduler).get(dsk, keys, **kwargs)
