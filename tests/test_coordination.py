"""Queue, Variable, Lock, Semaphore, MultiLock, Event, Pub/Sub and
published datasets, held by the scheduler, from clients and from tasks."""

from __future__ import annotations

import os
import pickle
import signal

import pytest

from shoal import (
    Client,
    Event,
    Lock,
    MultiLock,
    Pub,
    Queue,
    Semaphore,
    Sub,
    Variable,
    get_worker,
    secede,
)

from conftest import until


@pytest.fixture(scope="module")
def client():
    with Client(n_workers=2, threads_per_worker=1, dashboard_address=None) as c:
        yield c


def test_a_queue_carries_data_and_futures_between_clients(client):
    q = Queue("carry", client=client)
    q.put(1)
    q.put(client.submit(lambda: "computed", pure=False))
    other = Client(client.scheduler_address, set_as_default=False)
    try:
        q2 = Queue("carry", client=other)
        assert q2.qsize() == 2
        assert q2.get() == 1
        future = q2.get(timeout="1 s")
        assert future.client is other
        assert future.result(timeout=30) == "computed"
    finally:
        other.close()


def test_a_queue_get_times_out_with_dask_time_strings(client):
    q = Queue(client=client)
    with pytest.raises(TimeoutError, match="200 ms|0.2"):
        q.get(timeout="200 ms")
    q.put("late")
    assert q.get(timeout=5) == "late", "the timed-out get took nothing"


def test_batch_get(client):
    q = Queue(client=client)
    assert q.get(batch=True) == []
    for i in range(5):
        q.put(i)
    assert q.get(batch=2) == [0, 1]
    assert q.get(batch=True) == [2, 3, 4]
    with pytest.raises(ValueError):
        q.get(batch=-1)


def test_a_bounded_queue_makes_put_wait(client):
    q = Queue(client=client, maxsize=1)
    q.put("a")
    with pytest.raises(TimeoutError):
        q.put("b", timeout=0.1)
    assert q.get() == "a"
    assert q.qsize() == 0


def producer(q, n):
    for i in range(n):
        q.put(i)
    return n


def consumer(q, n):
    secede()  # wait for the producer without holding a thread it may need
    return sum(q.get(timeout=60) for _ in range(n))


def test_tasks_talk_through_a_queue(client):
    q = Queue(client=client)
    # The consumer may start first and wait: it secedes, so the producer
    # runs even if both share a worker.
    total = client.submit(consumer, q, 10, pure=False)
    produced = client.submit(producer, q, 10, pure=False)
    assert total.result(timeout=60) == 45
    assert produced.result(timeout=60) == 10


def test_a_variable_holds_a_future_alive(client):
    v = Variable("held", client=client)
    f = client.submit(lambda: [1, 2, 3], pure=False)
    key = f.key
    v.set(f)
    del f
    got = v.get(timeout=5)
    assert got.key == key and got.result(timeout=30) == [1, 2, 3]
    v.delete()
    with pytest.raises(TimeoutError):
        v.get(timeout=0.1)


def test_a_variable_get_waits_for_a_task_to_set_it(client):
    asking = Event(client=client)

    def setter(name, asking=asking):
        # Set only once the client is about to wait for the value.
        assert asking.wait(60)
        Variable(name).set(get_worker().address)

    v = Variable(client=client)
    done = client.submit(setter, v.name, pure=False)
    asking.set()
    assert v.get(timeout=60).startswith("tcp://")
    done.result(timeout=60)


