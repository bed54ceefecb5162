"""Coordination on the asynchronous client: every call of Lock, Semaphore,
MultiLock, Event, Variable, Queue and Sub is awaitable, ``async with``
takes and releases, and a wait never blocks the event loop nor the
client's other calls."""

from __future__ import annotations

import asyncio

import pytest

from shoal import (
    Client,
    Event,
    LocalCluster,
    Lock,
    MultiLock,
    Pub,
    Queue,
    Semaphore,
    Sub,
    Variable,
)

from conftest import run_async
from tasks import inc, wait_for_file


@pytest.fixture(scope="module")
def address():
    with LocalCluster(n_workers=1, threads_per_worker=2, dashboard_address=None) as lc:
        yield lc.scheduler_address


async def connect(address):
    return await Client(address, asynchronous=True, set_as_default=False)


def test_locks_are_awaited_and_a_wait_leaves_the_loop_free(address):
    async def main():
        async with await connect(address) as client:
            lock = Lock("a", client=client)
            assert await lock.acquire() is True
            assert await lock.locked() is True
            other = Lock("a", client=client)
            assert await other.acquire(timeout=0.05) is False
            # Checked at the call, before anything is awaited, as in Dask.
            with pytest.raises(ValueError):
                other.acquire(blocking=False, timeout=0.1)
            # A waiting acquire does not stop the loop from releasing.
            waiting = asyncio.ensure_future(other.acquire())
            await asyncio.sleep(0)
            assert not waiting.done()
            await lock.release()
            assert await waiting is True
            await other.release()
            assert await lock.locked() is False
            async with Lock("b", client=client) as held:
                assert await held.locked()
            assert not await Lock("b", client=client).locked()

    run_async(main())


def test_semaphores_and_multilocks_with_async_with(address):
    async def main():
        async with await connect(address) as client:
            sem = Semaphore(2, name="s", client=client)
            async with sem:
                assert await sem.get_value() == 1
                async with Semaphore(2, name="s", client=client):
                    assert await sem.get_value() == 2
                    assert await Semaphore(2, name="s", client=client).acquire(0.05) is False
            assert await sem.get_value() == 0
            async with MultiLock(["x", "y"], client=client) as both:
                assert await both.locked()
                assert await MultiLock(["y"], client=client).acquire(timeout=0.05) is False
            assert not await MultiLock(["x", "y"], client=client).locked()

    run_async(main())


def test_many_waits_at_once_do_not_starve_the_clients_other_calls(address):
    """More waiters than the pool that runs the client's other calls: the
    `set` that wakes them must still run."""

    async def main():
        async with await connect(address) as client:
            go = Event("go", client=client)
            waiters = [asyncio.ensure_future(go.wait()) for _ in range(48)]
            await asyncio.sleep(0)
            assert await client.submit(inc, 1) == 2
            assert not await go.is_set()
            await go.set()
            assert await asyncio.gather(*waiters) == [True] * 48
            await go.clear()
            assert await go.wait(timeout=0.05) is False

    run_async(main())


def test_variables_queues_and_topics_are_awaited(address):
    async def main():
        async with await connect(address) as client:
            v = Variable("v", client=client)
            with pytest.raises(TimeoutError):
                await v.get(timeout=0.05)
            await v.set(client.submit(inc, 1))
            assert await (await v.get()) == 2
            await v.delete()

            q = await Queue("q", client=client, maxsize=2)
            await q.put(1)
            await q.put(client.submit(inc, 10))
            with pytest.raises(TimeoutError):
                await q.put(3, timeout=0.05)
            assert await q.qsize() == 2
            assert await q.get() == 1
            assert await (await q.get()) == 11
            # A queue not awaited is made by its first call.
            lazy = Queue("lazy", client=client)
            await lazy.put("x")
            assert await lazy.get(batch=True) == ["x"]

            sub = Sub("topic", client=client)
            Pub("topic", client=client).put("hello")
            async for message in sub:
                assert message == "hello"
                break
            with pytest.raises(TimeoutError):
                await sub.get(timeout=0.05)

    run_async(main())


def test_a_future_cancel_is_awaited(address, tmp_path):
    release = tmp_path / "release"

    async def main():
        async with await connect(address) as client:
            slow = client.submit(wait_for_file, str(release), pure=False)
            await slow.cancel()
            assert slow.cancelled()

    try:
        run_async(main())
    finally:
        release.write_text("")  # the task keeps its thread until it returns


def test_the_same_objects_stay_synchronous_on_a_synchronous_client(address):
    with Client(address, set_as_default=False) as client:
        lock = Lock("sync", client=client)
        assert lock.acquire() is True
        assert lock.locked() is True
        lock.release()
        q = Queue("sync-q", client=client)
        q.put(1)
        assert q.get() == 1
