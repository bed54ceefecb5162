"""The worker template: one process per pool that imports, once, what the
workers will need (shoal, and the packages the client had imported), then
forks each worker from itself.

A worker so started is warm from its first task: it imports nothing in
the background while tasks run, and starting one (at the cluster's start,
after a crash, on ``Client.restart`` or when the cluster grows) costs a
fork instead of an interpreter and its imports.

The pool (``_engine.WorkerPool``, in Rust) talks to the template over its
standard input, a Unix socket, in lines:

* pool to template: ``credentials TEXT`` (first, once, when the workers
  read their credentials from standard input), then ``start SLOT``;
* template to pool: ``started SLOT PID``, ``refused SLOT WHY``, and
  ``exited SLOT STATUS`` once it has reaped that worker (the exit code, or
  minus the signal that killed it).

The socket is also the template's lifeline: at its end of file every
worker's own lifeline (a pipe the template holds, the worker's standard
input) is cut, and the template exits once they have.

Forking is safe only in a process with one thread. The imports asked for
later (modules the client imported after the cluster started, which
workers pass on with :func:`share`) run on a thread at idle priority, so
they take no CPU a task wants, and that thread has ended before any fork;
if a package started a thread of its own, the template refuses to fork
and the pool starts workers as new processes.

Usage: ``python -m shoal.worker.template [--imports a,b] -- WORKER-ARGS``
"""

from __future__ import annotations

import argparse
import gc
import importlib
import os
import runpy
import select
import signal
import socket
import sys
import threading
import traceback
from collections.abc import Iterable

from ..options import extend_sys_path

#: In a worker forked from a template: the pipe to tell it of modules to
#: import for the workers forked later (None elsewhere).
_news_fd: int | None = None


def share(modules: list[str]) -> bool:
    """In a worker forked from a template, pass ``modules`` on to the
    template (the workers forked later start with them imported) and
    return True; elsewhere return False.

    Parameters
    ----------
    modules
        Names of modules the client has imported.

    Returns
    -------
    bool
        Whether this worker has a template to tell.

    """
    if _news_fd is None:
        return False
    text = "".join(f"{m}\n" for m in modules if m and "\n" not in m)
    data = text.encode()
    # Writes of at most PIPE_BUF bytes are atomic: split on line ends.
    while data:
        cut = len(data) if len(data) <= 4096 else data.rfind(b"\n", 0, 4096) + 1
        try:
            os.write(_news_fd, data[:cut])
        except OSError:  # the template is gone: nothing to warm
            return True
        data = data[cut:]
    return True


def arguments(worker_argv: list[str], imports: Iterable[str]) -> list[str] | None:
    """The interpreter's arguments that run a template importing
    ``imports`` and forking workers with ``worker_argv``; None where
    workers are better started as new processes (outside Linux: macOS's
    system libraries are not safe to use in a child forked after they
    started).

    Parameters
    ----------
    worker_argv
        A worker's command line after ``shoal worker``.
    imports
        Modules to import before the first fork.

    Returns
    -------
    list of str or None
        Arguments for ``python`` (``-m shoal.worker.template ...``).

    """
    if not sys.platform.startswith("linux"):
        return None
    modules = ",".join(sorted(imports))
    return ["-m", "shoal.worker.template", "--imports", modules, "--", *worker_argv]


def _import(name: str) -> None:
    """Import ``name`` if it can be: one that cannot is a task's to report."""
    if name in sys.modules:
        return
    try:
        importlib.import_module(name)
    except (Exception, SystemExit):
        pass


#: Threads that packages start which make a fork safe themselves (their
#: library's fork handlers take its locks and set it up again in the child):
#: jemalloc's background thread, which pyarrow (imported by pandas) starts.
_FORK_SAFE_THREADS = frozenset({"jemalloc_bg_thd"})


