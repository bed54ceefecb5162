"""``recreate_error_locally`` / ``recreate_task_locally``: run a task here."""

from __future__ import annotations

import os

import pytest

from tasks import add, div, getpid, inc


def test_recreate_task_locally_runs_it_in_this_process(client):
    assert client.recreate_task_locally(client.submit(getpid, pure=False)) == os.getpid()
    x = client.submit(inc, 1)
    y = client.submit(add, x, y=10)
    assert y.result() == 12
    assert client.recreate_task_locally(y) == 12, "dependencies come from the cluster"


def test_recreate_error_locally_raises_here_and_finds_the_culprit(client):
    bad = client.submit(div, 1, 0)
    downstream = client.submit(inc, bad)
    for f in (bad, downstream):
        with pytest.raises(ZeroDivisionError) as info:
            client.recreate_error_locally(f)
        assert info.traceback[-1].name == "div", "raised by running div here"
    with pytest.raises(ValueError, match="No errored futures"):
        client.recreate_error_locally(client.submit(inc, 1))
    with pytest.raises(ValueError, match="data"):
        client.recreate_task_locally(client.scatter(5))
