"""SLURMCluster against a real single-node Slurm started here (munged,
slurmctld and slurmd on loopback, from Debian's ``slurm-wlm`` and
``munge``): jobs submitted with sbatch, workers connected, a map, adaptive
scaling through bursts of work and back to nothing, and no job left in
``squeue`` after ``close``."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time

import pytest

from shoal import Client

from conftest import until

pytestmark = pytest.mark.timeout(240)

BINARIES = ("munged", "slurmctld", "slurmd", "sbatch", "squeue", "scancel")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def slurm(tmp_path_factory):
    """A one-node Slurm; ``SLURM_CONF`` points at it while the module runs."""
    missing = [
        b for b in BINARIES if shutil.which(b) is None and not os.path.exists(f"/usr/sbin/{b}")
    ]
    if missing or os.geteuid() != 0:
        pytest.skip(f"needs root and Slurm (Debian: slurm-wlm, munge); missing {missing}")
    d = tmp_path_factory.mktemp("slurm")
    (d / "state").mkdir()
    (d / "spool").mkdir()
    key = d / "munge.key"
    key.write_bytes(os.urandom(1024))
    key.chmod(0o600)
    node = socket.gethostname().split(".")[0]
    conf = d / "slurm.conf"
    conf.write_text(
        "\n".join(
            [
                "ClusterName=shoaltest",
                f"SlurmctldHost={node}(127.0.0.1)",
                "SlurmUser=root",
                "SlurmdUser=root",
                "AuthType=auth/munge",
                f"AuthInfo=socket={d / 'munge.sock'}",
                "CredType=cred/munge",
                f"StateSaveLocation={d / 'state'}",
                f"SlurmdSpoolDir={d / 'spool'}",
                f"SlurmctldPidFile={d / 'slurmctld.pid'}",
                f"SlurmdPidFile={d / 'slurmd.pid'}",
                f"SlurmctldPort={free_port()}",
                f"SlurmdPort={free_port()}",
                "ProctrackType=proctrack/linuxproc",
                "TaskPlugin=task/none",
                "ReturnToService=2",
                "SchedulerType=sched/builtin",
                "SelectType=select/cons_tres",
                "SelectTypeParameters=CR_Core_Memory",
                "MpiDefault=none",
                "JobAcctGatherType=jobacct_gather/none",
                "AccountingStorageType=accounting_storage/none",
                f"SlurmctldLogFile={d / 'slurmctld.log'}",
                f"SlurmdLogFile={d / 'slurmd.log'}",
                "SlurmdParameters=config_overrides",
                f"NodeName={node} NodeAddr=127.0.0.1 CPUs=8 RealMemory=8000 State=UNKNOWN",
                f"PartitionName=debug Nodes={node} Default=YES MaxTime=INFINITE State=UP",
                "",
            ]
        )
    )
    old = os.environ.get("SLURM_CONF")
    os.environ["SLURM_CONF"] = str(conf)
    procs = []
    try:
        procs.append(
            subprocess.Popen(
                [
                    "munged",
                    "--force",
                    "--foreground",
                    f"--socket={d / 'munge.sock'}",
                    f"--key-file={key}",
                    f"--pid-file={d / 'munged.pid'}",
                    f"--log-file={d / 'munged.log'}",
                    f"--seed-file={d / 'munged.seed'}",
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )  # fmt: skip
        )
        until(lambda: (d / "munge.sock").exists(), what="munged")
        for daemon in ("slurmctld", "slurmd"):
            procs.append(
                subprocess.Popen(
                    [daemon, "-D", "-f", str(conf)],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            )

        def idle() -> bool:
            out = subprocess.run(
                ["sinfo", "-h", "-o", "%t"], capture_output=True, text=True, timeout=30
            )
            return out.stdout.strip() == "idle"

        until(idle, timeout=60, what="the Slurm node to be idle")
        yield d
    finally:
        subprocess.run(["scancel", "--user", "root"], capture_output=True, timeout=30)
        for p in reversed(procs):
            p.terminate()
            p.wait(timeout=30)
        if old is None:
            os.environ.pop("SLURM_CONF", None)
        else:
            os.environ["SLURM_CONF"] = old


def queued(jobs: list[str] | None = None) -> list[str]:
    """Ids of jobs in ``squeue`` (of ``jobs``, if given)."""
    out = subprocess.run(["squeue", "-h", "-o", "%i"], capture_output=True, text=True, timeout=30)
    ids = out.stdout.split()
    return ids if jobs is None else [j for j in ids if j in jobs]


def slurm_cluster(**kwargs):
    from shoal.deploy import SLURMCluster

    options = {"host": "127.0.0.1", "dashboard_address": None}
    return SLURMCluster(cores=1, memory="400MB", processes=1, scheduler_options=options, **kwargs)


def test_jobs_run_workers_and_adapt_follows_bursts_of_work(slurm, tmp_path):
    with slurm_cluster(log_directory=str(tmp_path / "logs")) as cluster:
        assert "#SBATCH --cpus-per-task=1" in cluster.job_script()
        with Client(cluster, set_as_default=False) as c:
            start = time.perf_counter()
            cluster.scale(2)
            c.wait_for_workers(2, timeout=120)
            print(f"scale(2) to two workers connected: {time.perf_counter() - start:.2f} s")
            jobs = list(cluster.jobs)
            assert len(jobs) == 2 and sorted(queued(jobs)) == sorted(jobs)
            assert c.gather(c.map(lambda x: x + 1, range(100))) == list(range(1, 101))
            names = {w["name"] for w in c.scheduler_info()["workers"].values()}
            assert names == {f"shoal-worker-{j}-0" for j in jobs}
            logs = cluster.get_logs()
            assert set(logs) == {"Cluster", "Scheduler", *c.scheduler_info()["workers"]}
            assert "connected from" in logs["Scheduler"]
            assert all("serves data on" in logs[w] for w in c.scheduler_info()["workers"])

            adaptive = cluster.adapt(
                minimum=0, maximum=2, interval="100ms", wait_count=3, target_duration="1s"
            )
            until(lambda: not queued(jobs), timeout=120, what="the idle jobs cancelled")
            assert cluster.n_workers == 0
            for burst in range(2):
                futures = c.map(lambda x: time.sleep(0.3) or x * 2, range(12), pure=False)
                assert c.gather(futures) == [x * 2 for x in range(12)]
                del futures
                until(
                    lambda: not cluster.jobs and not queued(),
                    timeout=120,
                    what=f"scaling back to 0 after burst {burst}",
                )
            ups = [n for n, had in adaptive.log if n > had]
            assert len(ups) >= 2, adaptive.log
        submitted = list(cluster.jobs)
    assert not queued(submitted)
    assert not queued()


def test_the_job_script_has_jobqueue_options(slurm):
    with slurm_cluster(
        queue="debug",
        account="physics",
        walltime="01:00:00",
        job_extra_directives=["--exclusive"],
        job_script_prologue=["export OMP_NUM_THREADS=1"],
    ) as cluster:
        script = cluster.job_script()
        for line in (
            "#SBATCH --partition=debug",
            "#SBATCH --account=physics",
            "#SBATCH --time=01:00:00",
            "#SBATCH --exclusive",
            "#SBATCH --mem=381M",
            "#SBATCH --output=/dev/null",
            "export OMP_NUM_THREADS=1",
        ):
            assert line in script, script
        assert cluster.security.token not in script


@pytest.mark.parametrize(
    "option, message",
    [
        ({"job_name": 'w"; touch owned; "'}, "job_name must be letters"),
        ({"job_name": "-n"}, "job_name must be letters"),
        ({"queue": "debug\ntouch owned"}, "queue must be one line"),
        ({"walltime": "1:00\rtouch owned"}, "walltime must be one line"),
        ({"job_extra_directives": ["--exclusive", "--x\ntouch owned"]}, "one line"),
        ({"log_directory": "logs\ntouch owned"}, "log_directory must be one line"),
    ],
)
def test_values_that_would_change_the_job_script_are_refused(option, message):
    # Each lands in an #SBATCH line (a line break starts a shell line) and
    # the job name in a quoted shell word: refused before anything starts.
    from shoal.deploy.slurm import SLURMCluster

    with pytest.raises(ValueError, match=message):
        SLURMCluster(cores=1, memory="1GB", **option)


def test_a_refused_submission_is_a_clear_error_and_leaves_nothing(slurm):
    with slurm_cluster(queue="no-such-partition") as cluster:
        with pytest.raises(RuntimeError, match="sbatch failed: .*partition"):
            cluster.scale(1)
        assert cluster.jobs == []
    with pytest.raises(ValueError, match="cores"):
        slurm_cluster_cores(0)
    with slurm_cluster(submit_command="no-such-sbatch") as cluster:
        with pytest.raises(RuntimeError, match="no-such-sbatch not found"):
            cluster.scale(1)


def slurm_cluster_cores(cores):
    from shoal.deploy import SLURMCluster

    return SLURMCluster(cores=cores, memory="1GB")


def test_adapt_says_once_why_it_cannot_scale_and_keeps_trying(slurm, caplog):
    with slurm_cluster(submit_command="no-such-sbatch") as cluster:
        adaptive = cluster.adapt(minimum=1, maximum=2, interval="20ms")
        until(lambda: adaptive.last_error is not None, what="a failed scale-up")
        first = adaptive.last_error
        # It goes on checking, and says the same reason only once.
        until(lambda: len([r for r in caplog.records if "adapt" in r.message]) >= 1)
        assert "no-such-sbatch not found" in first
        assert adaptive._thread.is_alive()
        cluster.stop_adapting()
    said = [r for r in caplog.records if "adapt could not scale" in r.message]
    assert len(said) == 1, [r.message for r in said]


def test_jobs_join_over_tls(slurm):
    with slurm_cluster(security=True) as cluster:
        assert cluster.scheduler_address.startswith("tls://")
        with Client(cluster, set_as_default=False) as c:
            cluster.scale(1)
            c.wait_for_workers(1, timeout=120)
            assert c.submit(lambda: 6 * 7).result() == 42
            # The certificates reached the job through its credentials
            # file, not its script or its environment.
            assert "BEGIN" not in cluster.job_script()
            environ = c.run(_own_environ)
            assert all(b"BEGIN" not in e and b"SHOAL_TOKEN" not in e for e in environ.values())


def _own_environ() -> bytes:
    """The environment this process started with, as the kernel keeps it
    (readable while it runs, whatever ``os.environ`` became)."""
    with open("/proc/self/environ", "rb") as f:
        return f.read()


def test_the_token_reaches_jobs_in_a_private_file_never_their_environment(slurm, tmp_path):
    with slurm_cluster(shared_temp_directory=str(tmp_path)) as cluster:
        script = cluster.job_script()
        (path,) = tmp_path.iterdir()
        assert f"< {path}" in script and cluster.security.token not in script
        assert path.stat().st_mode & 0o777 == 0o600
        assert cluster.security.token in path.read_text()
        with Client(cluster, set_as_default=False) as c:
            cluster.scale(1)
            c.wait_for_workers(1, timeout=120)
            assert c.submit(lambda: 6 * 7).result() == 42
            environ = c.run(_own_environ)
            token = cluster.security.token.encode()
            assert environ and all(token not in e for e in environ.values())
    assert list(tmp_path.iterdir()) == [], "the file goes with the cluster"