def _other_threads() -> list[str]:
    """Names of this process's threads, other than the calling one, that
    would make a fork unsafe (none where /proc cannot tell).
    """
    me = str(threading.get_native_id())
    try:
        tids = os.listdir("/proc/self/task")
    except OSError:
        return []
    names = []
    for tid in tids:
        if tid == me:
            continue
        try:
            with open(f"/proc/self/task/{tid}/comm") as f:
                name = f.read().strip()
        except OSError:  # it ended meanwhile
            continue
        if name not in _FORK_SAFE_THREADS:
            names.append(name)
    return names


class _Importer:
    """Imports modules one at a time on a thread at idle priority, stopped
    (between two modules) before each fork.
    """

    def __init__(self) -> None:
        self._queue: list[str] = []
        self._lock = threading.Lock()
        self._stop = False
        self._thread: threading.Thread | None = None

    def add(self, names: list[str]) -> None:
        with self._lock:
            self._queue.extend(n for n in names if n not in self._queue)
        self.resume()

    def resume(self) -> None:
        with self._lock:
            if not self._queue or (self._thread is not None and self._thread.is_alive()):
                return
            self._stop = False
            thread = threading.Thread(target=self._run, name="shoal-template-import", daemon=True)
            self._thread = thread
        thread.start()

    def pause(self) -> None:
        """Return once no import runs (the thread has returned)."""
        with self._lock:
            thread, self._thread = self._thread, None
            self._stop = True
        if thread is not None:
            thread.join()

    def _run(self) -> None:
        try:
            os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
        except (AttributeError, OSError):
            pass
        while True:
            with self._lock:
                if self._stop or not self._queue:
                    return
                # Top-level packages first: they are what tasks need most.
                self._queue.sort(key=lambda m: m.count("."))
                name = self._queue.pop(0)
            _import(name)


def _settled_threads() -> list[str]:
    """:func:`_other_threads`, once an importer thread that has returned
    is gone from the kernel too (its last steps in C follow ``join()``:
    microseconds; bounded).
    """
    others = _other_threads()
    for _ in range(1000):
        if not others:
            break
        os.sched_yield()
        others = _other_threads()
    return others


