"""delayed graphs: Dask's semantics, compute, persist, and how they run."""

from __future__ import annotations

import gc
import os
import signal
import threading

import pytest

import shoal
from shoal import Client, Delayed, compute, delayed, persist

from conftest import until, wait_for_exit
from tasks import (
    Box,
    PicklesOnce,
    add,
    append_line,
    big_bytes,
    inc,
    pair,
    tree_sum,
    wait_for_file,
)


def test_the_tutorials_toy_example(client):
    inc_d = delayed(inc)
    x = inc_d(1)
    assert isinstance(x, Delayed)
    assert x.key.startswith("inc-")
    assert x.compute() == 2
    results = [inc_d(x) for x in range(8)]
    total = sum(results)
    assert total.compute() == 36


def test_decorator_forms(client):
    @delayed
    def double(x):
        return 2 * x

    @delayed(pure=True)
    def triple(x):
        return 3 * x

    assert double(4).compute() == 8
    assert triple(2).key == triple(2).key
    assert double(2).key != double(2).key  # impure by default, as in Dask


def test_compute_returns_a_tuple_and_traverses_containers(client):
    a, b = delayed(inc)(1), delayed(inc)(2)
    assert compute(a, b) == (2, 3)
    assert compute([a, b], {"k": a}, 7) == ([2, 3], {"k": 2}, 7)
    assert compute([a, b], traverse=False)[0] == [a, b]
    assert shoal.compute() == ()


def test_operators_indexing_attributes_and_methods(client):
    x = delayed(10)
    y = delayed(3)
    assert compute(x + y, x - y, x * y, x / y, x // y, x % y, x**2, -x, abs(-x)) == (
        13,
        7,
        30,
        10 / 3,
        3,
        1,
        100,
        -10,
        10,
    )
    assert compute(x < y, x <= y, x > y, x >= y, x == 10, x != 10) == (
        False,
        False,
        True,
        True,
        True,
        False,
    )
    assert compute(1 + x, 2 * y, x & 2, x | 1, x ^ 3, x << 1, x >> 1) == (11, 6, 2, 11, 9, 20, 5)
    data = delayed({"a": [1, 2, 3]})
    assert data["a"][1].compute() == 2
    box = delayed(Box)(5)
    assert box.v.compute() == 5
    assert box.plus(2).compute() == Box(7)
    words = delayed("a,b,c")
    assert words.split(",").compute() == ["a", "b", "c"]


def test_nout_makes_results_iterable(client):
    a, b = delayed(pair, nout=2)(4)
    assert compute(a, b) == (4, 40)
    assert len(delayed(pair, nout=2)(1)) == 2


def test_truth_and_unknown_length_iteration_are_type_errors(client):
    x = delayed(inc)(1)
    with pytest.raises(TypeError, match="Truth"):
        bool(x)
    with pytest.raises(TypeError, match="not iterable"):
        iter(x)
    with pytest.raises(TypeError):
        len(x)
    with pytest.raises(TypeError, match="immutable"):
        x.attr = 1


def test_keys_names_and_purity(client):
    assert delayed(inc)(1, dask_key_name="my-key").key == "my-key"
    assert delayed(5, name="five").key == "five"
    assert delayed(inc, pure=True)(1).key == delayed(inc, pure=True)(1).key
    assert delayed(inc, pure=True)(1).key != delayed(inc, pure=True)(2).key
    assert delayed(inc)(1, pure=True).key == delayed(inc)(1, pure=True).key
    assert repr(delayed(5, name="five")) == "Delayed('five')"


def test_delayed_values_nested_in_arguments_are_dependencies(client):
    a, b = delayed(inc)(1), delayed(inc)(2)
    total = delayed(sum)([a, b, 10])
    assert total.compute() == 15
    as_dict = delayed(lambda d: d["x"] * d["y"])({"x": a, "y": (b,)[0]})
    assert as_dict.compute() == 6
    whole = delayed([a, b])
    assert whole.compute() == [2, 3]


def test_arguments_name_their_inputs_by_position_not_by_key(client):
    # The scheduler holds every waiting task's pickled arguments: an input
    # costs them a few bytes, not its key, however often it appears.
    a, b = delayed(inc)(1), delayed(inc)(2)
    total = delayed(add)(a, delayed(add)(b, a))
    pickled = b"".join(bytes(f) for f in total._frames)
    assert a.key.encode() not in pickled and len(pickled) < 60
    assert total.compute() == 2 + 3 + 2


def test_pure_tasks_in_one_graph_run_once(client, tmp_path):
    log = tmp_path / "log"
    x = delayed(append_line, pure=True)(str(log), "once")
    both = delayed(lambda a, b: a + b)(x, x)
    assert both.compute() == "onceonce"
    assert log.read_text().splitlines() == ["once"]


def test_futures_and_delayed_mix(client):
    f = client.submit(inc, 1)
    d = delayed(add)(f, 10)
    assert d.compute() == 12
    # And a delayed value passed to submit is computed first.
    assert client.submit(inc, delayed(add)(1, 2)).result() == 4
    assert client.gather(client.map(add, [delayed(inc)(0)], [5])) == [6]


def test_client_compute_returns_futures(client):
    x = delayed(inc)(1)
    f = client.compute(x)
    assert isinstance(f, shoal.Future) and f.result() == 2
    fs = client.compute([x, delayed(inc)(2)])
    assert client.gather(fs) == [2, 3]
    assert client.compute(x, sync=True) == 2


def test_persist_keeps_results_in_the_cluster(client, tmp_path):
    log = tmp_path / "log"
    x = delayed(append_line)(str(log), "ran")
    (px,) = persist(x, scheduler=client)
    assert px.key == x.key
    assert (px + "!").compute() == "ran!"
    assert (px + "?").compute() == "ran?"
    assert log.read_text().splitlines() == ["ran"]
    assert client.persist(delayed(inc)(1)).compute() == 2


