"""Tasks that launch tasks: get_client, get_worker, secede/rejoin,
worker_client, futures returned by tasks, client.run, fire_and_forget."""

from __future__ import annotations

import os
import signal

import pytest

from shoal import (
    Client,
    Event,
    KilledWorker,
    Variable,
    fire_and_forget,
    get_client,
    get_worker,
    rejoin,
    secede,
    worker_client,
)


@pytest.fixture(scope="module")
def one_thread():
    """One worker process with one thread: any task that waits on its
    sub-tasks while holding its slot deadlocks here."""
    with Client(n_workers=1, threads_per_worker=1, dashboard_address=None) as c:
        yield c


def tree_sum(depth):
    """Submits two sub-tasks and sums them, ``depth`` levels deep."""
    if depth == 0:
        return 1
    client = get_client()
    a = client.submit(tree_sum, depth - 1, pure=False)
    b = client.submit(tree_sum, depth - 1, pure=False)
    return a.result() + b.result()


def test_a_recursive_computation_ten_levels_deep_runs_on_one_thread(one_thread):
    # 2**10 leaves, 2047 tasks, each waiting on its two children.
    assert one_thread.submit(tree_sum, 10).result(timeout=120) == 1024


def explicit_secede(n):
    client = get_client()
    futures = client.map(lambda x: x + 1, range(n))
    secede()
    total = sum(client.gather(futures))
    rejoin()
    return total


def test_secede_and_rejoin_by_hand(one_thread):
    assert one_thread.submit(explicit_secede, 5).result(timeout=60) == 15


def fib(n):
    """Dask's documented recursive pattern: submit both halves, secede while
    waiting for them, rejoin to add them up (every call its own task)."""
    if n < 2:
        return n
    client = get_client()
    a = client.submit(fib, n - 1, pure=False)
    b = client.submit(fib, n - 2, pure=False)
    secede()
    x, y = client.gather([a, b])
    rejoin()
    return x + y


def test_the_recursive_secede_rejoin_pattern_never_deadlocks_on_one_thread(one_thread):
    # It hung in some runs: a task that rejoined held the only slot when
    # the next task arrived, and when it ended nothing woke the executor
    # waiting for that slot. 67 tasks a round, many rounds.
    for _ in range(30):
        assert one_thread.submit(fib, 8, pure=False).result(timeout=30) == 21


def with_worker_client(xs):
    with worker_client() as client:
        return sum(client.gather(client.map(lambda x: x * 10, xs)))


def test_worker_client_launches_and_waits(one_thread):
    assert one_thread.submit(with_worker_client, [1, 2, 3]).result(timeout=60) == 60


def test_secede_and_rejoin_are_no_ops_outside_a_task():
    secede()
    rejoin()


def test_get_worker_names_the_worker_running_the_task(one_thread):
    [address] = one_thread.nthreads()
    info = one_thread.submit(lambda: (get_worker().address, get_worker().nthreads)).result()
    assert info == (address, 1)
    with pytest.raises(ValueError, match="No worker found"):
        get_worker()


def make_futures(n):
    client = get_client()
    return [client.submit(lambda i=i: i * i, pure=False) for i in range(n)]


def test_futures_returned_by_a_task_outlive_it_and_can_be_passed_on(one_thread):
    parent = one_thread.submit(make_futures, 4)
    children = parent.result(timeout=60)
    del parent  # the result holding them goes; the client's futures keep them
    assert one_thread.gather(children) == [0, 1, 4, 9]
    assert one_thread.submit(sum, children).result(timeout=60) == 14


def test_get_client_outside_a_task_is_the_default_client(one_thread):
    assert get_client() is one_thread
    assert get_client(one_thread.scheduler_address) is one_thread


def test_client_run_calls_every_worker_outside_the_task_slots():
    with Client(
        n_workers=2, threads_per_worker=1, dashboard_address=None, set_as_default=False
    ) as c:
        pids = c.run(os.getpid)
        assert sorted(pids) == sorted(c.nthreads())
        assert os.getpid() not in pids.values()
        assert len(set(pids.values())) == 2
        # dask_worker is passed to functions that take it; async functions run.
        names = c.run(lambda dask_worker: dask_worker.address)
        assert names == {a: a for a in pids}

        async def coro(x):
            return x + 1

        assert set(c.run(coro, 1).values()) == {2}
        # One worker, by address; errors raise, or come back with on_error.
        first = sorted(pids)[0]
        assert list(c.run(os.getpid, workers=[first])) == [first]
        with pytest.raises(ZeroDivisionError):
            c.run(lambda: 1 / 0)
        out = c.run(lambda: 1 / 0, on_error="return")
        assert all(isinstance(e, ZeroDivisionError) for e in out.values())
        assert c.run(lambda: 1 / 0, on_error="ignore") == {}
        # While every thread is busy, run still answers.
        stop = Event("stop-busy", client=c)
        busy = c.map(lambda i, stop=stop: stop.wait(60), range(2), pure=False)
        assert len(c.run(os.getpid)) == 2
        stop.set()
        assert c.gather(busy) == [True, True]
        with pytest.raises(NotImplementedError, match="nanny"):
            c.run(os.getpid, nanny=True)


def test_run_on_scheduler_says_what_to_use_instead(one_thread):
    with pytest.raises(NotImplementedError, match="client.run"):
        one_thread.run_on_scheduler(os.getpid)


def record(variable_name, value):
    Variable(variable_name).set(value)
    return value


def test_fire_and_forget_runs_to_the_end_after_its_client_leaves(one_thread):
    gate = Event("ff-gate", client=one_thread)
    other = Client(one_thread.scheduler_address, set_as_default=False)
    # The forgotten task cannot have started when its client leaves: its
    # input is still waiting at the gate. Without fire_and_forget both
    # would be dropped with the client, and "ff-done" never set.
    first = other.submit(lambda g=gate: g.wait(60) and 40, pure=False)
    future = other.submit(lambda x: record("ff-done", x + 2), first, pure=False)
    fire_and_forget(future)
    del future, first
    other.close()
    gate.set()
    assert Variable("ff-done", client=one_thread).get(timeout=60) == 42


def test_a_killed_worker_does_not_leave_a_waiting_parent_stuck():
    with Client(
        n_workers=1, threads_per_worker=2, dashboard_address=None, set_as_default=False
    ) as c:
        ready = Event("child-started", client=c)

        def child():
            ready.set()
            os.kill(os.getpid(), signal.SIGKILL)

        def parent():
            return get_client().submit(child, pure=False).result()

        f = c.submit(parent, pure=False)
        assert ready.wait(60)
        # The worker died under both tasks; they run again on its
        # replacement, where the child kills it again, until KilledWorker.
        with pytest.raises(KilledWorker):
            f.result(timeout=120)
