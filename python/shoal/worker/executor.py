"""The executor threads of a worker: they pull tasks from the Rust runtime,
call the user's function, and hand back the pickled result or the error.
"""

from __future__ import annotations

import pickle
import threading
import time
import traceback
from typing import Any

from .. import _engine
from ..core import serialize


def _format_traceback(exc: BaseException) -> str:
    tb = exc.__traceback__
    # Drop the executor's own frame: the user's code starts below it.
    if tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    return "Traceback (most recent call last):\n" + "".join(traceback.format_tb(tb))


def _pickle_exception(exc: BaseException) -> list[bytes]:
    try:
        frames = serialize.dumps(exc)
        pickle.loads(frames[0], buffers=frames[1:])  # must round-trip on the client
        return frames
    except Exception:
        return []


def _report_failure(rt: Any, tid: int, exc: BaseException) -> None:
    """Tell the runtime task ``tid`` raised ``exc``."""
    rt.fail(tid, _pickle_exception(exc), type(exc).__name__, str(exc), _format_traceback(exc))


def _executor(rt: Any, functions: dict[int, Any]) -> None:
    """Run tasks until the runtime shuts down."""
    loads = serialize.loads
    dumps = serialize.dumps
    perf_counter = time.perf_counter
    set_deps = serialize.set_dependency_values
    while True:
        task = rt.next_task()
        if task is None:
            return
        tid, key = task.id, task.key
        try:
            fn = functions.get(task.func)
            if fn is None:
                data = task.function if task.function is not None else rt.function(task.func)
                if data is None:
                    raise RuntimeError(f"the function of task {key} never reached this worker")
                fn = functions[task.func] = pickle.loads(data)
            deps = task.deps
            if deps:
                set_deps({k: loads(f) for k, f in deps})
            try:
                args, kwargs = loads(task.args)
            finally:
                if deps:
                    set_deps(None)
            start = perf_counter()
            result = fn(*args, **kwargs)
            duration = perf_counter() - start
        except BaseException as e:  # the task's failure, whatever it is, goes back
            _report_failure(rt, tid, e)
            continue
        try:
            frames = dumps(result)
        except Exception as e:
            err = TypeError(
                f"Could not serialize the result of task {key} "
                f"(type {type(result).__module__}.{type(result).__qualname__}): {e}"
            )
            _report_failure(rt, tid, err)
            continue
        rt.finish(tid, key, frames, type(result).__name__, duration)


def start_executors(rt: Any, nthreads: int) -> list[threading.Thread]:
    """Start ``nthreads`` daemon executor threads pulling from ``rt``."""
    functions: dict[int, Any] = {}
    threads = []
    for i in range(nthreads):
        t = threading.Thread(
            target=_executor, args=(rt, functions), name=f"shoal-executor-{i}", daemon=True
        )
        t.start()
        threads.append(t)
    return threads


def start_in_process(
    address: str, nthreads: int, name: str | None = None, memory_limit: int = 0
) -> Any:
    """Start a worker on threads of this process; returns its runtime."""
    rt = _engine.WorkerRuntime(address, nthreads, name, None, 10.0, memory_limit)
    start_executors(rt, nthreads)
    return rt
