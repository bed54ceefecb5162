"""Worker plugins (``Client.register_plugin``): code that runs in every
worker process, now and in every worker that joins or restarts later.

A :class:`WorkerPlugin`'s ``setup(worker)`` runs when it is installed,
``teardown(worker)`` when it is removed or the worker closes, and
``transition(key, start, finish)`` as each task starts (``"ready"`` to
``"executing"``) and ends (``"executing"`` to ``"memory"`` or ``"error"``).
A :class:`NannyPlugin` runs in the worker process too (shoal's workers have
no nanny): :class:`Environ`, :class:`PipInstall` and
:class:`UploadDirectory` are ones. The scheduler runs no Python, so a
:class:`SchedulerPlugin` cannot be registered.
"""

from __future__ import annotations

import inspect
import logging
import os
import sys
import threading
from typing import Any

# zipfile and subprocess are imported where used: every worker imports this
# module at start, most never need them (20 ms of a worker's start).

_log = logging.getLogger("shoal")


class WorkerPlugin:
    """Code run in every worker: subclass it and register an instance with
    :meth:`shoal.Client.register_plugin`.

    Attributes
    ----------
    name : str, optional
        The plugin's name (default: its class name and a unique suffix). A
        plugin registered under a name replaces the one registered before
        under it.
    idempotent : bool
        True: if a plugin of this name is already installed, keep that one.

    Examples
    --------
    >>> class Counter(WorkerPlugin):
    ...     def setup(self, worker):
    ...         self.finished = 0
    ...     def transition(self, key, start, finish, **kwargs):
    ...         self.finished += finish == "memory"
    >>> client.register_plugin(Counter(), name="counter")  # doctest: +SKIP

    """

    idempotent: bool = False

    def setup(self, worker: Any) -> Any:
        """Run when the plugin is installed in a worker."""

    def teardown(self, worker: Any) -> Any:
        """Run when the plugin is removed, or the worker closes."""

    def transition(self, key: str, start: str, finish: str, **kwargs: Any) -> None:
        """Run as a task of this worker changes state."""


class NannyPlugin:
    """Code run in every worker process before its tasks (Dask runs these
    in the nanny; a shoal worker runs them itself, and again after each
    restart).

    Attributes
    ----------
    name : str, optional
        As for :class:`WorkerPlugin`.
    idempotent : bool
        As for :class:`WorkerPlugin`.
    restart : bool
        True: the workers there when it is registered restart once it is
        installed in them all (so what it set up, such as an installed
        package, is what fresh interpreters import); workers that join
        later install it before their first task and do not restart.

    """

    idempotent: bool = False
    restart: bool = False

    def setup(self, nanny: Any) -> Any:
        """Run when the plugin is installed (``nanny`` is the worker)."""

    def teardown(self, nanny: Any) -> Any:
        """Run when the plugin is removed, or the worker closes."""


class SchedulerPlugin:
    """Dask's scheduler plugins run Python inside the scheduler; shoal's
    scheduler runs no Python, so registering one raises
    ``NotImplementedError``. Watch the cluster from a client instead: the
    event log (:meth:`shoal.Client.subscribe_topic`), a
    :class:`WorkerPlugin`'s ``transition``, or ``get_task_stream``.
    """

    idempotent: bool = False


class Environ(NannyPlugin):
    """Set environment variables in every worker process.

    They are set when the plugin is installed, so a library that reads one
    at import (``OMP_NUM_THREADS`` for BLAS) sees it only if it is imported
    afterwards: restart the workers (``client.restart()``) to be sure.

    Parameters
    ----------
    environ
        Names and values (values become strings).

    """

    def __init__(self, environ: dict[str, Any] | None = None):
        self.environ = {str(k): str(v) for k, v in (environ or {}).items()}

    def setup(self, nanny: Any) -> None:
        """Set the variables."""
        os.environ.update(self.environ)


