"""Authentication: the cluster's token on every connection to the scheduler
and to workers' data servers, refused connections and what each side says."""

from __future__ import annotations

import base64
import os
import socket
import subprocess
import sys
import textwrap
import threading

import pytest
from wire import PROTOCOL, exchange, frame, greeting, handshake

from shoal import Client, LocalCluster, Security
from shoal.utils_test import gen_cluster

from tasks import inc

pytestmark = pytest.mark.timeout(120)

PY = sys.executable
ENV = {k: v for k, v in os.environ.items() if k not in ("SHOAL_TOKEN", "SHOAL_TOKEN_FILE")} | {
    "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)
}


@pytest.fixture(scope="module")
def cluster():
    with LocalCluster(n_workers=1, threads_per_worker=1, dashboard_address=None) as c:
        yield c


def client_elsewhere(
    address: str,
    env: dict[str, str] | None = None,
    security: str = "None",
    work: str = 'print("result", c.submit(inc, 1).result())',
):
    """Connect from another process (which knows no cluster of its own) and
    do ``work`` (by default, run a task); returns the process's outcome."""
    code = textwrap.dedent(
        f"""
        from shoal import Client, Security
        from tasks import inc
        with Client({address!r}, security={security}, timeout=10) as c:
            {work}
        """
    )
    return subprocess.run(
        [PY, "-c", code],
        capture_output=True,
        text=True,
        env=ENV | (env or {}),
        timeout=60,
    )


def test_a_local_cluster_has_a_token_its_own_clients_need_not_know(cluster):
    token = cluster.security.token
    assert token and len(token) >= 32
    assert token not in repr(cluster.security)
    with Client(cluster, set_as_default=False) as c:
        assert c.submit(inc, 1).result() == 2
    # By address, from the process that started it, as in Dask.
    with Client(cluster.scheduler_address, set_as_default=False) as c:
        assert c.submit(inc, 2).result() == 3


def test_two_local_clusters_have_different_tokens(cluster):
    with LocalCluster(n_workers=0, dashboard_address=None) as other:
        assert other.security.token != cluster.security.token


def test_the_token_is_not_on_any_command_line(cluster):
    token = cluster.security.token.encode()
    for pid in cluster.worker_pids():
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            assert token not in f.read()


def environ(pid: int) -> bytes:
    with open(f"/proc/{pid}/environ", "rb") as f:
        return f.read()


def test_no_worker_process_holds_the_token_in_its_environment():
    """``/proc/PID/environ`` keeps what a process was started with, whatever
    it later removes from ``os.environ``: the token and TLS key reach workers
    on standard input (or an inherited pipe when a worker restarts by exec),
    never in their environment."""
    with (
        LocalCluster(n_workers=2, threads_per_worker=1, dashboard_address=None) as cluster,
        Client(cluster, set_as_default=False) as c,
    ):
        token = cluster.security.token.encode()
        first = cluster.worker_pids()
        assert first and all(token not in environ(p) for p in first)
        c.restart()
        # Restarted by exec: the same processes, new interpreters that
        # joined with the token.
        assert c.submit(inc, 1).result() == 2
        assert all(token not in environ(p) for p in cluster.worker_pids())


def test_workers_of_a_worker_command_do_not_hold_the_token_in_their_environment(tmp_path):
    path = tmp_path / "token"
    path.write_text("from-a-file-0123456789\n")
    proc, address = start_scheduler("--token-file", str(path))
    worker = subprocess.Popen(
        [PY, "-m", "shoal", "worker", address, "--nworkers", "2", "--token-file", str(path)],
        env=ENV,
    )
    try:
        with Client(
            address, security=Security(token="from-a-file-0123456789"), set_as_default=False
        ) as c:
            c.wait_for_workers(2, timeout=30)
            pids = [w["pid"] for w in c.scheduler_info()["workers"].values()]
            assert len(pids) == 2 and worker.pid not in pids
            for pid in pids:
                assert b"from-a-file" not in environ(pid)
    finally:
        worker.terminate()
        worker.wait(timeout=30)
        stop(proc)


def test_another_process_needs_the_token(cluster):
    address = cluster.scheduler_address
    token = cluster.security.token
    refused = client_elsewhere(address)
    assert refused.returncode != 0
    assert "ConnectionError" in refused.stderr
    assert "a token is required" in refused.stderr
    wrong = client_elsewhere(address, security="Security(token='guess')")
    assert "wrong token" in wrong.stderr
    assert token not in wrong.stderr
    by_env = client_elsewhere(address, env={"SHOAL_TOKEN": token})
    assert by_env.stdout.strip() == "result 2", by_env.stderr
    by_arg = client_elsewhere(address, security=f"Security(token={token!r})")
    assert by_arg.stdout.strip() == "result 2", by_arg.stderr


def test_a_client_with_the_wrong_token_in_this_process_is_refused(cluster):
    with pytest.raises(ConnectionError, match="wrong token"):
        Client(cluster.scheduler_address, security=Security(token="guess"), set_as_default=False)