def test_a_lock_held_by_a_task_excludes_a_task_on_another_worker(client):
    lock = Lock("exclusive", client=client)
    a_in, b_tried = Event(client=client), Event(client=client)
    a, b = sorted(client.scheduler_info()["workers"])

    def holder(lock=lock, a_in=a_in, b_tried=b_tried):
        with lock:
            a_in.set()
            # Keep it until the other worker has tried to take it.
            return b_tried.wait(60)

    def other(lock=lock, a_in=a_in, b_tried=b_tried):
        assert a_in.wait(60)
        took = lock.acquire(blocking=False)
        b_tried.set()
        if took:
            lock.release()
        return took

    held = client.submit(holder, workers=[a], pure=False)
    tried = client.submit(other, workers=[b], pure=False)
    assert tried.result(timeout=60) is False, "two workers held the lock at once"
    assert held.result(timeout=60) is True
    assert not lock.locked()


def test_updates_under_a_lock_are_not_lost(client):
    lock = Lock("counter-lock", client=client)
    counter = Variable("counter", client=client)
    counter.set(0)

    def bump(lock=lock):
        with lock:
            c = Variable("counter")
            c.set(c.get() + 1)

    client.gather(client.map(lambda i: bump(), range(20), pure=False))
    assert counter.get() == 20
    assert not lock.locked()


def test_lock_acquire_options(client):
    lock = Lock(client=client)
    assert lock.acquire(blocking=False)
    other = Lock(lock.name, client=client)
    assert not other.acquire(blocking=False)
    assert not other.acquire(timeout="50 ms")
    with pytest.raises(ValueError, match="non-blocking"):
        other.acquire(blocking=False, timeout=1)
    with pytest.raises(RuntimeError, match="Released too often"):
        other.release()
    lock.release()
    assert other.acquire(timeout=1)
    other.release()


def test_a_lock_held_by_a_task_whose_worker_is_killed_is_released():
    with Client(
        n_workers=1, threads_per_worker=2, dashboard_address=None, set_as_default=False
    ) as c:
        held = Event("held", client=c)

        def hold_and_die():
            Lock("doomed").acquire()
            held.set()
            os.kill(os.getpid(), signal.SIGKILL)

        doomed = c.submit(hold_and_die, pure=False)
        assert held.wait(60)
        # The worker's client died with it: its lease comes back.
        assert Lock("doomed", client=c).acquire(timeout=60)
        del doomed  # (it would kill each worker it reaches)


def test_a_semaphore_lease_held_on_one_worker_is_not_given_on_another(client):
    sem = Semaphore(max_leases=1, name="one-lease", client=client)
    a_in, b_tried = Event(client=client), Event(client=client)
    a, b = sorted(client.scheduler_info()["workers"])

    def holder(sem=sem, a_in=a_in, b_tried=b_tried):
        with sem:
            a_in.set()
            return b_tried.wait(60)

    def other(sem=sem, a_in=a_in, b_tried=b_tried):
        assert a_in.wait(60)
        took = sem.acquire(timeout=0)
        b_tried.set()
        if took:
            sem.release()
        return took

    held = client.submit(holder, workers=[a], pure=False)
    tried = client.submit(other, workers=[b], pure=False)
    assert tried.result(timeout=60) is False, "two leases of one were out at once"
    assert held.result(timeout=60) is True
    assert sem.get_value() == 0


def test_a_semaphore_bounds_concurrency_across_workers(client):
    sem = Semaphore(max_leases=1, name="one-at-a-time", client=client)
    inside = Variable("inside", client=client)
    inside.set(0)

    def guarded(i, sem=sem):
        with sem:
            v = Variable("inside")
            now = v.get() + 1
            v.set(now)
            seen = now
            v.set(v.get() - 1)
            return seen

    assert max(client.gather(client.map(guarded, range(10), pure=False))) == 1
    assert sem.get_value() == 0


def test_a_multilock_takes_all_its_names(client):
    a = MultiLock(["x", "y"], client=client)
    b = MultiLock(["y", "z"], client=client)
    assert a.acquire()
    assert not b.acquire(timeout=0.1)
    assert b.acquire(num_locks=1, timeout=1), "z alone is free"
    b.release()
    a.release()
    assert not a.locked()


