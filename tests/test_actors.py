"""Actors: one object on one worker, its calls in order, and its end."""

from __future__ import annotations

import os
import signal
import time

import pytest

from shoal import Actor, ActorFuture, Client

from conftest import run_async
from tasks import Counter, bump


@pytest.fixture
def client():
    with Client(n_workers=2, threads_per_worker=1, dashboard_address=None) as c:
        yield c


def test_an_actor_keeps_its_state_on_one_worker(client):
    future = client.submit(Counter, 10, actor=True)
    counter = future.result()
    assert isinstance(counter, Actor) and repr(counter).startswith("<Actor: Counter, key=")
    call = counter.increment()
    assert isinstance(call, ActorFuture)
    assert call.result() == 11
    assert counter.increment(5).result(timeout="10 s") == 16
    assert counter.n == 16, "attributes are read at once, as in Dask"
    assert counter.label == "counter"
    assert "increment" in dir(counter)
    assert len({counter.pid().result() for _ in range(5)}) == 1


def test_calls_on_one_actor_run_in_the_order_they_were_made(client):
    counter = client.submit(Counter, actor=True).result()
    calls = [counter.append(i) for i in range(300)]
    assert [c.result() for c in calls] == list(range(1, 301))
    assert counter.log == list(range(300))


def test_each_submit_makes_a_new_actor_and_map_makes_many(client):
    a = client.submit(Counter, actor=True)
    b = client.submit(Counter, actor=True)
    assert a.key != b.key
    a.result().increment().result()
    assert b.result().n == 0
    many = client.gather(client.map(Counter, [1, 2, 3], actor=True))
    assert [c.n for c in many] == [1, 2, 3]


def test_actors_and_their_futures_pass_into_tasks(client):
    future = client.submit(Counter, actor=True)
    counter = future.result()
    assert client.submit(bump, counter, 2).result() == 2
    assert client.submit(bump, future, 3).result() == 5
    assert counter.n == 5


def test_errors_in_methods_come_back(client):
    counter = client.submit(Counter, actor=True).result()
    with pytest.raises(KeyError, match="no such thing"):
        counter.fail().result()
    assert counter.increment().result() == 1, "the actor lives on after an error"
    with pytest.raises(AttributeError):
        _ = counter.missing


def test_an_actor_dies_with_its_worker(client):
    counter = client.submit(Counter, actor=True).result()
    os.kill(counter.pid().result(), signal.SIGKILL)
    with pytest.raises(RuntimeError, match="Worker holding Actor was lost"):
        counter.increment().result(timeout=30)


def test_a_released_actor_is_dropped_by_its_worker(client):
    future = client.submit(Counter, actor=True)
    counter = future.result()
    key = counter.key
    # A handle made by hand holds no future (one unpickled, as `counter`,
    # keeps the actor alive, as in Dask).
    bare = Actor(Counter, counter._address, key)

    def held(dask_worker):
        return key in dask_worker.actors

    assert any(client.run(held).values())
    del future
    assert counter.increment().result() == 1
    del counter
    deadline = time.monotonic() + 30
    while any(client.run(held).values()):
        assert time.monotonic() < deadline, "the worker never dropped the actor"
    with pytest.raises(RuntimeError, match="future was released"):
        bare.increment().result()


def test_actor_calls_are_awaitable(client):
    async def main():
        async with Client(client.scheduler_address, asynchronous=True, set_as_default=False) as ac:
            counter = await ac.submit(Counter, actor=True)
            # The handle holds its key through the client that received it
            # (the submitting future is gone by now), not the default one.
            assert counter._future.client is ac
            assert await counter.increment() == 1
            assert await counter.aincrement() == 2

    counter_before = client.submit(Counter, actor=True)  # the sync client stays usable
    run_async(main())
    assert counter_before.result().n == 0


def test_actor_needs_a_class(client):
    with pytest.raises(TypeError, match="needs a class"):
        client.submit(len, actor=True)
