"""Client.replicate and scatter(broadcast=True): copies of results on more
workers, made by the workers fetching from each other, counted and freed by
the scheduler.
"""

import os
import signal

import pytest

from shoal import Client, wait

from conftest import run_async, wait_for_exit
from tasks import big_bytes, made_once

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def three():
    with Client(n_workers=3, threads_per_worker=1) as c:
        yield c


def test_replicate_copies_onto_every_worker_and_the_copies_are_real(three, tmp_path):
    client = three
    runs = tmp_path / "runs"
    x = client.submit(made_once, str(runs), 300_000, pure=False)
    client.replicate(x)
    holders = client.who_has(x)[x.key]
    assert sorted(holders) == sorted(client.nthreads())
    for address, keys in client.has_what().items():
        assert x.key in keys, address
    # Two of the three holders die: the third copy still serves the result,
    # and the task did not run again.
    victims = [client.scheduler_info()["workers"][a]["pid"] for a in holders[:2]]
    for pid in victims:
        os.kill(pid, signal.SIGKILL)
    assert wait_for_exit(victims, 10) == []
    client.wait_for_workers(3, timeout=30, without=holders[:2])
    assert x.result(timeout=30) == b"r" * 300_000
    assert runs.read_text().splitlines() == ["ran"]


def test_replicate_to_n_adds_and_drops_copies(three):
    client = three
    x = client.submit(big_bytes, 100_000, pure=False)
    client.replicate(x, n=2)
    assert len(client.who_has(x)[x.key]) == 2
    client.replicate(x)
    assert len(client.who_has(x)[x.key]) == 3
    client.replicate([x], n=1)
    (holder,) = client.who_has(x)[x.key]
    others = [a for a in client.nthreads() if a != holder]
    assert all(x.key not in client.has_what()[a] for a in others)
    assert x.result() == b"x" * 100_000


def test_replicate_onto_named_workers(three):
    client = three
    first, second, third = sorted(client.nthreads())
    x = client.submit(big_bytes, 1000, workers=[first], pure=False)
    client.replicate(x, workers=[first, second], branching_factor=1)
    assert sorted(client.who_has(x)[x.key]) == [first, second]


def test_scatter_broadcast_puts_the_data_on_every_worker(three):
    client = three
    [x] = client.scatter([list(range(1000))], broadcast=True)
    assert sorted(client.who_has(x)[x.key]) == sorted(client.nthreads())
    [y] = client.scatter([b"only two"], broadcast=True, workers=sorted(client.nthreads())[:2])
    assert sorted(client.who_has(y)[y.key]) == sorted(client.nthreads())[:2]


def test_a_copy_fetched_for_a_task_is_counted_and_freed_with_its_key(three):
    client = three
    first, second, _ = sorted(client.nthreads())
    x = client.submit(big_bytes, 200_000, workers=[first], pure=False)
    n = client.submit(len, x, workers=[second], pure=False)
    assert n.result() == 200_000
    assert sorted(client.who_has(x)[x.key]) == [first, second]
    key = x.key
    del x, n
    # Both copies go: the scheduler tells both holders to drop it.
    client.submit(big_bytes, 1, pure=False).result()  # a round trip after the release
    assert all(key not in keys for keys in client.has_what().values())


def test_replicate_rejects_bad_arguments(three):
    client = three
    x = client.submit(big_bytes, 10, pure=False)
    with pytest.raises(ValueError, match="n must be"):
        client.replicate(x, n=0)
    with pytest.raises(ValueError, match="branching_factor"):
        client.replicate(x, branching_factor=0)
    with pytest.raises(ValueError, match="names no connected worker"):
        client.replicate(x, workers=["tcp://10.0.0.1:1"])
    client.replicate([])  # nothing to do


def test_replicate_with_an_asynchronous_client(three):

    async def main():
        async with Client(three.scheduler_address, asynchronous=True, set_as_default=False) as ac:
            x = ac.submit(big_bytes, 5000, pure=False)
            await ac.replicate(x)
            return len((await ac.who_has(x))[x.key])

    assert run_async(main()) == 3


def _counts(client, keys):
    """How many of ``keys`` each worker holds, and how many workers hold each."""
    per_worker = {a: len(set(held) & keys) for a, held in client.has_what().items()}
    copies = {k: len(ws) for k, ws in client.who_has(list(keys)).items()}
    return per_worker, copies


def test_rebalance_spreads_results_and_each_stays_in_one_place(three):
    client = three
    first = sorted(client.nthreads())[0]
    parts = client.map(big_bytes, range(100_000, 100_030), workers=[first], pure=False)
    wait(parts)
    keys = {f.key for f in parts}
    per_worker, _ = _counts(client, keys)
    assert per_worker[first] == 30
    client.rebalance(parts)
    per_worker, copies = _counts(client, keys)
    assert sorted(per_worker.values()) == [10, 10, 10], per_worker
    assert set(copies.values()) == {1}, "a moved result stays on its sender too"
    # The moved results are the real ones, read where they now lie.
    assert client.gather(client.map(len, parts)) == list(range(100_000, 100_030))


def test_rebalance_moves_only_what_it_is_given_among_the_workers_named(three):
    client = three
    a, b, c = sorted(client.nthreads())
    stay = client.map(big_bytes, range(100_000, 100_004), workers=[a], pure=False)
    move = client.map(big_bytes, range(200_000, 200_004), workers=[a], pure=False)
    client.rebalance(move, workers=[a, b])
    held = client.who_has(stay + move)
    assert all(held[f.key] == [a] for f in stay)
    assert sorted(len(held[f.key]) for f in move) == [1, 1, 1, 1]
    assert {held[f.key][0] for f in move} == {a, b}
    assert not client.has_what().get(c)
    with pytest.raises(KeyError, match="names no connected worker"):
        client.rebalance(move, workers=["tcp://10.0.0.1:1"])
    # Empty lists are not "everything": nothing moves.
    spread = client.who_has(move)
    client.rebalance([])
    client.rebalance(move, workers=[])
    assert client.who_has(move) == spread


def test_rebalance_with_an_asynchronous_client(three):
    first = sorted(three.nthreads())[0]

    async def main():
        async with Client(three.scheduler_address, asynchronous=True, set_as_default=False) as ac:
            parts = ac.map(big_bytes, range(100_000, 100_006), workers=[first], pure=False)
            await ac.rebalance(parts)
            held = await ac.who_has(parts)
            return sorted(sum(1 for ws in held.values() if w in ws) for w in await ac.nthreads())

    assert run_async(main()) == [2, 2, 2]
