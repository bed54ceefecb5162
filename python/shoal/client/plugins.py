"""Worker plugins: ``register_plugin``, ``unregister_worker_plugin`` and
``register_worker_callbacks``. Part of :class:`Client`.

The scheduler keeps each registered plugin (pickled, by name) and sends it
to every worker that joins later, restarted ones included; the workers there
now install it through :meth:`Client.run`, so an error in ``setup`` is
raised here. A worker installs each registration once, whichever way it
arrives first.
"""

from __future__ import annotations

import uuid
from typing import Any, Callable

from ..core import aio, serialize
from ..worker.plugins import (
    NannyPlugin,
    SchedulerPlugin,
    WorkerPlugin,
    WorkerSetup,
    plugin_name,
)


def _install_here(name: str, uid: str, plugin: Any, dask_worker: Any = None) -> dict[str, str]:
    return {"status": dask_worker.installed.install(dask_worker, name, uid, plugin)}


def _remove_here(name: str, dask_worker: Any = None) -> bool:
    return bool(dask_worker.installed.remove(dask_worker, name))


class PluginCalls:
    """The Client's calls that install code in every worker."""

    @aio.maybe_async
    def register_plugin(
        self, plugin: WorkerPlugin | NannyPlugin, name: str | None = None
    ) -> dict[str, Any]:
        """Install ``plugin`` in every worker, now and in every worker that
        joins or restarts later.

        Parameters
        ----------
        plugin
            An instance of a :class:`~shoal.WorkerPlugin` or
            :class:`~shoal.NannyPlugin` subclass (``Environ``,
            ``PipInstall``, ``UploadDirectory``, or your own).
        name
            Its name (default: its ``name`` attribute, else its class name
            and a unique suffix); it replaces a plugin registered before
            under that name, unless the plugin is ``idempotent``.

        Returns
        -------
        dict
            ``{worker address: {"status": "OK"}}`` for the workers there now
            (restarted afterwards if the plugin is a :class:`NannyPlugin`
            whose ``restart`` is True).

        Raises
        ------
        TypeError
            For a class instead of an instance, or an object of no plugin
            class.
        NotImplementedError
            For a :class:`~shoal.SchedulerPlugin` (shoal's scheduler runs
            no Python).
        Exception
            What the plugin's ``setup`` raised on a worker.

        Examples
        --------
        >>> client.register_plugin(Environ({"OMP_NUM_THREADS": "1"}))  # doctest: +SKIP

        """
        if isinstance(plugin, type):
            raise TypeError("Please provide an instance of a plugin, not a type.")
        if isinstance(plugin, SchedulerPlugin):
            raise NotImplementedError(
                "shoal's scheduler runs no Python, so it cannot run a SchedulerPlugin: "
                "watch the cluster from a client (client.subscribe_topic, get_task_stream) "
                "or in the workers (a WorkerPlugin's transition)"
            )
        if not isinstance(plugin, (WorkerPlugin, NannyPlugin)):
            raise TypeError(
                "Registering duck-typed plugins is not allowed. Please inherit from "
                "NannyPlugin or WorkerPlugin to create a plugin."
            )
        name = plugin_name(plugin) if name is None else name
        uid = uuid.uuid4().hex
        self._session.register_plugin(name, serialize.dumps((uid, plugin)))
        installed = self.run(_install_here, name, uid, plugin)
        if isinstance(plugin, NannyPlugin) and plugin.restart is True and installed:
            # Dask's nanny restarts its worker after such a plugin's setup.
            self.restart_workers(list(installed))
        return installed

    @aio.maybe_async
    def unregister_worker_plugin(self, name: str, nanny: bool | None = None) -> dict[str, Any]:
        """Tear the plugin ``name`` down in every worker; workers that join
        later no longer get it.

        Parameters
        ----------
        name
            The name it was registered under.
        nanny
            Accepted for Dask's signature (nanny plugins live in the
            workers here too).

        Returns
        -------
        dict
            ``{worker address: {"status": "OK"}}``.

        Raises
        ------
        ValueError
            If no worker has a plugin of that name.

        """
        self._session.register_plugin(name, None)
        removed = self.run(_remove_here, name)
        if not any(removed.values()):
            raise ValueError(f"The worker plugin {name} does not exist.")
        return {w: {"status": "OK"} for w in removed}

    def register_worker_callbacks(self, setup: Callable[..., Any] | None = None) -> Any:
        """Run ``setup()`` in every worker now and as each joins later
        (``setup(dask_worker)`` if it takes a ``dask_worker`` argument).

        Parameters
        ----------
        setup
            The function.

        Returns
        -------
        dict
            As :meth:`register_plugin`.

        """
        if setup is None:
            raise TypeError("register_worker_callbacks needs a setup function")
        return self.register_plugin(WorkerSetup(setup))
