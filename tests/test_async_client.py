"""The asynchronous client: ``await Client(asynchronous=True)``, awaitable
futures, ``async for`` over ``as_completed``, and a running loop that is
never blocked while shoal waits."""

from __future__ import annotations

import asyncio

import pytest

from shoal import Client, LocalCluster, as_completed, delayed, wait

from conftest import run_async
from tasks import div, inc, slow_inc, wait_for_file


@pytest.fixture(scope="module")
def address():
    with LocalCluster(n_workers=2, threads_per_worker=2, dashboard_address=None) as lc:
        yield lc.scheduler_address


def test_await_client_futures_gather_scatter_and_compute(address):
    async def main():
        client = await Client(address, asynchronous=True, set_as_default=False)
        try:
            assert client.asynchronous and client.status == "running"
            f = client.submit(inc, 1)
            assert await f == 2
            assert await f.result() == 2
            assert await client.gather(client.map(inc, range(5))) == [1, 2, 3, 4, 5]
            data = await client.scatter({"a": 10})
            assert await client.submit(inc, data["a"]) == 11
            total = delayed(sum)([delayed(inc)(i) for i in range(3)])
            assert await client.compute(total) == 6
            assert await client.gather({"x": [f]}) == {"x": [2]}
        finally:
            await client.close()
        assert client.status == "closed"

    run_async(main())


def test_errors_and_timeouts_come_out_of_await(address):
    async def main():
        async with Client(address, asynchronous=True, set_as_default=False) as client:
            bad = client.submit(div, 1, 0)
            with pytest.raises(ZeroDivisionError):
                await bad
            assert isinstance(await bad.exception(), ZeroDivisionError)
            assert await bad.traceback() is not None
            with pytest.raises(ZeroDivisionError):
                await client.gather([bad])
            slow = client.submit(slow_inc, 1, 30, pure=False)
            with pytest.raises(TimeoutError):
                await slow.result(timeout="50 ms")
            with pytest.raises(TimeoutError):
                await wait([slow], timeout=0.05)
            await client.cancel([slow])
            assert slow.cancelled()

    run_async(main())


def test_async_for_over_as_completed_and_wait(address):
    async def main():
        async with Client(address, asynchronous=True, set_as_default=False) as client:
            seen = []
            async for f in as_completed(client.map(inc, range(8))):
                seen.append(await f)
            assert sorted(seen) == list(range(1, 9))
            pairs = []
            async for _f, value in as_completed(client.map(inc, [10, 20]), with_results=True):
                pairs.append(value)
            assert sorted(pairs) == [11, 21]
            futures = client.map(inc, range(3))
            done, not_done = await wait(futures)
            assert len(done) == 3 and not not_done

    run_async(main())


def test_the_running_loop_is_free_while_a_task_runs(address, tmp_path):
    """The task waits for a file only the event loop writes, after it has
    started awaiting the task: if awaiting blocked the loop, this would hang."""
    path = tmp_path / "go"

    async def main():
        async with Client(address, asynchronous=True, set_as_default=False) as client:
            f = client.submit(wait_for_file, str(path), "done", pure=False)
            waiter = asyncio.ensure_future(f)
            gathered = asyncio.ensure_future(client.gather([f]))
            await asyncio.sleep(0)
            assert not waiter.done()
            path.write_text("x")
            assert await waiter == "done"
            assert await gathered == ["done"]

    run_async(main())


def test_async_local_cluster_and_cluster_methods():
    async def main():
        async with (
            LocalCluster(n_workers=1, asynchronous=True, dashboard_address=None) as cluster,
            Client(cluster, asynchronous=True, set_as_default=False) as client,
        ):
            assert await client.submit(inc, 41) == 42
            assert len(await client.nthreads()) == 1
            await client.wait_for_workers(1, timeout="10 s")
            assert await client.run(lambda: 7) == {w: 7 for w in cluster.workers}
            await client.publish_dataset(answer=client.submit(inc, 1))
            assert await client.list_datasets() == ["answer"]

    run_async(main())


def test_misuse_of_an_asynchronous_client_says_what_to_do(address):
    with pytest.raises(RuntimeError, match="needs a running event loop"):
        Client(address, asynchronous=True)

    async def main():
        client = Client(address, asynchronous=True, set_as_default=False)
        with pytest.raises(RuntimeError, match="await Client"):
            client.submit(inc, 1)
        with pytest.raises(RuntimeError, match="async with"):
            with client:
                pass
        await client.close()
        return client

    assert run_async(main()).status == "closed"