def test_errors_in_graphs_raise_the_original_exception(client):
    bad = delayed(lambda: 1 / 0)()
    with pytest.raises(ZeroDivisionError):
        (bad + 1).compute()


def test_intermediates_are_released_and_the_graph_forgotten(client):
    gc.collect()
    before = client.scheduler_info()["tasks"]
    total = tree_sum([delayed(big_bytes)(100, b"z") for _ in range(64)])
    assert len(total.compute()) == 6400
    gc.collect()
    info = client.scheduler_info()
    assert info["tasks"] == before
    assert sum(w["stored"] for w in info["workers"].values()) <= before


def test_compute_without_a_client_uses_an_in_process_cluster():
    # In a subprocess, so that no default client exists.
    import subprocess
    import sys

    code = (
        "from shoal import delayed, compute\n"
        "import os\n"
        "def f(x):\n    return (x + 1, os.getpid())\n"
        "vals = compute(*[delayed(f)(i) for i in range(4)])\n"
        "assert [v[0] for v in vals] == [1, 2, 3, 4], vals\n"
        "assert {v[1] for v in vals} == {os.getpid()}\n"
        "print('ok')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


def test_a_worker_killed_mid_graph_loses_nothing(tmp_path):
    with Client(n_workers=2, threads_per_worker=1) as c:
        gate = tmp_path / "gate"
        leaves = [delayed(big_bytes)(100_000, bytes([65 + i % 26])) for i in range(16)]
        # Intermediates large enough to live only on their workers.
        mids = [delayed(lambda a, b: a + b)(leaves[i], leaves[i + 1]) for i in range(0, 16, 2)]
        waits = delayed(lambda path, *xs: len(xs))
        blocker = delayed(wait_for_file)(str(gate))
        total = waits(blocker, *mids)
        fut = c.compute(total)
        # Wait until the intermediates exist, then kill a worker holding some.
        c.compute(mids, sync=True)
        victim = next(iter(c.scheduler_info()["workers"].values()))["pid"]
        os.kill(victim, signal.SIGKILL)
        assert wait_for_exit([victim], 10) == []
        gate.write_text("go")
        assert fut.result(timeout=60) == 8


def test_a_long_chain_and_a_wide_reduction(client):
    x = delayed(0)
    for _ in range(300):
        x = delayed(inc)(x)
    assert x.compute() == 300
    assert tree_sum([delayed(inc)(i) for i in range(1000)]).compute() == sum(range(1, 1001))


def test_dask_scheduler_names_are_accepted_and_unknown_ones_refused(client):
    x = delayed(inc)(1)
    assert x.compute(scheduler="threads") == 2
    assert compute(x, scheduler="sync") == (2,)
    with pytest.raises(ValueError, match="cannot run on"):
        x.compute(scheduler="processes-on-mars")


def test_a_graph_larger_than_one_submission_part(client):
    # More than 10,000 tasks: the graph reaches the scheduler in parts, and
    # no early result is freed before its dependents arrive.
    level = [delayed(inc)(i) for i in range(12_000)]
    while len(level) > 1:
        level = [delayed(add)(*level[i : i + 2]) for i in range(0, len(level), 2)]
    (total,) = level
    assert total.compute() == sum(range(1, 12_001))


def test_a_graph_that_fails_midway_is_ended_and_its_parts_dropped(fresh_client):
    # 25,000 tasks reach the scheduler in parts before a node that cannot be
    # pickled when its part is made stops the graph (a wrapped callable used
    # as a value, pickled as a function once already): the error reaches
    # the caller, the graph is ended, the scheduler drops the parts it holds
    # (no one wants them), and the client goes on working.
    client = fresh_client
    leaves = [delayed(inc)(i) for i in range(25_000)]
    unpicklable = delayed(PicklesOnce())
    total = delayed(len)([*leaves, unpicklable])
    with pytest.raises(TypeError, match="pickled once only"):
        total.compute()
    until(lambda: client.scheduler_info()["tasks"] == 0, what="the parts sent being dropped")
    assert client.submit(inc, 1).result() == 2
    assert delayed(inc)(41).compute() == 42


def test_a_function_counts_once_towards_the_large_graph_warning(client):
    # A 4 MB function called by 25,000 tasks (three parts): 4 MB sent, under
    # Dask's 10 MB threshold, so no warning (counting it per part would
    # make 12 MB).
    import warnings

    payload = b"x" * 4_000_000

    def sized(i):
        return len(payload) + i

    leaves = [delayed(sized)(i) for i in range(25_000)]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert delayed(len)(leaves).compute() == 25_000


def test_submissions_from_another_thread_do_not_end_a_graph_sent_in_parts(client):
    # A graph of 40,000 tasks goes in four parts; submissions made meanwhile
    # by another thread of the same client join it rather than end it (a
    # graph ended early would have the scheduler free the first parts'
    # results before their dependents came).
    level = [delayed(inc)(i) for i in range(20_000)]
    while len(level) > 1:
        level = [delayed(add)(*level[i : i + 2]) for i in range(0, len(level), 2)]
    (total,) = level
    stop = threading.Event()
    results = []

    def submit_meanwhile():
        while not stop.is_set():
            results.append(client.submit(inc, len(results), pure=False).result())

    other = threading.Thread(target=submit_meanwhile)
    other.start()
    try:
        assert total.compute() == sum(range(1, 20_001))
    finally:
        stop.set()
        other.join(timeout=60)
    assert results == list(range(1, len(results) + 1))
