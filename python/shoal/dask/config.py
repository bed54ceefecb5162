"""A default shoal client is dask's default scheduler too: set now if dask is
loaded, or the moment it is imported.

dask chooses how dataframes shuffle (``set_index``, ``sort_values``, merges,
groupbys with many groups) by its scheduler: ``"disk"`` (partd files in the
temporary directory of whichever process runs the task, right only when
every task runs in one process) unless a dask.distributed client exists.
On a shoal cluster tasks run in several processes, possibly on several
machines, so shoal has dask shuffle with tasks (``"tasks"``): shards move
worker to worker as task results, over shoal's data plane.
"""

from __future__ import annotations

import contextlib
import os
import sys
import warnings
import weakref
from collections.abc import Callable, Iterator
from typing import Any

from ..core import context
from ..core.settings import setting

_SHUFFLE = "dataframe.shuffle.method"
#: Shuffle methods that cannot work on a shoal cluster: ``disk`` needs one
#: process, ``p2p`` dask.distributed's workers.
_WRONG_HERE = (None, "disk", "p2p")
#: What to configure once dask is imported: clients to make its scheduler,
#: or None for a worker process's task scheduler.
_pending: list[weakref.ref[Any] | None] = []


def set_default_scheduler(client: Any) -> None:
    """Make ``client`` dask's scheduler (now, or when dask is imported)."""
    if "dask" in sys.modules and hasattr(sys.modules["dask"], "config"):
        _configure(client)
    else:
        _pending[:] = [weakref.ref(client)]
        _install_import_hook()


#: In a worker process: the client a task computes dask collections with.
_task_client: list[Callable[[], Any]] = []


def in_task_get(dsk: Any, keys: Any, **kwargs: Any) -> Any:
    """Dask's scheduler in a worker process: a dask collection computed in a
    task runs on the cluster through the worker's client (as Dask's
    ``get_client`` makes it), which secedes while it waits; outside a task
    dask's own threads run it.
    """
    if context.in_task() and _task_client:
        return _task_client[0]().get(dsk, keys, **kwargs)
    import dask.threaded

    return dask.threaded.get(dsk, keys, **kwargs)


def use_the_cluster_in_tasks(task_client: Callable[[], Any]) -> None:
    """In a worker process: dask collections computed by tasks run on the
    cluster through ``task_client()``, and shuffle with tasks (now, or when
    dask is imported).
    """
    _task_client[:] = [task_client]
    if "dask" in sys.modules and hasattr(sys.modules["dask"], "config"):
        _configure(None)
    else:
        _pending.append(None)
        _install_import_hook()


def unset_default_scheduler(client: Any) -> None:
    """When ``client`` closes: if dask uses it, hand dask the current default
    shoal client instead, or dask's own default if there is none.
    """
    _pending[:] = [r for r in _pending if r is None or r() not in (None, client)]
    dask = sys.modules.get("dask")
    if dask is None or not hasattr(dask, "config"):
        return
    if dask.config.get("scheduler", None) is client:
        default = context.current_default()
        dask.config.set(scheduler=default)
        if default is None and _set_shuffle:
            _set_shuffle.clear()
            if dask.config.get(_SHUFFLE, None) == "tasks":
                dask.config.set({_SHUFFLE: None})


def _configure(client: Any) -> None:
    """Make ``client`` dask's scheduler (None: :func:`in_task_get`), and
    have dask shuffle with tasks unless told a method that works here.
    """
    import dask

    if client is None:
        dask.config.set(scheduler=in_task_get)
    elif client.status == "running":
        dask.config.set(scheduler=client)
    else:
        return
    if dask.config.get(_SHUFFLE, None) in _WRONG_HERE:
        dask.config.set({_SHUFFLE: "tasks"})
        _set_shuffle.append(True)


#: Whether shoal set dask's shuffle method (and so may unset it).
_set_shuffle: list[bool] = []


