"""The executor threads of a worker: they pull tasks from the Rust runtime,
call the user's function, and hand back the pickled result or the error.

A worker starts ``nthreads`` executor threads. Its runtime's pacer (in
Rust) lets more tasks run at once while the running ones wait on I/O, and
asks for more executor threads as it needs them (up to ``max_threads``).
A task whose function is ``async def`` runs on the worker's event loop: its
executor hands it off and takes the next task, so thousands can await at
once without holding a thread each.
"""

from __future__ import annotations

import importlib
import logging
import pickle
import sys
import threading
import time
import traceback
from concurrent.futures import Future as ConcurrentFuture
from pathlib import Path
from types import CoroutineType
from typing import TYPE_CHECKING, Any

from .._engine import ControlItem, TaskError
from ..core import serialize
from ..core.errors import Reschedule
from ..core.preload import Preloads
from ..core.retry import NotRetried
from ..core.settings import setting
from . import task_context, template
from .held import held_size
from .inputs import DEFAULT_BUDGET, InputCache
from .options import WorkerOptions
from .profile import Profiler
from .uploads import Uploads, private_root

if TYPE_CHECKING:
    import asyncio

_log = logging.getLogger("shoal")


def _format_traceback(exc: BaseException) -> str:
    tb = exc.__traceback__
    # Drop the executor's own frame: the user's code starts below it.
    if tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    return "Traceback (most recent call last):\n" + "".join(traceback.format_tb(tb))


#: Dask's ``distributed.admin.max-error-length``: longer error messages are cut.
MAX_ERROR_LENGTH_KEY = "distributed.admin.max-error-length"


def _truncated(exc: BaseException) -> BaseException:
    """``exc``, or (if its message is longer than Dask's
    ``distributed.admin.max-error-length``, 10,000 characters by default) an
    exception of its type with the message cut there, keeping its cause
    and traceback.
    """
    limit = int(setting(MAX_ERROR_LENGTH_KEY, 10_000))
    try:
        text = str(exc)
    except Exception:
        return exc
    if len(text) <= limit:
        return exc
    short_text = text[:limit] + "..."
    try:
        short = type(exc)(short_text)
    except Exception:
        short = Exception(short_text)
    short.__cause__ = exc.__cause__
    return short.with_traceback(exc.__traceback__)


def _causes(exc: BaseException) -> list[BaseException]:
    out: list[BaseException] = []
    seen = {id(exc)}
    nxt = exc.__cause__ or exc.__context__
    while nxt is not None and id(nxt) not in seen:
        seen.add(id(nxt))
        out.append(nxt)
        nxt = nxt.__cause__ or nxt.__context__
    return out


def _pickle_exception(exc: BaseException) -> list[bytes]:
    """The exception pickled with its cause and context chain (and their
    tracebacks), through tblib as Dask does; [] if it cannot be pickled.
    """
    from tblib import pickling_support

    try:
        pickling_support.install(exc, *_causes(exc))
        frames = serialize.dumps(exc)
        pickle.loads(frames[0], buffers=frames[1:])  # must round-trip on the client
        return frames
    except Exception:
        return []


def _report_failure(rt: Any, tid: int, exc: BaseException) -> None:
    """Tell the runtime task ``tid`` raised ``exc`` (final if the task's
    retry filter said so).
    """
    if isinstance(exc, Reschedule):
        rt.reschedule(tid)  # not a failure: the scheduler places it again
        return
    retryable = True
    if isinstance(exc, NotRetried):
        exc, retryable = exc.error, False
    rt.fail(tid, _raised(_truncated(exc)), retryable)


def _raised(exc: BaseException) -> TaskError:
    """``exc`` as the engine carries it to the client."""
    return TaskError.Raised(
        type(exc).__name__, str(exc), _format_traceback(exc), _pickle_exception(exc)
    )


