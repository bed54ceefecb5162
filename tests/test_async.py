"""``async def`` functions are tasks like any other."""

from __future__ import annotations

import pytest

from shoal import Client, delayed

from tasks import (
    async_div,
    async_fail_first,
    async_inc,
    async_rendezvous,
    async_wait_cancelled,
    inc,
    wait_for_file,
)


@pytest.fixture(scope="module")
def one_thread():
    with Client(n_workers=1, threads_per_worker=1, set_as_default=False) as c:
        yield c


def test_results_of_async_tasks(one_thread):
    assert one_thread.submit(async_inc, 1).result() == 2
    assert one_thread.gather(one_thread.map(async_inc, range(5))) == [1, 2, 3, 4, 5]


def test_an_async_task_raises_with_its_traceback(one_thread):
    f = one_thread.submit(async_div, 1, 0)
    with pytest.raises(ZeroDivisionError):
        f.result()
    assert "async_div" in "".join(__import__("traceback").format_tb(f.traceback()))


def test_async_tasks_are_retried(one_thread, tmp_path):
    counter = tmp_path / "count"
    f = one_thread.submit(async_fail_first, str(counter), 2, retries=2, pure=False)
    assert f.result() == 2


def test_async_and_sync_tasks_depend_on_each_other(one_thread):
    a = one_thread.submit(async_inc, 1)
    b = one_thread.submit(inc, a)
    c = one_thread.submit(async_inc, b)
    assert c.result() == 4


def test_async_functions_in_delayed_and_dask_graphs(one_thread):
    assert delayed(async_inc)(delayed(async_inc)(1)).compute(scheduler=one_thread) == 3
    dask = pytest.importorskip("dask")
    assert dask.delayed(async_inc)(10).compute(scheduler=one_thread) == 11


def test_many_async_tasks_await_at_once_without_a_thread_each():
    with Client(n_workers=1, threads_per_worker=1, max_threads=1, set_as_default=False) as c:
        n = 300
        futures = c.map(async_rendezvous, [n] * n, pure=False)
        assert c.gather(futures) == [True] * n


def test_cancelling_a_running_coroutine_cancels_it(one_thread, tmp_path):
    started, marker = tmp_path / "started", tmp_path / "cancelled"
    f = one_thread.submit(async_wait_cancelled, str(started), str(marker), pure=False)
    assert one_thread.submit(wait_for_file, str(started), "running", pure=False).result() == (
        "running"
    )
    f.cancel()
    assert one_thread.submit(wait_for_file, str(marker), "seen", pure=False).result() == "seen"
    assert marker.read_text() == "cancelled"


def test_sync_and_async_tasks_mix_on_one_worker(one_thread):
    futures = [one_thread.submit(async_inc if i % 2 else inc, i, pure=False) for i in range(40)]
    assert one_thread.gather(futures) == [i + 1 for i in range(40)]
