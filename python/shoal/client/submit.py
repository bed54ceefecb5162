"""Submitting work: ``submit``, ``map``, ``scatter``, ``cancel``,
``retry``, the executor and limits. Part of :class:`Client`.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Callable

from ..actor import factory as actor_factory
from ..cfexecutor import ClientExecutor
from ..core import aio, arguments, families, keys, lift, options, serialize
from ..core.arguments import UNSET
from ..core.errors import FutureCancelledError
from ..core.graph import send_graph
from ..core.options import OptionsTable
from ..core.retry import retry_filter
from ..core.scatter import scatter as scatter_items
from ..core.spec import task_spec, task_specs
from ..core.times import parse_timedelta
from ..delayed import Delayed
from ..futures import Future
from .workers import collect_keys, worker_names


class Submitting:
    """The Client's calls that make tasks."""

    def submit(
        self,
        func: Callable[..., Any],
        *args: Any,
        key: str | None = None,
        workers: Any = None,
        resources: Any = None,
        retries: int | None = None,
        priority: int = 0,
        fifo_timeout: Any = UNSET,
        allow_other_workers: bool = False,
        actor: bool = False,
        actors: bool = False,
        pure: bool = True,
        retry_delay: float | None = None,
        retry_max_delay: float | None = None,
        retry_on: Any = None,
        limits: str | list[str] | None = None,
        **kwargs: Any,
    ) -> Future:
        """Run ``func(*args, **kwargs)`` on the cluster; return a Future at once.

        Parameters
        ----------
        func
            The function to run.
        *args, **kwargs
            Its arguments. Futures and Delayed objects anywhere inside are
            replaced by their values on the worker.
        key
            The task's key (default: the function's name and a token).
        workers
            Worker names, hosts or addresses the task may run on.
        resources
            Abstract resources the task needs while it runs, like
            ``{"GPU": 1}``: it goes only to a worker started with them (see
            ``shoal worker --resources``) where they are free.
        allow_other_workers
            With ``workers``: run anywhere when none of them is connected.
        retries
            Run a failed task again up to this many times.
        priority
            Higher priority tasks run first.
        pure
            Name the task by its inputs, so equal calls share one key and run
            once (default).
        retry_delay, retry_max_delay
            Make retries wait: ``retry_delay`` seconds before the first,
            doubling (with jitter) up to ``retry_max_delay``. The task holds
            no thread while it waits. Default: retry at once, as Dask.
        retry_on
            An exception class, or a tuple of them: only these errors are
            retried; any other fails the task at once. Default: all.
        limits
            The name of a cluster-wide limit (see :meth:`set_limit`), or a
            list of names: the task waits, holding no thread, until every one
            lets it start.
        actor, actors
            ``func`` is a class: build one object of it on a worker and keep
            it there; the future's result is an :class:`~shoal.Actor`
            handle whose method calls run on that object.
        fifo_timeout
            Dask's window within which calls count as the same priority (a
            duration such as ``"100 ms"``). shoal runs tasks of equal
            priority in submission order, which any window allows.

        Returns
        -------
        Future

        Examples
        --------
        >>> client.submit(inc, 1).result()  # doctest: +SKIP
        2

        """
        if not callable(func):
            raise TypeError("First input to submit must be a callable function")
        check_task_options(fifo_timeout)
        opts = options.parse(
            priority=priority,
            retries=retries,
            retry_delay=retry_delay,
            retry_max_delay=retry_max_delay,
            workers=workers,
            resources=resources,
            allow_other_workers=allow_other_workers,
            limits=limits,
        )
        h, name, functions, pure = self._task_function(func, actor or actors, pure, retry_on)
        frames, deps = serialize.dumps_args(args, kwargs, name)
        if serialize.nbytes(frames) > lift.MAX_SPEC_BYTES:
            args, kwargs, lifted = lift.lift_large(self.scatter, args, kwargs)
            if lifted:
                frames, deps = serialize.dumps_args(args, kwargs, name)
        if key is None:
            key = keys.task_key(name, h, frames, pure, [d._key for d in deps])
        else:
            key = keys.check_key(key)
        if not deps:
            # The common case, kept cheap: one task, its options alone.
            spec = task_spec(key, h, frames, [], options=0)
            self._session.submit_specs(functions, [opts.engine], [spec])
            return Future._adopt(key, self)
        _refuse_cancelled(deps)
        table = OptionsTable()
        spec = task_spec(key, h, frames, [d._key for d in deps], options=table.index(opts))
        self._submit_with_graphs(deps, functions, table, [spec])
        return Future._adopt(key, self)

    def _task_function(
        self, func: Callable[..., Any], actor: bool, pure: bool, retry_on: Any
    ) -> tuple[int, str, list[Any], bool]:
        """The function ``submit`` and ``map`` tasks run (an actor's
        factory, under the retry filter): its hash, its name, the
        definitions to send with it, and whether its calls are pure.
        """
        self._check_running()
        self._session.share_imports()
        if actor:
            func, pure = actor_factory(func), False  # each call makes a new actor
        h, name, functions = self._session.function(retry_filter(func, retry_on))
        return h, name, functions, pure

    def _submit_with_graphs(
        self, deps: list[Any], functions: list[Any], table: OptionsTable, specs: list[Any]
    ) -> None:
        """Send ``specs`` after the graphs behind the Delayed objects among
        ``deps`` (with default options under their annotations), as one
        graph: the scheduler keeps those graphs until the specs that need
        them arrive (a task nobody wants and nothing depends on yet would be
        dropped).
        """
        lazy = [d for d in deps if isinstance(d, Delayed)]
        if not lazy:
            self._session.submit(functions, table, specs)
            return
        session = self._session
        with session.submitting:
            send_graph(session, lazy, set(), table, ends=False)
            session.submit_part(functions, table, specs, True)

    def map(
        self,
        func: Callable[..., Any],
        *iterables: Iterable[Any],
        key: str | list[str] | None = None,
        workers: Any = None,
        retries: int | None = None,
        resources: Any = None,
        priority: int = 0,
        allow_other_workers: bool = False,
        fifo_timeout: Any = UNSET,
        actor: bool = False,
        actors: bool = False,
        pure: bool = True,
        batch_size: int | None = None,
        retry_delay: float | None = None,
        retry_max_delay: float | None = None,
        retry_on: Any = None,
        limits: str | list[str] | None = None,
        **kwargs: Any,
    ) -> list[Future]:
        """Run ``func`` on each element of the iterables; return a list of Futures.

        Parameters
        ----------
        func
            The function to run.
        *iterables
            Its positional arguments, element by element (as ``map``).
        key
            A prefix for the keys, or a list of explicit keys.
        workers, resources, allow_other_workers
            As for :meth:`submit`.
        retries, priority, pure, retry_delay, retry_max_delay, retry_on, limits
            As for :meth:`submit`.
        **kwargs
            Keyword arguments passed to every call.
        actor, actors
            Make one actor per element (see :meth:`submit`).
        batch_size
            Send the tasks in batches of at most this many (the cluster
            starts on the first while later ones are pickled); default: one
            batch.
        fifo_timeout
            Dask's window within which calls count as the same priority (a
            duration such as ``"100 ms"``). shoal runs tasks of equal
            priority in submission order, which any window allows.

        Returns
        -------
        list of Future

        Examples
        --------
        >>> client.gather(client.map(inc, range(3)))  # doctest: +SKIP
        [1, 2, 3]

        """
        if not callable(func):
            raise TypeError("First input to map must be a callable function")
        if not iterables:
            raise TypeError("map needs at least one iterable")
        for it in iterables:
            if isinstance(it, (str, bytes, dict)):
                raise TypeError(f"Dask-style map does not iterate over a {type(it).__name__}")
            if not isinstance(it, Iterable):
                raise TypeError(f"{type(it).__name__} object is not iterable")
        check_task_options(fifo_timeout)
        if batch_size is not None:
            if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
                raise ValueError(
                    f"batch_size must be a whole number, 1 or more, not {batch_size!r}"
                )
            rows = list(zip(*iterables))
            if isinstance(key, (list, tuple)) and len(key) != len(rows):
                raise ValueError(f"map was given {len(key)} keys for {len(rows)} elements")
            out: list[Future] = []
            for start in range(0, len(rows), batch_size):
                part = rows[start : start + batch_size]
                out += self.map(
                    func,
                    *zip(*part),
                    key=key[start : start + batch_size] if isinstance(key, (list, tuple)) else key,
                    workers=workers,
                    retries=retries,
                    resources=resources,
                    priority=priority,
                    allow_other_workers=allow_other_workers,
                    actor=actor,
                    actors=actors,
                    pure=pure,
                    retry_delay=retry_delay,
                    retry_max_delay=retry_max_delay,
                    retry_on=retry_on,
                    limits=limits,
                    **kwargs,
                )
            return out
        opts = options.parse_arguments(locals())
        h, name, functions, pure = self._task_function(func, actor or actors, pure, retry_on)
        prefix = key if isinstance(key, str) else name
        explicit = key if isinstance(key, (list, tuple)) else None
        max_spec = lift.MAX_SPEC_BYTES
        all_keys: list[str] = []
        all_frames: list[list[bytes]] = []
        all_deps: list[list[str]] = []
        lazy: list[Any] = []
        for i, args in enumerate(zip(*iterables)):
            frames, deps = serialize.dumps_args(args, kwargs, name)
            if (len(frames) > 1 or len(frames[0]) > max_spec) and serialize.nbytes(
                frames
            ) > max_spec:
                args, kw, lifted = lift.lift_large(self.scatter, args, kwargs)
                if lifted:
                    frames, deps = serialize.dumps_args(args, kw, name)
            if deps:
                _refuse_cancelled(deps)
                lazy.extend(d for d in deps if isinstance(d, Delayed))
                deps = [d._key for d in deps]
            if explicit is not None:
                if i >= len(explicit):
                    raise ValueError("map was given fewer keys than elements")
                k = keys.check_key(explicit[i])
            else:
                k = keys.task_key(prefix, h, frames, pure, deps)
            all_keys.append(k)
            all_frames.append(frames)
            all_deps.append(deps)
        if explicit is not None and len(explicit) != len(all_keys):
            raise ValueError(f"map was given {len(explicit)} keys for {len(all_keys)} elements")
        # The graphs behind Delayed arguments go in one graph with the tasks
        # that need them (see _submit_with_graphs).
        table = OptionsTable()
        specs = task_specs(all_keys, h, all_frames, all_deps, table.index(opts))
        self._submit_with_graphs(lazy, functions, table, specs)
        return [Future._adopt(k, self) for k in all_keys]

    @aio.maybe_async
    def scatter(
        self,
        data: Any,
        workers: Any = None,
        broadcast: bool = False,
        direct: Any = None,
        hash: bool = True,
        timeout: Any = UNSET,
        asynchronous: Any = None,
    ) -> Any:
        """Move data into the cluster; return Futures pointing at it.

        Parameters
        ----------
        data
            A list, tuple or set (a list of Futures back), a dict (a dict of
            Futures, its keys becoming the task keys), or one value (one
            Future).
        workers
            Workers the data may live on.
        broadcast
            Copy the data onto every worker (of ``workers``, if given)
            before returning, as :meth:`replicate` does. Without it, workers
            fetch the data from each other on first use.
        hash
            Name data by its content, so equal data shares one key.
        direct
            True sends every value straight to a worker; False sends every
            value through the scheduler (which keeps a copy, so it outlives
            its worker). By default values larger than 64 KiB pickled go
            straight to a worker and smaller ones through the scheduler.
        timeout
            Wait until the data is on a worker, at most this long (seconds,
            or a string such as ``"5 s"``); raise ``TimeoutError`` after.
            By default ``scatter`` returns at once.
        asynchronous
            Dask's option that shoal does not support yet: it raises
            ``NotImplementedError`` unless left unset.

        Returns
        -------
        Future, or a list or dict of them.

        """
        if direct is not None and not isinstance(direct, bool):
            raise TypeError(f"direct must be True, False or None, not {direct!r}")
        arguments.reject("asynchronous", asynchronous)
        wait_for = None if timeout is UNSET else parse_timedelta(timeout)
        self._check_running()
        if isinstance(data, dict):
            items: list[tuple[str | None, Any]] = [(str(k), v) for k, v in data.items()]
        elif isinstance(data, (list, tuple, set, frozenset)):
            items = [(None, v) for v in data]
        else:
            items = [(None, data)]
        for _, value in items:
            families.check_sendable(value, self._serializers, "the scattered value")
        names = scatter_items(
            self._session,
            items,
            worker_names(workers),
            options.parse(workers=workers),
            hash,
            wait_for,
            direct,
        )
        futures = [Future._adopt(k, self) for k in names]
        for f, (_, value) in zip(futures, items):
            f._known_type = type(value)  # Future.type at once, as in Dask
        if wait_for is not None and not self._session.wait(names, wait_for):
            raise TimeoutError(f"scattered data did not reach a worker within {timeout}")
        if broadcast:
            self._replicate(names, None, worker_names(workers), 2)
        if isinstance(data, dict):
            return dict(zip(data.keys(), futures))
        if isinstance(data, tuple) and hasattr(data, "_fields"):
            return type(data)(*futures)  # a namedtuple of Futures, as in Dask
        if isinstance(data, (list, tuple, set, frozenset)):
            return futures
        return futures[0]

    @aio.maybe_async
    def cancel(
        self,
        futures: Any,
        asynchronous: Any = None,
        force: bool = False,
        reason: str | None = None,
    ) -> None:
        """Cancel futures.

        They stop running if they have not started, and their ``result()``
        raises ``CancelledError``; so do the futures of this client that
        depend on them.

        Parameters
        ----------
        futures
            A Future, or lists, tuples, sets and dicts of them.
        reason
            Why, shown in the error their results raise.
        asynchronous, force
            Dask's options that shoal does not support yet: each raises
            ``NotImplementedError`` unless left unset.

        """
        arguments.reject("asynchronous", asynchronous)
        arguments.reject("force", force)
        found: dict[str, None] = {}
        collect_keys(futures, found)
        self._session.cancel(list(found), reason)

    @aio.maybe_async
    def retry(self, futures: Any, asynchronous: Any = None) -> None:
        """Run failed futures' tasks again, with the failed tasks they
        depend on; futures that did not fail are left as they are.

        Parameters
        ----------
        futures
            A Future, or lists, tuples, sets and dicts of them.
        asynchronous
            Dask's option that shoal does not support yet: it raises
            ``NotImplementedError`` unless left unset.

        Examples
        --------
        >>> f = client.submit(flaky_download, url)  # doctest: +SKIP
        >>> wait(f); f.status  # doctest: +SKIP
        'error'
        >>> client.retry([f])  # doctest: +SKIP
        >>> f.result()  # doctest: +SKIP

        """
        arguments.reject("asynchronous", asynchronous)
        found: dict[str, None] = {}
        collect_keys(futures, found)
        self._session.retry(list(found))

    def get_executor(self, **kwargs: Any) -> ClientExecutor:
        """This cluster as a :class:`concurrent.futures.Executor`.

        Parameters
        ----------
        **kwargs
            Options for every task, as :meth:`submit` takes them
            (``workers``, ``resources``, ``retries``, ``priority``, ``pure``,
            ...); a call to the executor's ``submit`` may give its own.

        Returns
        -------
        ClientExecutor
            Its ``submit`` returns :class:`concurrent.futures.Future` objects.

        Examples
        --------
        >>> with client.get_executor() as ex:  # doctest: +SKIP
        ...     list(ex.map(inc, range(3)))
        [1, 2, 3]

        """
        return ClientExecutor(self, **kwargs)

    def set_limit(
        self,
        name: str,
        concurrency: int | None = None,
        rate: float | None = None,
        burst: float | None = None,
    ) -> None:
        """Create or change a cluster-wide limit on tasks tagged ``limits=name``.

        The scheduler enforces it for every client: a tagged task is not sent
        to a worker until the limit lets it start, so it holds no thread while
        it waits, and other work flows around it. Changes apply at once, also
        to tasks already waiting; ``scheduler_info()["limits"]`` shows each
        limit with its ``running`` and ``waiting`` tasks.

        Parameters
        ----------
        name
            The limit's name.
        concurrency
            At most this many tagged tasks run at once (0 pauses them).
        rate
            At most this many tagged tasks start per second...
        burst
            ... with bursts of up to this many (default 1).

        Examples
        --------
        >>> client.set_limit("api", concurrency=8, rate=10, burst=5)  # doctest: +SKIP
        >>> client.map(call_api, urls, limits="api")  # doctest: +SKIP

        """
        if not isinstance(name, str) or not name:
            raise TypeError(f"a limit's name must be a non-empty string, not {name!r}")
        if concurrency is None and rate is None:
            raise ValueError("a limit needs a concurrency, a rate, or both")
        if concurrency is not None and (
            isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 0
        ):
            raise ValueError(f"concurrency must be a whole number, 0 or more, not {concurrency!r}")
        if rate is not None and not float(rate) > 0:
            raise ValueError(f"rate must be a positive number of tasks per second, not {rate!r}")
        if burst is not None and (rate is None or not float(burst) >= 1):
            raise ValueError("burst goes with a rate and must be 1 or more")
        self._check_running()
        self._session.set_limit(
            name,
            concurrency,
            None if rate is None else float(rate),
            None if burst is None else float(burst),
        )


def _refuse_cancelled(deps: list[Any]) -> None:
    """Raise ``FutureCancelledError`` for a task given a cancelled future,
    as Dask's result would: its input will never come.
    """
    for d in deps:
        if isinstance(d, Future) and d.status == "cancelled":
            raise FutureCancelledError(d._key)


def check_task_options(fifo_timeout: Any, actors: Any = None) -> None:
    """Check Dask's ``fifo_timeout=``; refuse ``actors=`` unless unset.

    ``fifo_timeout`` is how far apart two calls may be and still count as
    the same priority, so that the later may run first. shoal runs tasks of
    equal priority in submission order, which every ``fifo_timeout``
    allows (Dask, too, breaks such ties in arrival order): the value only
    has to be a valid duration.
    """
    if fifo_timeout is UNSET and (actors is None or actors is False):
        return  # the common case, kept cheap: submit is called in tight loops
    if fifo_timeout is not UNSET and fifo_timeout is not None:
        try:
            parse_timedelta(fifo_timeout)
        except (TypeError, ValueError) as e:
            raise ValueError(f"fifo_timeout={fifo_timeout!r} is not a duration: {e}") from None
    arguments.reject("actors", actors)
