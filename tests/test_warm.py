"""Workers import what the client imported, ahead of need, also after a restart."""

from __future__ import annotations

import os
import signal

from shoal import Client

from conftest import wait_for_exit
from tasks import wait_for_module


def test_workers_import_what_the_client_imported_and_so_does_a_restarted_one():
    with Client(n_workers=1, threads_per_worker=1, set_as_default=False) as c:
        # Nothing imported it anywhere yet: the workers cannot have it.
        assert c.submit(wait_for_module, "warmable", 0.0, pure=False).result() is False
        import warmable  # noqa: F401  (the client imports it...)

        # ... and with the next submission the worker imports it too.
        assert c.submit(wait_for_module, "warmable", pure=False).result() is True
        ((address, info),) = c.scheduler_info()["workers"].items()
        os.kill(info["pid"], signal.SIGKILL)
        assert wait_for_exit([info["pid"]], 10) == []
        c.wait_for_workers(1, timeout=30, without=[address])
        # The replacement was told at once, before any task asked.
        assert c.submit(wait_for_module, "warmable", pure=False).result() is True
