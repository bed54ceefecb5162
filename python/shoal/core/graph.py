"""Task graphs: nodes, their order, and their submission as task specs.

A :class:`Node` is one task of a lazy graph: its key, its function (hash,
name, pickled bytes), its pickled ``(args, kwargs)``, and the nodes and
futures its arguments refer to. ``shoal.Delayed`` is the user-facing kind
of node; dask graphs are converted into plain nodes.

The graph is materialised on the client: every node becomes one task spec,
dependencies first, sent a part of 10,000 at a time (the scheduler keeps
the parts until the last, so the graph counts as sent at once). Only
the outputs are *wanted*, so the scheduler frees each intermediate as soon
as its dependents are done. The submission order is the order the
scheduler's queue follows among tasks of equal priority: for a dask graph,
the order ``dask.order`` gives it (each node's ``_rank``), which runs the
tasks that free memory soonest first, as Dask's scheduler does; for shoal's
own nodes, depth-first post-order from the outputs, so a reduction tree
never holds all its leaves at once.
"""

from __future__ import annotations

from typing import Any, Callable

from .. import _engine
from . import keys, serialize
from .options import DEFAULT, Options, OptionsTable, parse
from .session import Session, warn_if_large


class Node:
    """One task of a lazy graph (see the module's description)."""

    __slots__ = (
        "_key",
        "_func",
        "_frames",
        "_deps",
        "_length",
        "_future",
        "_options",
        "_rank",
        "__weakref__",
    )

    def __init__(
        self,
        key: str,
        func: tuple[int, str, bytes] | None,
        frames: list[bytes] | None,
        deps: tuple = (),
        length: int | None = None,
    ):
        # Through the slots' own setters: subclasses refuse __setattr__, and
        # a graph of a million tasks makes a million nodes.
        _set_key(self, key)
        _set_func(self, func)
        _set_frames(self, frames)
        _set_deps(self, deps)
        _set_length(self, length)
        _set_future(self, None)
        # This task's own options (from ``dask.annotate``), over the graph's.
        _set_options(self, None)
        # Where ``dask.order`` puts this task (dask graphs only).
        _set_rank(self, None)

    @property
    def key(self) -> str:
        """The key of the task that produces this value."""
        return self._key

    def _spec_frames(self) -> list[bytes]:
        """The pickled arguments (or the pickled value, for a literal)."""
        return self._frames  # type: ignore[return-value]

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._key!r})"


_set_key = Node._key.__set__  # type: ignore[attr-defined]
_set_func = Node._func.__set__  # type: ignore[attr-defined]
_set_frames = Node._frames.__set__  # type: ignore[attr-defined]
_set_deps = Node._deps.__set__  # type: ignore[attr-defined]
_set_length = Node._length.__set__  # type: ignore[attr-defined]
_set_future = Node._future.__set__  # type: ignore[attr-defined]
_set_options = Node._options.__set__  # type: ignore[attr-defined]
_set_rank = Node._rank.__set__  # type: ignore[attr-defined]


def is_dask_collection(x: Any) -> bool:
    """Whether ``x`` is a dask collection (shoal's own nodes excluded)."""
    if isinstance(x, (type, Node)):
        return False
    return callable(getattr(type(x), "__dask_graph__", None))


def held_node(future: Any, length: int | None = None, cls: type[Node] = Node) -> Any:
    """A node (of class ``cls``) standing for a result the cluster holds
    (``future``): graphs refer to its key and never run it again.
    """
    node = cls(future._key, None, None, (future,), length)
    object.__setattr__(node, "_future", future)
    return node


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


def submission_order(roots: list[Node]) -> list[Node]:
    """Every node reachable from ``roots`` that the cluster does not hold yet,
    dependencies first: in ``_rank`` order where nodes have one (a dask
    graph's ``dask.order``), else in depth-first post-order from ``roots``.
    """
    found = _engine.node_order(roots, Node)
    if not any(n._rank is not None for n in found):
        return found
    # Nodes by rank (those without one last), each preceded by whatever of
    # its dependencies has not come yet: dependencies first whatever the
    # ranks say.
    ranked = sorted(found, key=lambda n: (n._rank is None, n._rank or 0))
    return _engine.node_order(ranked, Node)


#: Tasks per part of a graph sent in parts (as many as the engine puts in
#: one message): the specs of a large graph never all exist at once.
PART = 10_000