class PipInstall(NannyPlugin):
    """Install packages with pip in every worker process.

    Parameters
    ----------
    packages
        Requirement strings, as pip takes them.
    pip_options
        More pip options (``["--upgrade"]``).
    restart_workers
        Restart the workers there now once every one has installed the
        packages, so that a package they had already imported (an upgrade)
        is imported afresh; workers that join later install before their
        first task.

    Examples
    --------
    >>> client.register_plugin(PipInstall(["tqdm"], restart_workers=True))  # doctest: +SKIP

    """

    idempotent = True

    def __init__(
        self,
        packages: list[str],
        pip_options: list[str] | None = None,
        restart_workers: bool = False,
    ):
        if not isinstance(restart_workers, bool):
            raise TypeError(f"restart_workers must be True or False, not {restart_workers!r}")
        self.restart = self.restart_workers = restart_workers
        self.packages = list(packages)
        self.pip_options = list(pip_options or [])
        self.name = "pip-install-" + "-".join(self.packages)

    def setup(self, worker: Any) -> None:
        """Run pip in this worker's interpreter, one worker of a host at a
        time (as Dask does: two pips writing one environment at once break
        each other's files); raise if it fails.
        """
        import socket
        import subprocess

        from ..coordination.locks import Lock

        command = [sys.executable, "-m", "pip", "install", *self.pip_options, *self.packages]
        with Lock(f"shoal-pip-install-{socket.gethostname()}", client=worker.client()):
            done = subprocess.run(command, capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"pip install failed ({done.returncode}): {done.stderr.strip()}")


class UploadDirectory(NannyPlugin):
    """Copy a local directory into every worker (zipped here, unpacked in
    the worker's own directory), and optionally make it importable.

    Parameters
    ----------
    path
        The directory.
    restart, restart_workers
        Restart the workers there now once every one has the copy (as
        :class:`PipInstall`'s); ``restart`` is Dask's old name.
    update_path
        Put the copy first on the workers' ``sys.path``.
    skip_words
        Files and directories whose path has any of these parts are left
        out.
    skip
        Functions of a file's path: where one returns True, the file is
        left out.
    mode
        ``"workers"`` (Dask's default). ``"scheduler"`` and ``"all"`` copy
        it to the scheduler too in Dask; shoal's scheduler runs no Python,
        so they raise ``NotImplementedError``.

    """

    def __init__(
        self,
        path: str,
        restart: bool = False,
        update_path: bool = False,
        skip_words: tuple[str, ...] = (".git", ".github", ".pytest_cache", "tests", "docs"),
        skip: tuple[Any, ...] = (lambda fn: os.path.splitext(fn)[1] == ".pyc",),
        restart_workers: bool = False,
        mode: str = "workers",
    ):
        if mode not in ("workers", "scheduler", "all"):
            raise ValueError(f"mode={mode!r} not supported, expected 'workers'")
        if mode != "workers":
            raise NotImplementedError(
                f"UploadDirectory(mode={mode!r}): shoal's scheduler runs no Python, so "
                "nothing is uploaded to it; use mode='workers'"
            )
        self.restart = self.restart_workers = bool(restart or restart_workers)
        path = os.path.abspath(os.path.expanduser(path))
        if not os.path.isdir(path):
            raise ValueError(f"{path} is not a directory")
        self.path = path
        self.update_path = update_path
        self.name = "upload-directory-" + os.path.basename(path)
        import io
        import zipfile

        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as z:
            for root, dirs, files in os.walk(path):
                rel_root = os.path.relpath(root, os.path.dirname(path))
                dirs[:] = [d for d in dirs if d not in skip_words]
                for f in files:
                    full = os.path.join(root, f)
                    if any(word in full.split(os.sep) for word in skip_words):
                        continue
                    if any(s(full) for s in skip):
                        continue
                    z.write(full, os.path.join(rel_root, f))
        self.data = buffer.getvalue()

    def setup(self, nanny: Any) -> None:
        """Unpack into the worker's directory (and ``sys.path``)."""
        import io
        import zipfile

        root = nanny.local_directory
        with zipfile.ZipFile(io.BytesIO(self.data)) as z:
            for member in z.namelist():
                target = os.path.realpath(os.path.join(root, member))
                if not target.startswith(os.path.realpath(root) + os.sep):
                    raise ValueError(f"{member} would land outside the worker's directory")
            z.extractall(root)
        if self.update_path:
            copy = os.path.join(root, os.path.basename(self.path))
            if copy not in sys.path:
                sys.path.insert(0, copy)