def _report_result(
    rt: Any, tid: int, key: str, result: Any, duration: float, holding: dict[str, list[Any]]
) -> None:
    """Hand ``result`` to the runtime: as the object itself if the worker
    keeps it so (see :mod:`shoal.worker.held`), else pickled (or report why
    it cannot be).

    Futures inside the result (a task that submitted tasks and returns
    their futures) are kept in ``holding`` until the scheduler frees the
    result, so the tasks they point at outlive this task for whoever
    receives the result.
    """
    plain = serialize.dumps_plain(result)
    if plain is not None:  # a number, a short text: no future, nothing to keep
        rt.finish(tid, key, plain, type(result).__name__, duration, False)
        return
    nbytes = held_size(result)
    if nbytes is not None:
        rt.finish_held(tid, key, result, nbytes, serialize.type_name(type(result)), duration)
        return
    try:
        frames, found = serialize.dumps_args_like(result, f"the result of task {key}")
    except Exception as e:
        err = TypeError(
            f"Could not serialize the result of task {key} "
            f"(type {type(result).__module__}.{type(result).__qualname__}): {e.__cause__ or e}"
        )
        _report_failure(rt, tid, err)
        return
    futures = [f for f in found if getattr(f, "_is_future", False)] if found else None
    # An actor's handle: the worker hears when its key is freed, to drop
    # the actor then.
    keep = bool(futures) or getattr(type(result), "_keep_until_freed", False) is True
    if keep:
        holding[key] = futures or []
    if futures:
        _applied(futures)
    rt.finish(tid, key, frames, serialize.type_name(type(result)), duration, keep)


def _applied(futures: list[Any]) -> None:
    """Return once the scheduler has applied everything the futures'
    clients sent (their submissions): whoever receives this result asks
    for the keys, and must not ask before the scheduler knows them. A
    round trip on each client's connection is that barrier, since a
    connection's messages are applied in order.
    """
    clients = {id(f.client): f.client for f in futures if getattr(f, "client", None) is not None}
    for client in clients.values():
        try:
            client._session.barrier()
        except Exception:
            pass  # a closed client: the result reports what it can


