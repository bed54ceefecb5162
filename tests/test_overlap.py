"""Blocking calls overlap by themselves; computing tasks never exceed the threads."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from shoal import Client, LocalCluster, compute, delayed

from tasks import (
    fetch_url,
    max_overlap,
    nap,
    rendezvous,
    rendezvous_in_subprocess,
    sleep_or_meet,
    spin,
)


@pytest.fixture(scope="module")
def one_thread():
    """One worker process with one thread."""
    with Client(n_workers=1, threads_per_worker=1, set_as_default=False) as c:
        yield c


def test_sleeping_tasks_overlap_beyond_the_threads(one_thread, tmp_path):
    n = 12
    futures = one_thread.map(rendezvous, [str(tmp_path)] * n, [n] * n, pure=False)
    assert one_thread.gather(futures) == [True] * n


def test_waiting_on_a_subprocess_overlaps(one_thread, tmp_path):
    n = 6
    futures = one_thread.map(rendezvous_in_subprocess, [str(tmp_path)] * n, [n] * n, pure=False)
    assert one_thread.gather(futures) == [True] * n


class _Barrier(BaseHTTPRequestHandler):
    """Answers once ``server.barrier`` has as many requests in flight."""

    def do_GET(self):
        try:
            self.server.barrier.wait()
            body = b"met"
        except threading.BrokenBarrierError:
            body = b"alone"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def test_http_calls_overlap(one_thread):
    n = 10
    # A backlog for a burst of parallel connections (the default is 5).
    server = type("Server", (ThreadingHTTPServer,), {"request_queue_size": 64})(
        ("127.0.0.1", 0), _Barrier
    )
    server.barrier = threading.Barrier(n, timeout=30)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_port}/"
        futures = one_thread.map(fetch_url, [url] * n, pure=False)
        assert one_thread.gather(futures) == ["met"] * n
    finally:
        server.shutdown()
        server.server_close()


def test_with_no_room_to_grow_blocking_tasks_run_one_by_one(tmp_path):
    with Client(n_workers=1, threads_per_worker=1, max_threads=1, set_as_default=False) as c:
        futures = c.map(rendezvous, [str(tmp_path)] * 2, [2] * 2, [0.5] * 2, pure=False)
        # The first waits alone and gives up; the second finds it was there.
        assert c.gather(futures) == [False, True]


def test_the_cap_bounds_how_many_run_at_once():
    with Client(n_workers=1, threads_per_worker=1, max_threads=3, set_as_default=False) as c:
        spans = c.gather(c.map(nap, [0.2] * 12, pure=False))
        assert 1 < max_overlap(spans) <= 3


def test_computing_tasks_never_run_more_than_the_threads():
    with Client(n_workers=2, threads_per_worker=1, set_as_default=False) as c:
        spans = c.gather(c.map(spin, [0.15] * 8, pure=False))
    by_worker: dict[int, list] = {}
    for s in spans:
        by_worker.setdefault(s[0], []).append(s)
    assert len(by_worker) == 2
    assert [max_overlap(v) for v in by_worker.values()] == [1, 1]


def test_threads_sharing_the_interpreter_are_not_taken_for_blocked():
    # Two threads of one worker take turns holding the GIL: each computes
    # half the time, and waiting for the GIL is not waiting on I/O.
    with Client(n_workers=1, threads_per_worker=2, set_as_default=False) as c:
        spans = c.gather(c.map(spin, [0.15] * 10, pure=False))
    assert max_overlap(spans) == 2, sorted(spans)


def test_a_mix_of_computing_and_waiting(one_thread, tmp_path):
    n = 10
    waits = one_thread.map(rendezvous, [str(tmp_path)] * n, [n] * n, pure=False)
    spins = one_thread.map(spin, [0.1] * 6, pure=False)
    assert one_thread.gather(waits) == [True] * n
    assert max_overlap(one_thread.gather(spins)) == 1


def test_threads_in_this_process_overlap_too(tmp_path):
    with Client(processes=False, n_workers=1, threads_per_worker=1, set_as_default=False) as c:
        n = 8
        # The meeting place exists before any task can arrive in it.
        (tmp_path / "a").mkdir()
        futures = c.map(rendezvous, [str(tmp_path / "a")] * n, [n] * n, pure=False)
        assert c.gather(futures) == [True] * n


def test_compute_without_a_client_overlaps(tmp_path):
    n = 16
    calls = [delayed(rendezvous, pure=False)(str(tmp_path), n) for _ in range(n)]
    assert compute(*calls) == (True,) * n


def test_max_threads_below_the_threads_is_an_error():
    with pytest.raises(ValueError, match="max_threads"):
        Client(n_workers=1, threads_per_worker=2, max_threads=1)


def test_a_worker_that_joins_later_knows_which_functions_block():
    with (
        LocalCluster(n_workers=1, threads_per_worker=1, dashboard_address=None) as cluster,
        Client(cluster, set_as_default=False) as c,
    ):
        [a] = c.scheduler_info()["workers"]
        # Worker a sees the function asleep on a timer: it blocks.
        assert c.gather(c.map(sleep_or_meet, ["sleep"] * 4, pure=False)) == [True] * 4
        cluster.scale(2)
        c.wait_for_workers(2, timeout=60)
        [b] = set(c.scheduler_info()["workers"]) - {a}
        # Worker b's one thread runs a task of it that waits on a lock,
        # which b would never take for blocking; the task that releases
        # it can start beside it only because b was told.
        waiter = c.submit(sleep_or_meet, "wait", workers=[b], priority=10, pure=False)
        meeter = c.submit(sleep_or_meet, "meet", workers=[b], pure=False)
        assert meeter.result() is True
        assert waiter.result() is True
