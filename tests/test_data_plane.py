"""Values moving through the cluster: bytes, numpy arrays and pandas frames of
every size around the thresholds, worker to worker, worker to client and
client to worker, spilled and read back; scatter straight to workers; one
value over 2 GiB; and what a transfer costs in memory.
"""

from __future__ import annotations

import os

import numpy as np
import pandas as pd
import pytest

from shoal import Client, wait

KIB, MIB, GIB = 1 << 10, 1 << 20, 1 << 30
# Around the inline limit (results the scheduler keeps) and the size at
# which frames become engine buffers; around the size at which a frame on
# this host is copied out of its holder's memory instead of sent, and the
# size from which it lands in memory of its own; and a few MB.
SIZES = [
    0,
    1,
    64 * KIB - 1,
    64 * KIB,
    64 * KIB + 1,
    256 * KIB - 1,
    256 * KIB,
    4 * MIB - 1,
    4 * MIB + 1,
    3 * MIB + 7,
]


def make_bytes(n: int) -> bytes:
    return bytes(range(256)) * (n // 256) + bytes(range(n % 256))


def make_array(n: int) -> np.ndarray:
    return np.arange(n // 8, dtype="float64")


def make_frame(rows: int) -> pd.DataFrame:
    return pd.DataFrame({"x": np.arange(rows, dtype="int64"), "s": [f"r{i}" for i in range(rows)]})


def length(value) -> int:
    return len(value)


def same(a, b) -> bool:
    if isinstance(a, np.ndarray):
        return a.dtype == b.dtype and np.array_equal(a, b)
    if isinstance(a, pd.DataFrame):
        return a.equals(b)
    return type(a) is type(b) and a == b


def checksum(value) -> str:
    """A digest computed where the value is (so no transfer to compare)."""
    import hashlib

    if isinstance(value, pd.DataFrame):
        data = pd.util.hash_pandas_object(value).to_numpy().tobytes()
    elif isinstance(value, np.ndarray):
        data = value.tobytes()
    else:
        data = value
    return hashlib.sha256(data).hexdigest()


def same_host_names() -> set[str]:
    """The data servers' same-host socket names listening in this network
    namespace (abstract names start with ``@`` in ``/proc/net/unix``)."""
    with open("/proc/net/unix") as f:
        rows = [line.split() for line in f.readlines()[1:]]
    # A listening socket: flags 00010000 (__SO_ACCEPTCON), state 01.
    return {
        r[7][1:]
        for r in rows
        if len(r) == 8 and r[7].startswith("@shoal/data/") and r[3] == "00010000"
    }


def first_two(client):
    return sorted(client.scheduler_info()["workers"])[:2]


@pytest.fixture(scope="module")
def cluster():
    with Client(n_workers=2, threads_per_worker=1, dashboard_address=None) as c:
        yield c


@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("make", [make_bytes, make_array])
def test_values_are_equal_after_every_hop(cluster, make, n):
    a, b = first_two(cluster)
    expected = make(n)
    made = cluster.submit(make, n, workers=[a], pure=False)
    # Worker to worker: a task on the other worker reads it.
    assert cluster.submit(checksum, made, workers=[b], pure=False).result() == checksum(expected)
    # Worker to client.
    assert same(made.result(), expected)
    # Client to worker (scatter) and back, and read by a task there.
    sent = cluster.scatter(expected, workers=[b])
    assert cluster.submit(checksum, sent, workers=[a], pure=False).result() == checksum(expected)
    assert same(sent.result(), expected)


@pytest.mark.parametrize("rows", [0, 10, 50_000])
def test_pandas_frames_travel_intact(cluster, rows):
    a, b = first_two(cluster)
    made = cluster.submit(make_frame, rows, workers=[a], pure=False)
    expected = make_frame(rows)
    assert cluster.submit(checksum, made, workers=[b], pure=False).result() == checksum(expected)
    assert made.result().equals(expected)
    sent = cluster.scatter(expected, workers=[a])
    assert cluster.gather(sent).equals(expected)


def test_large_bytes_come_back_as_bytes(cluster):
    value = make_bytes(5 * MIB)
    back = cluster.scatter(value).result()
    assert type(back) is bytes and back == value
    made = cluster.submit(make_bytes, 5 * MIB, pure=False).result()
    assert type(made) is bytes and made == value


def test_a_large_scatter_goes_straight_to_a_named_worker(cluster):
    a, b = first_two(cluster)
    value = make_array(4 * MIB)
    future = cluster.scatter(value, workers=[b])
    wait(future)
    assert cluster.who_has(future)[future.key] == [b]
    # Reused by content: scattering it again gives the same key.
    assert cluster.scatter(value, workers=[b]).key == future.key


def test_scattered_values_are_spread_over_the_workers(cluster):
    futures = cluster.scatter([make_array(MIB + i * 8) for i in range(8)])
    wait(futures)
    holders = {h for hs in cluster.who_has(futures).values() for h in hs}
    assert holders == set(first_two(cluster))


def test_a_value_lost_with_its_worker_errs_clearly():
    with Client(n_workers=2, threads_per_worker=1, dashboard_address=None) as c:
        info = c.scheduler_info()["workers"]
        address = sorted(info)[0]
        f = c.scatter(make_array(2 * MIB), workers=[address])
        wait(f)
        os.kill(info[address]["pid"], 9)
        c.wait_for_workers(2, timeout=30, without=[address])
        with pytest.raises(RuntimeError, match="was lost with the worker"):
            c.submit(checksum, f, pure=False).result(timeout=30)


def test_a_scattered_value_larger_than_every_memory_limit_is_refused():
    with Client(
        n_workers=2, threads_per_worker=1, memory_limit="400MB", dashboard_address=None
    ) as c:
        # np.empty touches no memory: the check happens before anything is sent.
        with pytest.raises(ValueError, match=r"larger than the memory limit of every worker"):
            c.scatter(np.empty(500 * MIB, dtype="uint8"))
        f = c.scatter(make_array(8 * MIB))
        assert c.submit(checksum, f, pure=False).result() == checksum(make_array(8 * MIB))


def test_spilled_values_read_back_equal(tmp_path):
    # 480 MiB of results on a worker whose target is 240 MB: most go to disk.
    blocks = 24
    with Client(
        n_workers=1,
        threads_per_worker=1,
        memory_limit="400MB",
        memory_terminate_fraction=False,
        local_directory=str(tmp_path),
        dashboard_address=None,
    ) as c:
        sizes = [20 * MIB + 8 * i for i in range(blocks)]
        futures = c.map(make_array, sizes, pure=False)
        wait(futures)
        (spilled,) = c.run(lambda dask_worker: dask_worker.spilled_bytes["disk"]).values()
        assert spilled > 0
        # Read back by a task on the worker and by the client.
        digests = c.gather(c.map(checksum, futures, pure=False))
        assert digests == [checksum(make_array(n)) for n in sizes]
        for n, value in zip(sizes, c.gather(futures)):
            assert same(value, make_array(n))


@pytest.mark.skipif(not os.path.exists("/proc/net/unix"), reason="Linux only")
def test_workers_on_one_host_also_listen_on_a_unix_socket_that_goes_with_them():
    with Client(n_workers=2, threads_per_worker=1, dashboard_address=None) as c:
        workers = sorted(c.scheduler_info()["workers"])
        names = {f"shoal/data/{w.removeprefix('tcp://')}" for w in workers}
        assert names <= same_host_names()
        # Values move between them and to the client (over those sockets:
        # the engine's own tests show a fetch takes one when it answers).
        made = c.submit(make_array, 3 * MIB, workers=[workers[0]], pure=False)
        used = c.submit(checksum, made, workers=[workers[1]])
        assert used.result() == checksum(make_array(3 * MIB))
        assert same(made.result(), make_array(3 * MIB))
    # Nothing is left behind: no name, and no file either.
    assert not names & same_host_names()


def huge_page_advised(array: np.ndarray) -> bool:
    """Whether the memory under ``array`` in this process is a mapping
    advised to be made of huge pages (``hg`` in its ``VmFlags``)."""
    at = array.ctypes.data
    inside = False
    with open("/proc/self/smaps") as f:
        for line in f:
            head = line.split()[0]
            if "-" in head and not head.endswith(":"):
                start, end = (int(x, 16) for x in head.split("-"))
                inside = start <= at < end
            elif inside and head == "VmFlags:":
                return "hg" in line.split()[1:]
    return False


def heap_free_bytes() -> int:
    """Free bytes glibc's heaps hold in this process (0 elsewhere)."""
    import ctypes

    class Mallinfo2(ctypes.Structure):
        _fields_ = [(name, ctypes.c_size_t) for name in "abcdefghij"]

    try:
        mallinfo2 = ctypes.CDLL(None).mallinfo2
    except AttributeError:
        return 0
    mallinfo2.restype = Mallinfo2
    return mallinfo2().i  # fordblks


def may_read(sibling: bool) -> bool:
    """Whether the kernel lets a process read the memory of a sibling (or
    else of a child) of the same user. Yama's ``ptrace_scope`` 1 (Ubuntu's
    default) allows only children, or any process with ``CAP_SYS_PTRACE``
    (root here); 2 only the latter; 3 none. shoal then reads over the
    socket."""
    try:
        with open("/proc/sys/kernel/yama/ptrace_scope") as f:
            scope = int(f.read())
    except FileNotFoundError:
        return True
    root = os.geteuid() == 0
    return scope == 0 or (scope == 1 and (root or not sibling)) or (scope == 2 and root)


@pytest.mark.skipif(not os.path.exists("/proc/self/smaps"), reason="Linux only")
def test_a_large_value_on_this_host_is_copied_once_out_of_its_holder():
    """Between processes on one host a large frame does not cross the
    socket: the reader copies it out of the holder's memory into memory of
    its own made of huge pages (unless its heaps hold enough free memory
    already made), which a value read from a socket never lies in. Worker
    to worker on fresh workers, and worker to client.
    """
    with Client(n_workers=2, threads_per_worker=1, dashboard_address=None) as c:
        a, b = first_two(c)
        made = c.submit(make_array, 64 * MIB, workers=[a], pure=False)
        copied = c.submit(huge_page_advised, made, workers=[b], pure=False).result()
        assert copied == may_read(sibling=True)
        assert c.submit(checksum, made, workers=[b], pure=False).result() == checksum(
            make_array(64 * MIB)
        )
        room = heap_free_bytes()
        value = made.result()
        assert same(value, make_array(64 * MIB))
        if room < 128 * MIB:
            assert huge_page_advised(value) == may_read(sibling=False)
        # Below the size worth memory of its own: the same path, equal too.
        small = c.submit(make_array, 1 * MIB, workers=[a], pure=False)
        expected = checksum(make_array(1 * MIB))
        assert c.submit(checksum, small, workers=[b], pure=False).result() == expected
        assert same(small.result(), make_array(1 * MIB))


def test_received_arrays_need_no_copy_of_their_memory(cluster):
    """A gathered array is a view of the bytes as they arrived: the client
    holds one copy of a 256 MiB value, not two.
    """
    import tracemalloc

    made = cluster.submit(make_array, 256 * MIB, pure=False)
    wait(made)
    tracemalloc.start()
    try:
        value = made.result()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert value.nbytes == 256 * MIB
    # Python allocated next to nothing: the array's memory is the engine's
    # receive buffer (a copy into a Python object would trace 256 MiB).
    assert peak < 16 * MIB


@pytest.mark.skipif(
    os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") < 16 * GIB,
    reason="needs 16 GiB of memory",
)
def test_a_value_over_2_gib_round_trips():
    n = 2 * GIB + 3
    with Client(n_workers=1, threads_per_worker=1, dashboard_address=None) as c:
        value = np.ones(n, dtype="uint8")
        future = c.scatter(value)
        del value
        assert c.submit(lambda v: int(v.sum()), future, pure=False).result(timeout=120) == n
        back = future.result(timeout=120)
        assert back.nbytes == n and int(back[-1]) == 1


def test_arguments_too_large_for_a_spec_travel_as_scattered_values(cluster):
    # np.empty touches no memory on this side: the sender reads zero pages.
    huge = np.empty(GIB + 1, dtype="uint8")
    assert cluster.submit(len, huge, pure=False).result() == GIB + 1
    assert cluster.map(len, [huge], pure=False)[0].result() == GIB + 1
    assert cluster.submit(length, value=huge, pure=False).result() == GIB + 1
    assert cluster.submit(len, [huge, huge], pure=False).result() == 2
    # Many arguments, each small enough to stay in the spec, are refused.
    parts = [np.empty(60 * MIB, dtype="uint8") for _ in range(18)]
    with pytest.raises(ValueError, match=r"scatter large values first"):
        cluster.submit(max, *parts, pure=False)
    # Scattered, the same value is fine.
    assert cluster.submit(len, cluster.scatter(huge[:1024]), pure=False).result() == 1024