@contextlib.contextmanager
def cluster_shuffle() -> Iterator[None]:
    """Within: dask shuffles dataframes with tasks, unless it was told to
    use a method that works on a cluster of processes (see the module's
    description). For graphs shoal builds from dask collections itself,
    whoever dask's default scheduler is.
    """
    import dask

    if dask.config.get(_SHUFFLE, None) in _WRONG_HERE:
        with dask.config.set({_SHUFFLE: "tasks"}):
            yield
    else:
        yield


class _DaskImportHook:
    """Sets the pending default client as dask's scheduler once dask loads.

    A meta path finder, but not an ``importlib.abc.MetaPathFinder`` subclass:
    importing ``importlib.abc`` costs 20 ms at start-up.
    """

    def find_spec(self, name: str, path: Any = None, target: Any = None) -> Any:
        """Find nothing but dask; wrap its loader to configure it."""
        if name != "dask":
            return None
        import importlib.util

        sys.meta_path.remove(self)
        spec = importlib.util.find_spec("dask")
        if spec is None or spec.loader is None:
            return spec
        loader = spec.loader
        original = loader.exec_module  # type: ignore[attr-defined]

        def exec_module(module: Any) -> None:
            original(module)
            for ref in _pending:
                c = None if ref is None else ref()
                if ref is None or c is not None:
                    _configure(c)
            _pending.clear()

        loader.exec_module = exec_module  # type: ignore[method-assign]
        return spec


_hook = _DaskImportHook()


def _install_import_hook() -> None:
    if _hook not in sys.meta_path:
        sys.meta_path.insert(0, _hook)


#: Dask's default for ``distributed.dashboard.link``.
DEFAULT_DASHBOARD_LINK = "{scheme}://{host}:{port}/status"


def dashboard_link(url: str) -> str:
    """The link to show for the dashboard served at ``url``
    (``http://host:port``), from Dask's ``distributed.dashboard.link``
    template (read from dask's configuration when dask is loaded, else
    from ``DASK_DISTRIBUTED__DASHBOARD__LINK``), filled in with
    ``scheme``, ``host``, ``port`` and the environment's variables, as a
    JupyterHub proxy needs (``"/user/{JUPYTERHUB_USER}/proxy/{port}/status"``).
    A template naming a variable that is not set gives Dask's default link,
    with a ``RuntimeWarning`` saying which.
    """
    template = setting("distributed.dashboard.link", DEFAULT_DASHBOARD_LINK)
    scheme, _, rest = url.partition("://")
    host, _, port = rest.rpartition(":")
    fields = {**os.environ, "scheme": scheme, "host": host, "port": port}
    try:
        return str(template).format(**fields)
    except (KeyError, IndexError) as e:
        warnings.warn(
            f"the dashboard link template {template!r} (distributed.dashboard.link) names "
            f"{e}, which is not set: showing the plain link",
            RuntimeWarning,
            stacklevel=3,
        )
        return DEFAULT_DASHBOARD_LINK.format(**fields)


def inherited_config() -> dict[str, str]:
    """The environment that gives worker processes this process's dask
    configuration (``dask.config.set`` included), as Dask's own local
    clusters do: dask's ``DASK_INTERNAL_INHERIT_CONFIG``, read by dask when
    a worker imports it. Empty when dask is not loaded here; entries that
    are not plain data (the client set as dask's scheduler) are left out.
    """
    dask = sys.modules.get("dask")
    config = getattr(dask, "config", None)
    if config is None:
        return {}
    plain = _plain(config.config)
    return {"DASK_INTERNAL_INHERIT_CONFIG": config.serialize(plain)} if plain else {}


def _plain(value: Any) -> Any:
    """``value`` without what JSON cannot hold (dropped, not failed on)."""
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            kept = _plain(v)
            if isinstance(k, str) and kept is not _DROP:
                out[k] = kept
        return out
    if isinstance(value, (list, tuple)):
        return [v for v in (_plain(x) for x in value) if v is not _DROP]
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return _DROP


_DROP = object()
