"""``Client.restart``: fresh worker processes, this client's futures cancelled."""

from __future__ import annotations

import sys

import pytest

from shoal import Client, FutureCancelledError

from tasks import inc, wait_for_file


def _mark():
    sys._shoal_restart_mark = True
    return True


def _marked():
    return getattr(sys, "_shoal_restart_mark", False)


def test_restart_while_tasks_run(tmp_path):
    with Client(n_workers=2, threads_per_worker=1, dashboard_address=None) as client:
        done = client.submit(inc, 1)
        assert done.result() == 2
        running = [client.submit(wait_for_file, str(tmp_path / f"never-{i}")) for i in range(4)]
        assert all(client.run(_mark).values())
        before = set(client.scheduler_info()["workers"])
        client.restart(timeout="60 s")
        after = set(client.scheduler_info()["workers"])
        assert len(after) == 2 and not after & before, "new workers replaced the old ones"
        assert not any(client.run(_marked).values()), "the processes are fresh"
        for f in [done, *running]:
            assert f.cancelled()
            with pytest.raises(FutureCancelledError):
                f.result(timeout=10)
        assert client.gather(client.map(inc, range(10))) == list(range(1, 11))
        assert client.cluster.restarts == 0, "restarted on purpose, not crashed"


def test_restart_of_an_in_process_cluster_says_why_not():
    with Client(n_workers=1, processes=False, dashboard_address=None) as client:
        f = client.submit(inc, 1)
        with pytest.raises(RuntimeError, match="processes=False"):
            client.restart()
        assert f.result() == 2, "nothing was cancelled"