def test_an_event_wakes_waiting_tasks(client):
    go = Event("go", client=client)
    about_to_wait = Queue(client=client)

    def wait_for_go(i, go=go, q=about_to_wait):
        q.put(i)
        return go.wait(60)

    waiting = client.map(wait_for_go, range(2), pure=False)
    until(lambda: about_to_wait.qsize() == 2, what="both tasks to reach the wait")
    assert not go.is_set()
    go.set()
    assert client.gather(waiting) == [True, True]
    go.clear()
    assert not go.wait(0.05)


def test_pub_sub_delivers_to_current_subscribers(client):
    sub = Sub("news", client=client)
    Pub("news", client=client).put({"n": 1})

    def publish():
        Pub("news").put("from a task")

    client.submit(publish, pure=False).result(timeout=60)
    assert sub.get(timeout=5) == {"n": 1}
    assert sub.get(timeout=5) == "from a task"
    with pytest.raises(TimeoutError):
        sub.get(timeout=0.05)
    with pytest.raises(NotImplementedError):
        Pub("news", worker="tcp://x:1")


def test_objects_pickle_by_name(client):
    for obj in (Queue("p"), Variable("p"), Lock("p"), Semaphore(3, "p"), Event("p")):
        copy = pickle.loads(pickle.dumps(obj))
        assert type(copy) is type(obj) and copy.name == obj.name
    assert pickle.loads(pickle.dumps(Semaphore(3, "p"))).max_leases == 3


def test_a_lazy_value_cannot_be_put(client):
    from shoal import delayed

    with pytest.raises(TypeError, match="compute or persist"):
        Queue(client=client).put(delayed(len)([1]))


def test_published_datasets(client):
    client.publish_dataset(squares=client.submit(lambda: [0, 1, 4], pure=False))
    with pytest.raises(KeyError, match="already exists"):
        client.publish_dataset(squares=1)
    client.publish_dataset(1, name="one")
    assert sorted(client.list_datasets()) == ["one", "squares"]
    other = Client(client.scheduler_address, set_as_default=False)
    try:
        assert other.get_dataset("squares").result(timeout=30) == [0, 1, 4]
        assert other.datasets["one"] == 1
    finally:
        other.close()
    client.unpublish_dataset("squares")
    with pytest.raises(KeyError):
        client.get_dataset("squares")
    assert client.get_dataset("squares", default=None) is None
    del client.datasets["one"]
    assert client.list_datasets() == []


def test_where_data_is(client):
    f = client.submit(lambda: "here", pure=False)
    f.result(timeout=30)
    [holder] = client.who_has([f])[f.key]
    assert holder in client.nthreads()
    assert f.key in client.has_what()[holder]
    assert set(client.processing()) == set(client.nthreads())
    info = client.scheduler_info()
    assert info["id"].startswith("Scheduler-") and info["started"] > 0
    assert info["address"] == client.scheduler_address
    w = info["workers"][holder]
    assert w["nthreads"] == 1 and w["memory_limit"] > 0 and w["pid"] > 0


def test_timeouts_accept_dask_strings(client):
    f = client.submit(lambda: 1)
    assert f.result(timeout="10 s") == 1
    client.wait_for_workers(2, timeout="5 s")
    with pytest.raises(TimeoutError):
        client.wait_for_workers(3, timeout="10 ms")
    with pytest.raises(ValueError, match="duration"):
        f.result(timeout="soon")
    futures = client.scatter([1, 2], timeout="30 s")
    assert client.gather(futures) == [1, 2]


def _client_process(script: str, c: Client):
    """A Python process running ``script`` with the address of ``c``'s
    scheduler as its argument (and its token), talking through pipes."""
    import subprocess
    import sys

    return subprocess.Popen(
        [sys.executable, "-c", script, c.scheduler_address],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=os.environ | {"SHOAL_TOKEN": c.cluster.security.token},
    )