def send_graph(
    session: Session,
    roots: list[Node],
    wanted: set[str],
    table: OptionsTable,
    options: Options = DEFAULT,
    *,
    ends: bool = True,
    sent_wanted: list[str] | None = None,
) -> int:
    """Send every node reachable from ``roots`` that the cluster does not
    hold, dependencies first, a part at a time; returns the bytes of
    functions and arguments sent. Keys in ``wanted`` are the ones the
    client will hold futures for. Every task has ``options``, under the
    ``dask.annotate`` options of its own node; each distinct set goes into
    ``table``.

    The caller holds ``session.submitting``. With ``ends`` the last part
    ends the graph; without, the graph stays open for the caller's own
    ``session.submit_part(..., last=True)``, which the graph waits for in
    the scheduler. If a part cannot be made, the graph is ended (the
    scheduler drops what no one wants) and the error raised; the wanted
    keys sent before it are in ``sent_wanted``, each with a reference the
    caller lets go of.
    """
    common = table.index(options)

    def options_of(node: Node) -> int:
        """The options of a node with annotations of its own."""
        return table.index(parse(options, **node._options))  # type: ignore[arg-type]

    order = submission_order(roots)
    size = 0
    ended = False
    try:
        for start in range(0, max(len(order), 1), PART):
            # The engine reads each node's slots into its spec.
            part = _engine.GraphPart(order[start : start + PART], wanted, common, options_of)
            last = ends and start + PART >= len(order)
            size += session.submit_graph_part(part, table, last)
            if sent_wanted is not None:
                sent_wanted.extend(part.wanted_keys)
        ended = True
    finally:
        if not ended:
            session.submit_part([], table, [], True)
    return size


def submit_graph(session: Session, roots: list[Node], options: Options = DEFAULT) -> list[str]:
    """Send the graph behind ``roots``, its tasks with ``options`` (under
    their own annotations); returns the roots' keys, each holding one new
    reference the caller hands to a future.

    The specs are made and sent a part at a time, so the client holds the
    user's graph and one part of specs, not every spec at once.
    """
    wanted = {n._key for n in roots}
    sent: list[str] = []
    with session.submitting:
        try:
            size = send_graph(session, roots, wanted, OptionsTable(), options, sent_wanted=sent)
        except BaseException:
            for key in sent:  # the outputs sent before the failure
                session.drop_ref(key)
            raise
    warn_if_large(size)
    # Outputs already held (persisted, or computed earlier), and outputs
    # named twice, get a reference of their own.
    seen: set[str] = set()
    for n in roots:
        if n._future is not None or n._key in seen:
            session.add_ref(n._key)
        seen.add(n._key)
    return [n._key for n in roots]


def call_node(
    func: Callable[..., Any],
    args: tuple,
    kwargs: dict,
    *,
    pure: bool = False,
    key: str | None = None,
    name: str | None = None,
    length: int | None = None,
    cls: type[Node] = Node,
    pickled: tuple[int, str, bytes] | None = None,
) -> Any:
    """A node (of class ``cls``) for ``func(*args, **kwargs)``; nodes and
    futures anywhere in the arguments become dependencies. ``pickled`` is
    ``func`` as :func:`.serialize.dumps_function` gives it, if the caller
    has it already.
    """
    fn = pickled or serialize.dumps_function(func)
    label = name or fn[1]
    frames, deps = serialize.dumps_args(args, kwargs, label)
    if key is None:
        key = keys.task_key(label, fn[0], frames, pure, [d._key for d in deps] if pure else ())
    else:
        key = keys.check_key(key, "dask_key_name")
    # Kept as tuples: the garbage collector stops visiting a tuple of bytes
    # once it has seen it, and a graph of a million nodes is collected
    # many times while it is built.
    return cls(key, fn, tuple(frames), tuple(deps), length)


def _identity(x: Any) -> Any:
    return x


def value_node(
    value: Any, key: str | None = None, length: int | None = None, cls: type[Node] = Node
) -> Any:
    """A node (of class ``cls``) whose value is ``value``.

    Futures and nodes anywhere inside become dependencies (the node rebuilds
    the value on a worker); plain data is shipped as it is.
    """
    what = f"the value {key or type(value).__name__}"
    frames, deps = serialize.dumps_args((value,), {}, what)
    if deps:
        fn = serialize.dumps_function(_identity)
        key = key or keys.task_key(type(value).__name__, 0, frames, pure=False)
        return cls(key, fn, frames, tuple(deps), length)
    data = serialize.dumps(value)
    key = key or keys.task_key(type(value).__name__, 0, data, pure=True)
    return cls(key, None, data, (), length)
