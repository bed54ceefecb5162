"""Delayed objects and dask collections: ``compute``, ``persist`` and
``get``. Part of :class:`Client`.
"""

from __future__ import annotations

from typing import Any

from ..core import aio, nested, options
from ..core.arguments import UNSET
from ..dask.graphs import run_dask_graph
from ..delayed import as_node, collect, delayed, persist_on, submit_nodes
from ..futures import Future
from .submit import check_task_options


class Collections:
    """The Client's calls for Delayed objects and dask collections."""

    def compute(
        self,
        collections: Any,
        sync: bool = False,
        optimize_graph: bool = True,
        workers: Any = None,
        allow_other_workers: bool = False,
        resources: Any = None,
        retries: int = 0,
        priority: int = 0,
        fifo_timeout: Any = UNSET,
        actors: Any = None,
        traverse: bool = True,
        limits: str | list[str] | None = None,
        **kwargs: Any,
    ) -> Any:
        """Start computing Delayed objects (or dask collections) in the cluster.

        Parameters
        ----------
        collections
            A Delayed or dask collection, or a list of them.
        sync
            Return the results instead of Futures.
        optimize_graph
            Optimize dask collections' graphs as dask would.
        workers, resources, allow_other_workers, retries, priority
            As for :meth:`submit`, for every task of the graphs.
        traverse
            Look for lazy objects inside lists, tuples, sets and dicts among
            ``collections`` (each such container becomes one Future).
        limits
            Cluster-wide limits every task of the graphs counts against (see
            :meth:`set_limit`).
        fifo_timeout
            As for :meth:`submit`: a duration; tasks of equal priority run
            in submission order.
        actors, **kwargs
            Dask's options that shoal does not support yet: each raises
            ``NotImplementedError`` unless left unset.

        Returns
        -------
        A Future per collection (one Future for a single collection), or
        the results with ``sync=True``.

        """
        check_task_options(fifo_timeout, actors)
        opts = options.parse_arguments(locals())
        single, items = _collections_given(collections, kwargs)
        lazy = [self._as_lazy(x, traverse) for x in items]
        self._check_running()
        nodes = [as_node(x, optimize_graph) for x in lazy if x is not None]
        futures = iter(submit_nodes(self, nodes, opts))
        out = [next(futures) if x is not None else item for item, x in zip(items, lazy)]
        if sync:
            out = self.gather(out)
        return out[0] if single else out

    @staticmethod
    def _as_lazy(x: Any, traverse: bool) -> Any:
        """``x`` if lazy; a container of lazy objects as one Delayed (with
        ``traverse``); else None.
        """
        found = collect((x,), traverse)
        if not found:
            return None
        if found[0] is x:
            return x
        return delayed(x)

    def persist(
        self,
        collections: Any,
        optimize_graph: bool = True,
        workers: Any = None,
        allow_other_workers: bool = False,
        resources: Any = None,
        retries: int | None = None,
        priority: int = 0,
        fifo_timeout: Any = UNSET,
        actors: Any = None,
        limits: str | list[str] | None = None,
        **kwargs: Any,
    ) -> Any:
        """Start computing in the cluster and return objects backed by the
        results, so later graphs reuse them instead of recomputing.

        A dask collection comes back as the same kind of collection whose
        graph holds futures of its partitions, as in Dask: the data stays
        on the workers until the collection is dropped.

        Parameters
        ----------
        collections
            A Delayed or dask collection, or a list of them.
        optimize_graph
            Optimize dask collections' graphs as dask would.
        workers, resources, allow_other_workers, retries, priority
            As for :meth:`submit`, for every task of the graphs (under any
            ``dask.annotate`` annotations of their own).
        limits
            Cluster-wide limits every task of the graphs counts against (see
            :meth:`set_limit`).
        fifo_timeout
            As for :meth:`submit`: a duration; tasks of equal priority run
            in submission order.
        actors, **kwargs
            Dask's options that shoal does not support yet: each raises
            ``NotImplementedError`` unless left unset.

        Returns
        -------
        The persisted collection(s), like ``collections``.

        Examples
        --------
        >>> df = client.persist(df)  # doctest: +SKIP
        >>> wait(df)  # doctest: +SKIP

        """
        check_task_options(fifo_timeout, actors)
        opts = options.parse_arguments(locals())
        single, items = _collections_given(collections, kwargs)
        self._check_running()
        out = persist_on(self, items, optimize_graph=optimize_graph, opts=opts)
        return out[0] if single else out

    def normalize_collection(self, collection: Any) -> Any:
        """A copy of a dask collection (or dask ``Delayed``) whose graph
        takes, for every key this client holds a future for (persisted
        earlier), that future instead of the tasks computing it; the
        collection given is left as it was.

        Examples
        --------
        >>> y = client.persist(x + 1)  # doctest: +SKIP
        >>> z = client.normalize_collection((x + 1).sum())  # doctest: +SKIP

        """
        import copy

        from dask.core import flatten
        from dask.delayed import Delayed as DaskDelayed
        from dask.optimization import cull

        from ..dask.graphs import stringify

        graph = dict(collection.__dask_graph__())
        held = self.futures
        for k in graph:
            text = stringify(k)
            if text in held:
                graph[k] = Future(text, self)
        graph, _ = cull(graph, list(flatten(collection.__dask_keys__())))
        if isinstance(collection, DaskDelayed):
            return DaskDelayed(collection.key, graph)
        out = copy.copy(collection)
        out.dask = graph
        return out

    def get(
        self,
        dsk: Any,
        keys: Any,
        workers: Any = None,
        allow_other_workers: Any = None,
        resources: Any = None,
        sync: bool = True,
        asynchronous: Any = None,
        direct: Any = None,
        retries: Any = None,
        priority: int = 0,
        fifo_timeout: Any = UNSET,
        actors: Any = None,
        **kwargs: Any,
    ) -> Any:
        """Run a dask-style task graph and return the values of ``keys``.

        This is the protocol ``dask.compute(x, scheduler=client)`` calls.

        Parameters
        ----------
        dsk
            A dict graph (old-style tuples or task-spec nodes) or a graph
            expression.
        keys
            A key or a nested list of keys.
        workers, resources, allow_other_workers, retries, priority
            As for :meth:`submit`, for every task of the graph.
        sync
            Return the values (default); False returns Futures of them,
            nested like ``keys``.
        asynchronous
            Return a coroutine of the values (default: as the client is).
        fifo_timeout
            As for :meth:`submit`: a duration; tasks of equal priority run
            in submission order.
        direct
            As for :meth:`gather`: False reads the values through the
            scheduler.
        actors
            Dask's option that shoal does not support yet: it raises
            ``NotImplementedError`` unless left unset.
        **kwargs
            None are accepted: an unknown option raises ``TypeError``.

        Returns
        -------
        The values, nested like ``keys`` (a coroutine of them on an
        asynchronous client); with ``sync=False``, Futures.

        Examples
        --------
        >>> client.get({"x": (inc, 1), "y": (inc, "x")}, "y")  # doctest: +SKIP
        3

        """
        check_task_options(fifo_timeout, actors)
        opts = options.parse_arguments(locals())
        if direct is not None and not isinstance(direct, bool):
            raise TypeError(f"direct must be True, False or None, not {direct!r}")
        if kwargs:
            raise TypeError(f"get() got unexpected keyword arguments {sorted(kwargs)}")
        self._check_running()
        futures = run_dask_graph(self, dsk, keys, opts)
        if not sync:
            return futures
        if aio.wants_coroutine(self, asynchronous):
            return self._aget(futures, direct)
        try:
            return self.gather(futures, direct=direct, asynchronous=asynchronous)
        except BaseException:
            _release(futures)  # not kept alive by the traceback
            raise

    async def _aget(self, futures: Any, direct: bool | None) -> Any:
        try:
            return await self.gather(futures, direct=direct, asynchronous=True)
        except BaseException:
            _release(futures)
            raise


def _release(futures: Any) -> None:
    """Release every Future in ``futures`` (nested) now."""
    for f in nested.leaves(futures):
        if isinstance(f, Future):
            f.release()


def _collections_given(collections: Any, kwargs: dict[str, Any]) -> tuple[bool, list[Any]]:
    """Whether ``compute``/``persist`` was given one collection, and the
    collections as a list; refuses dask optimization options.
    """
    if kwargs:
        raise NotImplementedError(
            f"shoal does not pass optimization options {sorted(kwargs)} to dask yet: "
            "leave them unset"
        )
    single = not isinstance(collections, (list, tuple, set, frozenset))
    return single, [collections] if single else list(collections)