HOLD_A_FUTURE = """
import sys
from shoal import Client, Lock
client = Client(sys.argv[1], set_as_default=False)
future = client.submit(bytes, 10, pure=False)
future.result()
assert Lock("removed-client", client=client).acquire(timeout=30)
print(future.key, flush=True)
sys.stdin.readline()  # the test writes a line once this process runs again
# New work needs the scheduler, which this client hears from first; then
# even the finished future (its small result was here) is refused.
for use in (lambda: client.submit(bytes, 5, pure=False).result(timeout=30), future.result):
    try:
        use()
        print("no error", flush=True)
    except Exception as e:
        print(type(e).__name__, str(e).replace("\\n", " "), flush=True)
"""


def test_a_stopped_client_is_removed_and_told_so_when_it_comes_back():
    """A client silent past Dask's ``distributed.comm.timeouts.tcp`` (a
    stopped process, a laptop asleep) is removed: its futures are released
    on the workers and its lock freed; when it runs again, using a future
    says why it is gone."""

    import dask

    timeouts = {
        "distributed.comm.timeouts.tcp": "3s",
        "distributed.scheduler.locks.lease-timeout": "3s",
    }
    with dask.config.set(timeouts):
        c = Client(n_workers=1, dashboard_address=None)
    holder = _client_process(HOLD_A_FUTURE, c)

    def held_keys():
        return {k for keys in c.has_what().values() for k in keys}

    try:
        key = holder.stdout.readline().strip()
        lock = Lock("removed-client", client=c)
        # While the holder runs (and says it is there), it keeps both.
        assert not lock.acquire(timeout=4)
        assert key in held_keys()
        os.kill(holder.pid, signal.SIGSTOP)
        assert lock.acquire(timeout=30)
        until(lambda: key not in held_keys(), what="the stopped client's result released")
        os.kill(holder.pid, signal.SIGCONT)
        holder.stdin.write("go\n")
        holder.stdin.flush()
        for _ in range(2):
            said = holder.stdout.readline()
            assert said.startswith("ConnectionError") and "removed this client" in said, said
            assert "distributed.comm.timeouts.tcp" in said
    finally:
        holder.kill()
        holder.wait(10)
        c.close()


def test_a_cancelled_future_cannot_be_shared(client):
    # Its key is gone from the scheduler: a queue or variable refuses it at
    # once (Dask times out waiting for it), and nothing is changed.
    future = client.submit(lambda: 1, pure=False)
    future.result()
    future.cancel()
    q = Queue(client=client)
    with pytest.raises(TimeoutError, match="unknown to scheduler"):
        q.put(future)
    assert q.qsize() == 0
    v = Variable(client=client)
    v.set(1)
    with pytest.raises(TimeoutError, match="unknown to scheduler"):
        v.set(future, timeout="5ms")
    assert v.get() == 1


HOLD_A_LOCK = """
import sys
from shoal import Client, Lock
client = Client(sys.argv[1], set_as_default=False)
assert Lock("handed-over", client=client).acquire(timeout=30)
print("held", flush=True)
sys.stdin.read()
"""


def test_a_stopped_client_loses_its_lock_after_the_lease_timeout():
    """A client process stopped (SIGSTOP: a frozen laptop, a vanished
    machine) keeps its connection open; its silence past Dask's
    ``distributed.scheduler.locks.lease-timeout`` hands its lock over."""

    import dask

    with dask.config.set({"distributed.scheduler.locks.lease-timeout": "3s"}):
        c = Client(n_workers=0, dashboard_address=None)
    holder = _client_process(HOLD_A_LOCK, c)
    try:
        assert holder.stdout.readline() == "held\n"
        lock = Lock("handed-over", client=c)
        # While the holder runs (and says it is there), the lock stays its.
        assert not lock.acquire(timeout=4)
        os.kill(holder.pid, signal.SIGSTOP)
        assert lock.acquire(timeout=30)
        lock.release()
    finally:
        holder.kill()
        holder.wait(10)
        c.close()