class _Template:
    def __init__(self, link: socket.socket, worker_argv: list[str]) -> None:
        self.link = link
        self.worker_argv = worker_argv
        self.credentials: str | None = None
        #: Each running worker: its slot and the write end of its lifeline.
        self.children: dict[int, tuple[int, int]] = {}
        self.importer = _Importer()
        self.news_r, self.news_w = os.pipe()
        self.wake_r, self.wake_w = os.pipe()
        os.set_blocking(self.wake_w, False)
        os.set_blocking(self.wake_r, False)
        self._buffer = b""
        self._news = b""

    def say(self, line: str) -> None:
        try:
            self.link.sendall(f"{line}\n".encode())
        except OSError:
            pass  # the pool is gone: the end of file comes next

    def serve(self) -> None:
        signal.signal(signal.SIGCHLD, lambda signum, frame: None)
        signal.set_wakeup_fd(self.wake_w)
        open_link = True
        while open_link or self.children:
            watched = [self.wake_r, self.news_r] + ([self.link] if open_link else [])
            try:
                ready, _, _ = select.select(watched, [], [])
            except InterruptedError:
                ready = []
            if self.wake_r in ready:
                while True:
                    try:
                        if not os.read(self.wake_r, 512):
                            break
                    except BlockingIOError:
                        break
            self.reap()
            if self.news_r in ready:
                self.read_news()
            if open_link and self.link in ready:
                open_link = self.read_requests()
                if not open_link:
                    # The pool is closing or gone: cut every lifeline.
                    for _, life_w in self.children.values():
                        os.close(life_w)
                    self.children = {pid: (slot, -1) for pid, (slot, _) in self.children.items()}

    def read_requests(self) -> bool:
        try:
            data = self.link.recv(65536)
        except OSError:  # the pool is gone
            return False
        if not data:
            return False
        self._buffer += data
        while b"\n" in self._buffer:
            raw, self._buffer = self._buffer.split(b"\n", 1)
            kind, _, rest = raw.decode("utf-8", "replace").partition(" ")
            if kind == "credentials":
                self.credentials = rest
            elif kind == "start" and rest.isdigit():
                self.start(int(rest))
        return True

    def read_news(self) -> None:
        self._news += os.read(self.news_r, 65536)
        lines = self._news.split(b"\n")
        self._news = lines.pop()
        self.importer.add([n.decode("utf-8", "replace") for n in lines if n])

    def reap(self) -> None:
        while self.children:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            slot, life_w = self.children.pop(pid, (-1, -1))
            if life_w >= 0:
                os.close(life_w)
            code = os.waitstatus_to_exitcode(status)  # minus the signal if killed
            if slot >= 0:
                self.say(f"exited {slot} {code}")

    def start(self, slot: int) -> None:
        self.importer.pause()
        others = _settled_threads()
        if others:
            self.say(f"refused {slot} a package it imported started threads ({', '.join(others)})")
            return
        # What the template made is never garbage for a worker: with it out
        # of the collector's sight, no collection in a worker copies the
        # pages it shares with the template.
        gc.freeze()
        life_r, life_w = os.pipe()
        if self.credentials is not None:
            os.write(life_w, f"{self.credentials}\n".encode())
        try:
            pid = os.fork()
        except OSError as e:  # out of processes or memory: the pool starts one
            os.close(life_r)
            os.close(life_w)
            self.say(f"refused {slot} fork failed: {e}")
            return
        if pid == 0:
            self.become_worker(life_r)
        os.close(life_r)
        self.children[pid] = (slot, life_w)
        self.say(f"started {slot} {pid}")
        self.importer.resume()

    def become_worker(self, life_r: int) -> None:
        """In the forked child: drop the template's state, then run a worker."""
        global _news_fd
        code = 1
        try:
            signal.set_wakeup_fd(-1)
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
            os.dup2(life_r, 0)
            for fd in (life_r, self.wake_r, self.wake_w, self.news_r, self.link.fileno()):
                os.close(fd)
            for _, w in self.children.values():
                if w >= 0:
                    os.close(w)
            _news_fd = self.news_w
            os.environ["SHOAL_PARENT_PID"] = str(os.getppid())
            _reseed()
            # What `python -m shoal.worker ARGS` would run, in this process.
            sys.argv = ["shoal worker", *self.worker_argv]
            runpy.run_module("shoal.worker", run_name="__main__")
            code = 0
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
        except BaseException:
            traceback.print_exc()
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)


def _reseed() -> None:
    """Give a forked worker random state of its own: ``random`` reseeds
    itself after a fork, numpy's global generator does not.
    """
    np = sys.modules.get("numpy")
    if np is not None:
        try:
            np.random.seed()
        except Exception:
            pass


def main(argv: list[str] | None = None) -> None:
    """Entry point of ``python -m shoal.worker.template`` (started by a pool).

    Parameters
    ----------
    argv
        ``[--imports a,b,...] -- WORKER-ARGS`` (``sys.argv[1:]`` if None).

    """
    from ... import _engine

    args = list(sys.argv[1:] if argv is None else argv)
    worker_argv: list[str] = []
    if "--" in args:
        cut = args.index("--")
        args, worker_argv = args[:cut], args[cut + 1 :]
    parser = argparse.ArgumentParser(prog="python -m shoal.worker.template")
    parser.add_argument("--imports", default="", help="modules to import before forking")
    options = parser.parse_args(args)
    parent = os.environ.get("SHOAL_PARENT_PID")
    _engine.die_with_parent(int(parent) if parent else None)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        link = socket.socket(fileno=os.dup(0))
    except OSError as e:
        sys.exit(f"shoal worker template: standard input is not the pool's socket: {e}")
    # fd 0 is each worker's lifeline; the template's own reads nothing.
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)
    extend_sys_path()
    # What every worker imports, before the client's packages.
    importlib.import_module("shoal.worker.main")
    for name in sorted(filter(None, options.imports.split(",")), key=lambda m: m.count(".")):
        _import(name)
    _Template(link, worker_argv).serve()
    # Its workers are gone: exit now, without waiting for an import that
    # may still run (nothing here needs finalising).
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)
