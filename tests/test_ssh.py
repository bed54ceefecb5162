"""SSHCluster against a real ``sshd`` on this machine (a throwaway host key
and client key made here): a scheduler and workers started over SSH, work
run, scaled, logs read, with the token and with TLS, and nothing left
running after ``close``."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess

import pytest

from shoal import Client

from conftest import processes, until

asyncssh = pytest.importorskip("asyncssh")
pytestmark = pytest.mark.timeout(180)

SSHD = shutil.which("sshd") or "/usr/sbin/sshd"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def reachable(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


@pytest.fixture(scope="module")
def sshd(tmp_path_factory):
    """An sshd on a free loopback port that lets in one key made here."""
    if not os.path.exists(SSHD) or os.geteuid() != 0:
        pytest.skip("needs root and OpenSSH's sshd (Debian: openssh-server)")
    d = tmp_path_factory.mktemp("sshd")
    for name in ("host_key", "client_key"):
        subprocess.run(
            ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(d / name)], check=True
        )
    (d / "authorized_keys").write_text((d / "client_key.pub").read_text())
    port = free_port()
    (d / "sshd_config").write_text(
        f"Port {port}\nListenAddress 127.0.0.1\nHostKey {d / 'host_key'}\n"
        f"AuthorizedKeysFile {d / 'authorized_keys'}\nPidFile {d / 'sshd.pid'}\n"
        "PasswordAuthentication no\nKbdInteractiveAuthentication no\n"
        "PermitRootLogin prohibit-password\nStrictModes no\nUsePAM no\n"
    )
    os.makedirs("/run/sshd", exist_ok=True)
    proc = subprocess.Popen(
        [SSHD, "-D", "-e", "-f", str(d / "sshd_config")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        until(lambda: reachable(port) or proc.poll() is not None, what="sshd listening")
        if proc.poll() is not None:
            pytest.fail(f"sshd did not start: {proc.stderr.read()}")
        yield {
            "port": port,
            "username": "root",
            "client_keys": [str(d / "client_key")],
            "known_hosts": None,
        }
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def shoal_processes() -> set[int]:
    """Pids of SSHCluster's processes: a scheduler, or a worker named
    ``ssh-N``, started with --credentials-stdin (a Slurm job's worker,
    which reads its credentials the same way, is not one)."""
    pids = set()
    for pid, _, argv in processes():
        ours = b"scheduler" in argv or any(a.startswith(b"ssh-") for a in argv)
        if b"--credentials-stdin" in argv and ours:
            pids.add(pid)
    return pids


def test_a_cluster_over_ssh_runs_scales_logs_and_leaves_nothing(sshd):
    from shoal import SSHCluster

    before = shoal_processes()
    cluster = SSHCluster(
        ["127.0.0.1", "127.0.0.1", "127.0.0.1"],
        connect_options=sshd,
        worker_options={"nthreads": 1},
        scheduler_options={"port": 0},
    )
    try:
        assert cluster.scheduler_address.startswith("tcp://127.0.0.1:")
        started = shoal_processes() - before
        assert len(started) == 3
        # The token is on no command line.
        for pid in started:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                assert cluster.security.token.encode() not in f.read()
        with Client(cluster, set_as_default=False) as c:
            assert len(c.scheduler_info()["workers"]) == 2
            assert c.gather(c.map(lambda x: x * 3, range(50))) == [x * 3 for x in range(50)]
            big = c.submit(lambda: b"s" * 300_000)
            cluster.scale(3)
            c.wait_for_workers(3, timeout=60)
            cluster.scale(1)
            until(lambda: len(c.scheduler_info()["workers"]) == 1, what="two workers retired")
            assert big.result() == b"s" * 300_000
            names = {w["name"] for w in c.scheduler_info()["workers"].values()}
            assert names <= {"ssh-0", "ssh-1", "ssh-2"}
            logs = cluster.get_logs()
            assert "Scheduler at: tcp://127.0.0.1" in logs["Scheduler"]
            (left,) = c.scheduler_info()["workers"]
            assert set(logs) == {"Scheduler", left}
            assert "serves data on" in logs[left]
    finally:
        cluster.close()
    until(lambda: not (shoal_processes() - before), what="every remote process to exit")


def test_a_cluster_over_ssh_speaks_tls_when_asked(sshd):
    from shoal import SSHCluster

    with SSHCluster(
        ["127.0.0.1", "127.0.0.1"],
        connect_options=sshd,
        scheduler_options={"port": 0},
        security=True,
    ) as cluster:
        assert cluster.scheduler_address.startswith("tls://")
        with Client(cluster, set_as_default=False) as c:
            assert c.submit(lambda: 41 + 1).result() == 42


def test_a_host_that_refuses_is_a_clear_error_and_leaves_nothing(sshd, tmp_path):
    from shoal import SSHCluster

    other = tmp_path / "other_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other)], check=True)
    before = shoal_processes()
    with pytest.raises(asyncssh.PermissionDenied):
        SSHCluster(["127.0.0.1", "127.0.0.1"], connect_options=sshd | {"client_keys": [str(other)]})
    with pytest.raises(TypeError, match="worker_options does not take"):
        SSHCluster(["127.0.0.1"], connect_options=sshd, worker_options={"threads": 2})
    with pytest.raises(ValueError, match="hosts"):
        SSHCluster("127.0.0.1", connect_options=sshd)
    assert not (shoal_processes() - before)