class WorkerSetup(WorkerPlugin):
    """A function run as each worker starts (``register_worker_callbacks``)."""

    def __init__(self, setup: Any):
        self._setup = setup
        self.name = f"worker-setup-{getattr(setup, '__name__', 'setup')}-{id(setup):x}"

    def setup(self, worker: Any) -> Any:
        """Call the function (with ``dask_worker`` if it takes it)."""
        try:
            takes_worker = "dask_worker" in inspect.signature(self._setup).parameters
        except (TypeError, ValueError):
            takes_worker = False
        return self._setup(dask_worker=worker) if takes_worker else self._setup()


def plugin_name(plugin: Any) -> str:
    """A plugin's own name, or one made from its class."""
    name = getattr(plugin, "name", None)
    if isinstance(name, str) and name:
        return name
    import uuid

    return f"{type(plugin).__name__}-{uuid.uuid4().hex}"


class Installed:
    """The plugins installed in one worker, by name (thread-safe)."""

    def __init__(self) -> None:
        self._plugins: dict[str, tuple[str, Any]] = {}
        self._lock = threading.Lock()
        #: Whether any plugin has a ``transition`` of its own (the task
        #: loop asks this before calling anything).
        self.watching = False
        self._watchers: tuple[Any, ...] = ()

    def install(self, worker: Any, name: str, uid: str, plugin: Any) -> str:
        """Set ``plugin`` up under ``name`` (replacing, after its teardown,
        one installed under it before) unless registration ``uid`` is here
        already, or the plugin is idempotent and one of its name is.
        """
        with self._lock:
            old = self._plugins.get(name)
            if old is not None and (old[0] == uid or getattr(plugin, "idempotent", False)):
                return "OK"
            if old is not None:
                _call(old[1].teardown, worker)
            _call(plugin.setup, worker)
            self._plugins[name] = (uid, plugin)
            self._refresh()
        return "OK"

    def by_name(self) -> dict[str, Any]:
        """The installed plugins, by name."""
        with self._lock:
            return {name: plugin for name, (_, plugin) in self._plugins.items()}

    def remove(self, worker: Any, name: str) -> bool:
        """Tear down and forget the plugin of ``name``; False if none."""
        with self._lock:
            old = self._plugins.pop(name, None)
            self._refresh()
        if old is None:
            return False
        _call(old[1].teardown, worker)
        return True

    def close(self, worker: Any) -> None:
        """Tear every plugin down (the worker closes)."""
        with self._lock:
            plugins, self._plugins = list(self._plugins.values()), {}
            self._refresh()
        for _, plugin in plugins:
            try:
                _call(plugin.teardown, worker)
            except Exception:
                _log.exception("a worker plugin's teardown raised")

    def transition(self, key: str, start: str, finish: str) -> None:
        """Tell every plugin that watches transitions."""
        for plugin in self._watchers:
            try:
                plugin.transition(key, start, finish)
            except Exception:
                _log.exception("a worker plugin's transition raised")

    def _refresh(self) -> None:
        self._watchers = tuple(
            p
            for _, p in self._plugins.values()
            if getattr(type(p), "transition", None) not in (None, WorkerPlugin.transition)
        )
        self.watching = bool(self._watchers)


def _call(method: Any, worker: Any) -> None:
    """Call a plugin's ``setup`` or ``teardown``; an ``async def`` one runs
    to its end on the worker's event loop.
    """
    result = method(worker)
    if inspect.isawaitable(result):
        import asyncio

        asyncio.run_coroutine_threadsafe(result, worker.event_loop()).result()