class Executors:
    """The executor threads of one worker runtime, and its event loop.

    Parameters
    ----------
    rt
        The worker runtime (``shoal._engine.WorkerRuntime``).
    nthreads
        Executor threads to start now.
    root
        This user's directory for the worker's files.
    memory_limit
        The worker's memory limit (0: none); the inputs kept unpickled for
        the next tasks take at most a tenth of it.
    preloads
        Preloads whose ``dask_setup(worker)`` runs before any task or
        ``Client.run`` call does.

    """

    def __init__(
        self,
        rt: Any,
        nthreads: int,
        root: Path | None = None,
        memory_limit: int = 0,
        preloads: Preloads | None = None,
    ):
        self.rt = rt
        self.worker = task_context.Worker(rt, self)
        # Futures inside stored results, kept until the results are freed.
        self.holding: dict[str, list[Any]] = {}
        #: Files sent with ``Client.upload_file``.
        self.uploads = Uploads(root)
        budget = DEFAULT_BUDGET if not memory_limit else min(DEFAULT_BUDGET, memory_limit // 10)
        self.inputs = InputCache(serialize.loads, rt.watch, budget)
        self.functions: dict[int, Any] = {}
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None  # started on first use
        self._inflight: dict[int, ConcurrentFuture] = {}
        self._count = 0
        # Clear while a preload batch imports (see `preload`).
        self._to_preload: list[str] = []
        self._preloading = False
        # Set once the plugins the scheduler sent as this worker joined are
        # installed (see `_control`): executor threads wait for it.
        self._joined = threading.Event()
        #: The statistical profile of this worker's tasks (Client.profile).
        self.profiler = Profiler(self.worker.running, Executors._run.__code__)
        if preloads is not None:
            # before any thread takes work: tasks and run calls wait in the runtime
            self.worker.start_preloads(preloads)
        for _ in range(nthreads):
            self.spawn()
        rt.start_pacer(self.spawn, self.cancel, self.preload)
        threading.Thread(target=self._control, name="shoal-control", daemon=True).start()

    def spawn(self) -> None:
        """Start one more executor thread."""
        with self._lock:
            i = self._count
            self._count += 1
        t = threading.Thread(target=self._run, name=f"shoal-executor-{i}", daemon=True)
        t.start()

    def preload(self, modules: list[str]) -> None:
        """Import ``modules`` on a background thread while the worker is
        idle, so the first task that needs one finds it imported.

        One module at a time, only while no task is queued or computing
        (tasks blocked on I/O leave the CPU free): the imports use spare
        time, not the tasks'. A task that arrives during an
        import waits for that one import to finish (a package imported by two
        threads at once can be handed half-initialised to one of them).

        A worker forked from a template imports nothing here: it passes the
        names on to the template, so the workers forked later have them, and
        its own tasks import what they use, as on a cold worker.
        """
        if template.share(modules):
            return
        with self._lock:
            self._to_preload.extend(m for m in modules if m not in self._to_preload)
            if self._preloading:
                return
            self._preloading = True
        threading.Thread(target=self._preload_run, name="shoal-preload", daemon=True).start()

    def _preload_run(self) -> None:
        rt = self.rt
        while True:
            with self._lock:
                if not self._to_preload:
                    self._preloading = False
                    return
                # Top-level packages first: they are what tasks need most.
                self._to_preload.sort(key=lambda m: m.count("."))
                name = self._to_preload.pop(0)
            if name in sys.modules:
                continue
            # Close the gate (the runtime hands out no task while it is
            # closed), then look: a task that started before it closed is
            # seen running, and the import waits for it.
            rt.set_importing(True)
            while rt.busy():
                rt.set_importing(False)
                time.sleep(0.02)  # back off while tasks run; resume when idle
                rt.set_importing(True)
            try:
                importlib.import_module(name)
            except Exception as e:  # not installed here, or broken: a task will say
                _log.debug("could not preload %s: %s", name, e)
            finally:
                rt.set_importing(False)

    def _event_loop(self) -> asyncio.AbstractEventLoop:
        """The worker's event loop, started on first use on its own thread
        (asyncio is imported then: it costs 40 ms at a worker's start).
        """
        import asyncio

        with self._lock:
            if self._loop is None:
                loop = asyncio.new_event_loop()
                loop.call_soon(task_context.bind_thread, self.worker)
                threading.Thread(
                    target=loop.run_forever, name="shoal-event-loop", daemon=True
                ).start()
                self._loop = loop
            return self._loop

    def cancel(self, ids: list[int]) -> None:
        """Stop handed-off coroutines the scheduler cancelled."""
        for tid in ids:
            cf = self._inflight.get(tid)
            if cf is not None:
                cf.cancel()

    def _hand_off(self, tid: int, key: str, coro: Any, start: float) -> None:
        """Run a coroutine on the event loop; report it when it is done."""
        import asyncio

        rt = self.rt

        async def as_task() -> Any:
            task_context.async_key.set(key)  # this asyncio task's own context
            return await coro

        cf = asyncio.run_coroutine_threadsafe(as_task(), self._event_loop())
        self._inflight[tid] = cf
        rt.hand_off(tid)

        def done(f: ConcurrentFuture) -> None:
            self._inflight.pop(tid, None)
            duration = time.perf_counter() - start
            if f.cancelled():
                # The scheduler took it back; this report is not awaited.
                _report_failure(rt, tid, asyncio.CancelledError(f"{key} was cancelled"))
                return
            exc = f.exception()
            if exc is not None:
                _report_failure(rt, tid, exc)
            else:
                _report_result(rt, tid, key, f.result(), duration, self.holding)
            installed = self.worker.installed
            if installed.watching:
                installed.transition(key, "executing", "error" if exc else "memory")

        cf.add_done_callback(done)

    def _run(self) -> None:
        """Run tasks until the runtime shuts down."""
        rt = self.rt
        functions = self.functions
        loads = serialize.loads
        inputs = self.inputs
        perf_counter = time.perf_counter
        loads_args = serialize.loads_args
        holding = self.holding
        started, ended = task_context.task_started, task_context.task_done
        installed = self.worker.installed
        task_context.bind_thread(self.worker)
        task = fn = args = kwargs = result = deps = held = values = None
        self._joined.wait()
        while True:
            # Hold nothing of the last task while waiting for the next: its
            # result may be large, and the data store may have spilled it.
            task = fn = args = kwargs = result = deps = held = values = None
            # The runtime hands out no task while a preload import runs (a
            # fresh worker warming up): a task taken counts as started, and
            # must neither be blamed for a worker killed during the import
            # nor look to the pacer like a task blocked on I/O.
            task = rt.next_task()
            if task is None:
                return
            tid, key = task.id, task.key
            started(tid, key)
            if installed.watching:
                installed.transition(key, "ready", "executing")
            try:
                fn = functions.get(task.func)
                if fn is None:
                    data = task.function if task.function is not None else rt.function(task.func)
                    if data is None:
                        raise RuntimeError(f"the function of task {key} never reached this worker")
                    fn = functions[task.func] = pickle.loads(data)
                deps = task.deps
                if deps:
                    # The inputs in the order the arguments name them.
                    held = task.held
                    if held:
                        held = dict(held)
                        values = [held[k] if f is None else inputs.load(k, f) for k, f in deps]
                    else:
                        values = [inputs.load(k, f) for k, f in deps]
                    args, kwargs = loads_args(task.args, values)
                else:
                    args, kwargs = loads(task.args)
                rt.begin(tid)
                start = perf_counter()
                result = fn(*args, **kwargs)
                if type(result) is CoroutineType:
                    self._hand_off(tid, key, result, start)
                    ended()
                    continue
                duration = perf_counter() - start
            except BaseException as e:  # the task's failure, whatever it is, goes back
                _report_failure(rt, tid, e)
                if installed.watching:
                    installed.transition(key, "executing", "error")
                if ended():
                    return  # it seceded: another thread took its place
                continue
            _report_result(rt, tid, key, result, duration, holding)
            if installed.watching:
                installed.transition(key, "executing", "memory")
            if ended():
                return  # it seceded: another thread took its place

    def _control(self) -> None:
        """Serve work that is not a task: ``Client.run`` calls (each on a
        thread of its own), and freed results whose futures can go.
        """
        rt = self.rt
        task_context.bind_thread(self.worker)
        while True:
            item = rt.next_control(3600.0)
            if item is None:
                continue
            if isinstance(item, ControlItem.Closed):
                self._joined.set()  # let waiting executor threads see it close
                self.profiler.close()
                self.holding.clear()
                self.inputs.clear()
                self.worker.actors.clear()
                self.worker.close()
                self.uploads.remove()
                return
            if isinstance(item, ControlItem.Freed):
                for key in item.keys:
                    self.holding.pop(key, None)
                    self.worker.actors.pop(key, None)
                    self.inputs.forget(key)
            elif isinstance(item, ControlItem.Upload):
                try:
                    self.uploads.save(item.name, bytes(item.data))
                except Exception:
                    _log.exception("Could not load the uploaded file %s", item.name)
            elif isinstance(item, ControlItem.Plugin):
                try:
                    uid, plugin = serialize.loads(item.plugin)
                    self.worker.installed.install(self.worker, item.name, uid, plugin)
                except Exception:
                    _log.exception("Could not install the worker plugin %s", item.name)
            elif isinstance(item, ControlItem.Joined):
                # The plugins sent as this worker joined are installed (they
                # came first): tasks may start, as Dask's worker starts them
                # only once its plugins are set up.
                self._joined.set()
            elif isinstance(item, ControlItem.Run):
                threading.Thread(
                    target=self._run_call, args=(item.id, item.call), name="shoal-run", daemon=True
                ).start()

    def _run_call(self, call_id: int, frames: list[bytes]) -> None:
        """Run one ``Client.run`` call and answer it."""
        rt = self.rt
        task_context.bind_thread(self.worker)
        try:
            fn, args, kwargs = serialize.loads(frames)
            if _takes_dask_worker(fn):
                kwargs = {**kwargs, "dask_worker": self.worker}
            result = fn(*args, **kwargs)
            if type(result) is CoroutineType:
                import asyncio

                result = asyncio.run_coroutine_threadsafe(result, self._event_loop()).result()
            out = serialize.dumps(result)
        except BaseException as e:  # the caller gets the error
            rt.reply_error(call_id, _raised(e))
            return
        rt.reply_value(call_id, out)


def _takes_dask_worker(fn: Any) -> bool:
    """Whether ``fn`` has a ``dask_worker`` parameter (``Client.run`` passes
    the worker to it, as Dask does).
    """
    import inspect

    try:
        return "dask_worker" in inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False


def start_in_process(
    address: str, options: WorkerOptions, name: str | None = None, security: Any = None
) -> Any:
    """Start a worker on threads of this process; returns its runtime.

    Its results spill to disk above the target fraction of its memory
    limit; the process's memory is not its own, so it never pauses or
    restarts for it.
    """
    root = private_root(options.local_directory)
    rt = options.start_runtime(
        address,
        str(root),
        name=name,
        token=None if security is None else security.token,
        tls=None if security is None else security.tls_for("worker"),
    )
    Executors(rt, options.nthreads, root, options.memory_limit, Preloads(options.preload))
    return rt