class Recorder:
    """A TCP listener on loopback that records every byte it is sent: as
    a relay to ``target`` (an eavesdropper on the path), or on its own
    answering as ``answer`` says (a process pretending to be a scheduler).
    """

    def __init__(self, target: str | None = None, answer=None):
        self.target, self.answer = target, answer
        self.seen = bytearray()
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.address = f"tcp://127.0.0.1:{self.listener.getsockname()[1]}"
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            if self.target is None:
                threading.Thread(target=self._pretend, args=(conn,), daemon=True).start()
                continue
            host, port = self.target.split("://")[-1].rsplit(":", 1)
            upstream = socket.create_connection((host, int(port)))
            for a, b in ((conn, upstream), (upstream, conn)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    def _pipe(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while chunk := src.recv(65536):
                self.seen += chunk
                dst.sendall(chunk)
        except OSError:
            pass
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def _pretend(self, conn: socket.socket) -> None:
        with conn:
            conn.settimeout(10)
            try:
                first = conn.recv(65536)
                self.seen += first
                conn.sendall(self.answer(callee_nonce_of_greeting(first)))
                while chunk := conn.recv(65536):
                    self.seen += chunk
            except OSError:
                pass

    def close(self) -> None:
        self.listener.close()


def callee_nonce_of_greeting(first: bytes) -> bytes:
    mark = b"\xa5nonce\xc4\x20"
    i = first.index(mark) + len(mark)
    return first[i : i + 32]


def test_the_token_never_crosses_the_wire(cluster):
    token = cluster.security.token.encode()
    relay = Recorder(target=cluster.scheduler_address)
    try:
        with Client(relay.address, security=cluster.security, set_as_default=False) as c:
            assert c.submit(inc, 1).result() == 2
        # Both ways of the connection went through the relay: the hello,
        # the task and its result; the token in no form a listener could
        # use.
        seen = bytes(relay.seen)
        assert b"Client" in seen and b"inc" in seen
        assert token not in seen
        assert base64.b64encode(token) not in seen and token.hex().encode() not in seen
    finally:
        relay.close()


@pytest.mark.parametrize(
    "proof, message",
    [(None, "runs without a token"), (bytes(range(32)), "wrong token")],
)
def test_a_process_pretending_to_be_the_scheduler_learns_nothing(cluster, proof, message):
    def answer(caller_nonce: bytes) -> bytes:
        callee = os.urandom(32)
        return frame({"Challenge": {"nonce": callee, "proof": proof}})

    fake = Recorder(answer=answer)
    try:
        with pytest.raises(ConnectionError, match=message):
            Client(fake.address, security=cluster.security, set_as_default=False, timeout=10)
        # It got the client's greeting (a version and a nonce) and nothing
        # more: no proof it could replay, no hello, never the token.
        seen = bytes(fake.seen)
        assert len(seen) == 4 + int.from_bytes(seen[:4], "little"), "one frame only"
        assert b"nonce" in seen and b"proof" not in seen and b"role" not in seen
        assert cluster.security.token.encode() not in seen
    finally:
        fake.close()


def test_a_worker_with_the_wrong_token_is_refused(cluster, tmp_path):
    wrong = tmp_path / "token"
    wrong.write_text("guess\n")
    proc = subprocess.run(
        [PY, "-m", "shoal", "worker", cluster.scheduler_address, "--token-file", str(wrong)],
        capture_output=True,
        text=True,
        env=ENV,
        timeout=60,
    )
    assert proc.returncode == 1
    assert "refused this worker: wrong token" in proc.stderr
    # And one with the token gets in.
    worker = subprocess.Popen(
        [PY, "-m", "shoal", "worker", cluster.scheduler_address, "--name", "extra"],
        env=ENV | {"SHOAL_TOKEN": cluster.security.token},
    )
    try:
        with Client(cluster, set_as_default=False) as c:
            c.wait_for_workers(2, timeout=30)
            names = {w["name"] for w in c.scheduler_info()["workers"].values()}
            assert "extra" in names
    finally:
        worker.kill()
        worker.wait()


def test_a_data_fetch_needs_the_token(cluster):
    with Client(cluster, set_as_default=False) as c:
        big = c.submit(lambda: b"secret-bytes" * 20_000, pure=False)
        big.result()
        (holder,) = c.who_has(big)[big.key]
        ask = frame({"Get": {"keys": [big.key]}})
        refused = handshake(holder, None, ask)
        assert b"a token is required" in refused and b"secret-bytes" not in refused
        wrong = handshake(holder, "guess", ask)
        assert b"wrong token" in wrong and b"secret-bytes" not in wrong
        right = handshake(holder, cluster.security.token, ask)
        assert b"secret-bytes" in right


def test_a_hello_from_another_protocol_version_is_refused_clearly(cluster):
    # What protocol 3 sent first: the token itself, in clear.
    old = {"protocol": PROTOCOL - 1, "version": "0.0.3", "token": cluster.security.token}
    answer = exchange(cluster.scheduler_address, frame(old))
    assert b"version mismatch" in answer and b"shoal 0.0.3" in answer
    answer = exchange(cluster.scheduler_address, frame(greeting(protocol=PROTOCOL + 1)))
    assert b"version mismatch" in answer and b"shoal 0.1.0" in answer
    # A hello this version cannot even read (an older layout).
    answer = exchange(cluster.scheduler_address, frame({"Client": {"name": "old"}}))
    assert b"another shoal version" in answer


def start_scheduler(*args: str, env: dict[str, str] | None = None):
    proc = subprocess.Popen(
        [PY, "-m", "shoal", "scheduler", "--port", "0", "--no-dashboard", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=ENV | (env or {}),
    )
    line = proc.stdout.readline()
    assert line.startswith("Scheduler at: tcp://"), line + proc.stderr.read()
    return proc, line.split(": ", 1)[1].strip()


def stop(proc: subprocess.Popen) -> str:
    proc.terminate()
    _, err = proc.communicate(timeout=30)
    return err


def test_the_scheduler_command_listens_on_loopback_by_default():
    proc, address = start_scheduler()
    try:
        assert address.startswith("tcp://127.0.0.1:")
        # No token on loopback unless one is given: this machine's users.
        result = client_elsewhere(address, work='print("connected", c.status)')
        assert result.stdout.strip() == "connected running", result.stderr
    finally:
        err = stop(proc)
    assert "Token" not in err and "no TLS" not in err


def test_listening_wider_generates_a_token_and_refusals_are_logged():
    proc, address = start_scheduler("--host", "0.0.0.0")
    token_line = proc.stdout.readline()
    assert token_line.startswith("Token: "), token_line
    token = token_line.split(": ", 1)[1].strip()
    local = address.replace("0.0.0.0", "127.0.0.1")
    worker = subprocess.Popen(
        [PY, "-m", "shoal", "worker", local], env=ENV | {"SHOAL_TOKEN": token}
    )
    try:
        assert "wrong token" in client_elsewhere(local, env={"SHOAL_TOKEN": "guess"}).stderr
        ok = client_elsewhere(local, security=f"Security(token={token!r})")
        assert ok.stdout.strip() == "result 2", ok.stderr
    finally:
        worker.kill()
        worker.wait()
        err = stop(proc)
    assert "Clients and workers need it" in err
    # Once, what plain TCP beyond this machine leaves open.
    assert err.count("no TLS: the token never crosses the network") == 1
    assert "refused a client or worker from 127.0.0.1" in err and "wrong token" in err
    assert "guess" not in err


def test_a_given_token_is_required_on_loopback_too(tmp_path):
    path = tmp_path / "token"
    path.write_text("from-a-file\n")
    proc, address = start_scheduler("--token-file", str(path))
    try:
        connected = 'print("connected", c.status)'
        assert "a token is required" in client_elsewhere(address, work=connected).stderr
        ok = client_elsewhere(address, env={"SHOAL_TOKEN_FILE": str(path)}, work=connected)
        assert ok.stdout.strip() == "connected running", ok.stderr
    finally:
        stop(proc)


@pytest.mark.parametrize(
    "args, message",
    [
        (["--token", "a b"], "bad token"),
        (["--token", "x", "--token-file", "y"], "not both"),
        (["--token-file", "/nonexistent/token"], "could not read the token file"),
    ],
)
def test_bad_tokens_are_refused_at_start(args, message):
    proc = subprocess.run(
        [PY, "-m", "shoal", "scheduler", "--port", "0", "--no-dashboard", *args],
        capture_output=True,
        text=True,
        env=ENV,
        timeout=60,
    )
    assert proc.returncode != 0
    assert message in proc.stderr


def test_security_refuses_what_it_does_not_do():
    with pytest.raises(NotImplementedError, match="tls_ciphers"):
        Security(tls_ciphers="ECDHE")
    with pytest.raises(TypeError, match="token"):
        Security(token=123)


def test_a_worker_that_had_the_token_in_its_environment_hides_it_from_tasks(cluster):
    with Client(cluster, set_as_default=False) as c:
        assert c.submit(os.environ.get, "SHOAL_TOKEN", pure=False).result() is None


def test_a_connection_that_never_says_hello_is_closed_and_the_scheduler_serves_on(cluster):
    import socket

    host, port = cluster.scheduler_address.split("://")[-1].rsplit(":", 1)
    # One connection silent from the start, one that stops halfway through
    # a length prefix: the scheduler hangs up on both (after its 10 s
    # handshake limit) without a word.
    with (
        socket.create_connection((host, int(port))) as silent,
        socket.create_connection((host, int(port))) as halfway,
    ):
        halfway.sendall(b"\x10\x00")
        for s in (silent, halfway):
            s.settimeout(60)
            assert s.recv(1024) == b""
    with Client(cluster, set_as_default=False) as c:
        assert c.submit(inc, 1).result() == 2


class Nanny:
    """Dask's name: ``gen_cluster(Worker=Nanny)`` puts workers in processes."""


@gen_cluster(client=True, Worker=Nanny, security=Security(token="utils-test-token-0123"))
async def test_workers_of_a_test_cluster_do_not_hold_the_token_in_their_environment(c, s, a, b):
    pids = await c.run(os.getpid)
    assert len(pids) == 2 and os.getpid() not in pids.values()
    for pid in pids.values():
        assert b"utils-test-token-0123" not in environ(pid)
