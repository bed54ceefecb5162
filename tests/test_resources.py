"""Worker resources (``resources=``) and ``allow_other_workers=``, as in Dask."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from shoal import Client, LocalCluster, delayed, wait

from tasks import inc, max_overlap, named_span

PY = sys.executable
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}


def _worker(address, name, resources, token):
    return subprocess.Popen(
        [
            PY,
            "-m",
            "shoal",
            "worker",
            address,
            "--nthreads",
            "4",
            "--name",
            name,
            "--resources",
            resources,
            "--lifeline",
        ],
        env=ENV | {"SHOAL_TOKEN": token},
        stdin=subprocess.PIPE,
    )


@pytest.fixture(scope="module")
def cluster():
    """One plain worker and one named "gpu" offering GPU=2, MEM=10e9."""
    with LocalCluster(n_workers=1, threads_per_worker=4, dashboard_address=None) as lc:
        gpu = _worker(lc.scheduler_address, "gpu", "GPU=2 MEM=10e9", lc.security.token)
        try:
            with Client(lc, set_as_default=False) as c:
                c.wait_for_workers(2, timeout=30)
                yield c
        finally:
            gpu.kill()
            gpu.wait()


def test_tasks_run_only_where_their_resources_are_free(cluster):
    spans = cluster.gather(cluster.map(named_span, [0.1] * 6, resources={"GPU": 1}, pure=False))
    assert {name for name, _, _ in spans} == {"gpu"}
    assert max_overlap(spans) <= 2, "two GPUs: at most two at once"
    whole = cluster.gather(cluster.map(named_span, [0.05] * 3, resources={"GPU": 2}, pure=False))
    assert max_overlap(whole) == 1
    assert cluster.submit(named_span, 0, resources={"MEM": 5e9}).result()[0] == "gpu"


def test_resources_appear_in_scheduler_info(cluster):
    workers = {w["name"]: w for w in cluster.scheduler_info()["workers"].values()}
    assert workers["gpu"]["resources"] == {"GPU": 2.0, "MEM": 10e9}
    assert [w["resources"] for n, w in workers.items() if n != "gpu"] == [{}]


def test_a_task_waits_for_a_worker_with_its_resource(cluster):
    fut = cluster.submit(named_span, 0, resources={"TPU": 1}, pure=False)
    with pytest.raises(TimeoutError):
        wait([fut], timeout=0.5)
    assert fut.status == "pending"
    tpu = _worker(cluster.scheduler_address, "tpu", "TPU=1", cluster.cluster.security.token)
    try:
        assert fut.result(timeout=30)[0] == "tpu"
    finally:
        tpu.kill()
        tpu.wait()


def test_compute_places_every_task_of_the_graph(cluster):
    spans = [delayed(named_span)(0, dask_key_name=f"span-{i}") for i in range(3)]
    names = delayed(lambda xs: sorted({n for n, _, _ in xs}))(spans)
    assert cluster.compute(names, resources={"GPU": 1}).result(timeout=30) == ["gpu"]


def test_strict_restrictions_wait_and_loose_ones_run_elsewhere(cluster):
    strict = cluster.submit(inc, 1, workers=["nobody"], pure=False)
    loose = cluster.submit(inc, 2, workers=["nobody"], allow_other_workers=True, pure=False)
    assert loose.result(timeout=30) == 3
    with pytest.raises(TimeoutError):
        wait([strict], timeout=0.3)
    preferred = cluster.map(
        named_span, [0] * 4, workers="gpu", allow_other_workers=True, pure=False
    )
    assert {n for n, _, _ in cluster.gather(preferred)} == {"gpu"}


def test_bad_placement_arguments_raise_clear_errors(cluster):
    with pytest.raises(ValueError, match="allow_other_workers"):
        cluster.submit(inc, 1, allow_other_workers=True)
    with pytest.raises(TypeError, match="resources must be a dict"):
        cluster.submit(inc, 1, resources=["GPU"])
    with pytest.raises(TypeError, match="must be a number"):
        cluster.map(inc, [1], resources={"GPU": "one"})
    with pytest.raises(ValueError, match="finite number"):
        cluster.submit(inc, 1, resources={"GPU": -1})


def test_local_cluster_resources_in_processes_and_threads():
    for processes in (True, False):
        with (
            LocalCluster(
                n_workers=1, processes=processes, resources={"GPU": 1}, dashboard_address=None
            ) as lc,
            Client(lc, set_as_default=False) as c,
        ):
            info = c.scheduler_info()["workers"]
            assert [w["resources"] for w in info.values()] == [{"GPU": 1.0}]
            assert c.submit(inc, 1, resources={"GPU": 1}).result(timeout=30) == 2


def test_the_worker_command_rejects_malformed_resources():
    proc = subprocess.run(
        [PY, "-m", "shoal", "worker", "tcp://127.0.0.1:1", "--resources", "GPU"],
        env=ENV,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert "resources must look like 'GPU=2,MEM=10e9'" in proc.stderr
