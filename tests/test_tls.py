"""TLS: clusters whose every connection (client, worker, peer fetches, the
client's fetches from workers, ``Client.run``) is encrypted, with
certificates made here by ``trustme`` (files) or by ``Security.temporary()``,
and what each side says when the two ends do not agree."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import textwrap
from typing import Any

import pytest
import trustme
from wire import exchange, frame, greeting

from shoal import Client, LocalCluster, Security, delayed

from tasks import inc

pytestmark = pytest.mark.timeout(120)

PY = sys.executable
ENV = {k: v for k, v in os.environ.items() if not k.startswith("SHOAL_")} | {
    "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)
}


class Certs:
    """A CA and certificates it signed for each role, as files in ``dir``."""

    def __init__(self, dir, ca: trustme.CA | None = None):
        self.dir = dir
        self.ca = ca or trustme.CA()
        self.ca_file = str(dir / "ca.pem")
        self.ca.cert_pem.write_to_path(self.ca_file)
        self.files = {}
        for role in ("client", "scheduler", "worker"):
            cert = self.ca.issue_cert("127.0.0.1", "localhost", common_name=f"shoal-{role}")
            cert_file, key_file = str(dir / f"{role}.pem"), str(dir / f"{role}.key")
            cert.cert_chain_pems[0].write_to_path(cert_file)
            cert.private_key_pem.write_to_path(key_file)
            self.files[role] = (cert_file, key_file)

    def security(self, token: str | None = None, mutual: bool = True, **kwargs) -> Security:
        """Every role's certificate, from files."""
        pairs = {
            f"tls_{role}_{part}": path
            for role, (cert, key) in self.files.items()
            for part, path in (("cert", cert), ("key", key))
        }
        return Security(token=token, tls_ca_file=self.ca_file, tls_mutual=mutual, **pairs | kwargs)


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    return Certs(tmp_path_factory.mktemp("certs"))


@pytest.fixture(scope="module")
def cluster(certs):
    with LocalCluster(
        n_workers=2, threads_per_worker=1, dashboard_address=None, security=certs.security()
    ) as c:
        yield c


def elsewhere(
    address: str, security: str, work: str = 'print("result", c.submit(inc, 1).result())'
):
    """Connect from another process and do ``work``; returns its outcome."""
    code = textwrap.dedent(
        f"""
        from shoal import Client, Security
        from tasks import inc
        with Client({address!r}, security={security}, timeout=10) as c:
            {work}
        """
    )
    return subprocess.run([PY, "-c", code], capture_output=True, text=True, env=ENV, timeout=60)


def test_a_cluster_over_tls_runs_maps_graphs_and_large_results(cluster):
    assert cluster.scheduler_address.startswith("tls://")
    with Client(cluster, set_as_default=False) as c:
        c.wait_for_workers(2, timeout=30)
        workers = sorted(c.scheduler_info()["workers"])
        assert all(w.startswith("tls://") for w in workers)
        assert c.gather(c.map(inc, range(100))) == list(range(1, 101))
        # An intermediate made on one worker and used on the other: it moves
        # between workers over TLS.
        made = c.submit(lambda: b"x" * 300_000, workers=[workers[0]], pure=False)
        used = c.submit(len, made, workers=[workers[1]])
        assert used.result() == 300_000
        assert set(c.who_has(used)[used.key]) == {workers[1]}
        # A large result the client fetches straight from its worker.
        assert made.result() == b"x" * 300_000
        # A delayed graph across both.
        parts = [delayed(inc)(i) for i in range(10)]
        assert delayed(sum)(parts).compute(scheduler=c) == sum(range(1, 11))
        # Client.run reaches each worker's data server.
        pids = c.run(os.getpid)
        assert sorted(pids) == workers
        assert sorted(pids.values()) == sorted(cluster.worker_pids())


def test_another_process_needs_the_certificates_and_the_token(cluster, certs):
    address = cluster.scheduler_address
    token = cluster.security.token
    right = elsewhere(address, repr_security(certs, token))
    assert right.stdout.strip() == "result 2", right.stderr
    # No TLS options for a tls:// address.
    bare = elsewhere(address, f"Security(token={token!r})")
    assert "no TLS options were given" in bare.stderr
    # The tcp:// address of a TLS port.
    plain = elsewhere(address.replace("tls://", "tcp://"), f"Security(token={token!r})")
    assert "speaks TLS" in plain.stderr, plain.stderr
    # Only the CA: the scheduler asks every caller for a certificate.
    ca_only = elsewhere(address, f"Security(token={token!r}, tls_ca_file={certs.ca_file!r})")
    assert "requires a certificate" in ca_only.stderr, ca_only.stderr
    # Certificates of another CA.
    (certs.dir / "other").mkdir(exist_ok=True)
    other = Certs(certs.dir / "other")
    theirs = elsewhere(address, repr_security(other, token))
    assert "same CA" in theirs.stderr, theirs.stderr
    # The right certificates and the wrong token.
    wrong = elsewhere(address, repr_security(certs, "guess"))
    assert "wrong token" in wrong.stderr
    # The cluster serves on.
    assert elsewhere(address, repr_security(certs, token)).stdout.strip() == "result 2"


def repr_security(certs: Certs, token: str) -> str:
    cert, key = certs.files["client"]
    return (
        f"Security(token={token!r}, tls_ca_file={certs.ca_file!r}, "
        f"tls_client_cert={cert!r}, tls_client_key={key!r})"
    )


def test_a_worker_data_server_speaks_only_tls(cluster):
    with Client(cluster, set_as_default=False) as c:
        big = c.submit(lambda: b"secret-bytes" * 20_000, pure=False)
        big.result()
        (holder,) = c.who_has(big)[big.key]
        ask = frame({"Get": {"keys": [big.key]}})
        # Plain TCP with the right token: a TLS alert comes back, no data.
        answer = exchange(holder, frame(greeting()), ask)
        assert b"secret-bytes" not in answer
        assert answer[:2] == b"\x15\x03", answer[:16]
        # The worker serves on.
        assert big.result() == b"secret-bytes" * 20_000


@pytest.mark.skipif(not os.path.exists("/proc/net/unix"), reason="Linux only")
def test_workers_with_tls_keep_their_data_on_tls_even_on_one_host(cluster):
    """No same-host Unix socket: with TLS the certificates authenticate
    peers, and a Unix socket would carry the data without them."""
    with open("/proc/net/unix") as f:
        names = f.read()
    with Client(cluster, set_as_default=False) as c:
        for w in c.scheduler_info()["workers"]:
            assert "@shoal/data/" + w.removeprefix("tls://") not in names


def test_key_material_is_neither_on_a_command_line_nor_seen_by_tasks(cluster, certs):
    with open(certs.files["worker"][1], "rb") as f:
        key = f.read().split(b"\n")[1]
    for pid in cluster.worker_pids():
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            assert key not in f.read()
    with Client(cluster, set_as_default=False) as c:
        seen = c.run(lambda: sorted(k for k in os.environ if k.startswith("SHOAL_TLS")))
        assert all(v == [] for v in seen.values()), seen


def test_security_true_is_temporary_tls_as_in_dask():
    with Client(security=True, n_workers=1, threads_per_worker=1, dashboard_address=None) as c:
        assert c.cluster.scheduler_address.startswith("tls://")
        assert c.cluster.security.require_encryption
        assert c.submit(inc, 1).result() == 2
    sec = Security.temporary()
    assert sec.tls and sec.require_encryption and sec.token
    assert "BEGIN" not in repr(sec)


def test_tasks_that_make_clients_and_workers_on_threads_speak_tls_too():
    from shoal import get_client

    def spawn(x):
        return get_client().submit(inc, x).result()

    with Client(
        security=Security.temporary(), processes=False, n_workers=2, dashboard_address=None
    ) as c:
        assert c.cluster.scheduler_address.startswith("tls://")
        assert c.gather(c.map(spawn, range(4))) == [1, 2, 3, 4]
    with Client(security=True, n_workers=1, threads_per_worker=2, dashboard_address=None) as c:
        assert c.submit(spawn, 10).result() == 11


def test_mutual_tls_can_be_turned_off(certs):
    sec = certs.security(mutual=False)
    with LocalCluster(n_workers=1, dashboard_address=None, security=sec) as cluster:
        token = cluster.security.token
        ca_only = elsewhere(
            cluster.scheduler_address, f"Security(token={token!r}, tls_ca_file={certs.ca_file!r})"
        )
        assert ca_only.stdout.strip() == "result 2", ca_only.stderr
        # The token still decides.
        wrong = elsewhere(
            cluster.scheduler_address, f"Security(token='guess', tls_ca_file={certs.ca_file!r})"
        )
        assert "wrong token" in wrong.stderr


def test_bad_tls_options_are_refused_with_what_to_do(certs, tmp_path):
    cert, key = certs.files["client"]
    with pytest.raises(ValueError, match="go together"):
        Security(tls_ca_file=certs.ca_file, tls_client_cert=cert)
    with pytest.raises(ValueError, match="needs tls_ca_file"):
        Security(tls_client_cert=cert, tls_client_key=key)
    with pytest.raises(ValueError, match="require_encryption"):
        Security(require_encryption=True)
    with pytest.raises(NotImplementedError, match="tls_min_version"):
        Security(tls_min_version="TLSv1.2")
    with pytest.raises(TypeError, match="unexpected"):
        Security(tls_ca_fil="ca.pem")
    missing = Security(tls_ca_file=str(tmp_path / "nope.pem"))
    with pytest.raises(ValueError, match="could not read tls_ca_file"):
        Client("tls://127.0.0.1:1", security=missing, timeout=1)
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a certificate")
    with pytest.raises(ValueError, match="no certificate"):
        Client("tls://127.0.0.1:1", security=Security(tls_ca_file=str(garbage)), timeout=1)
    with pytest.raises(ValueError, match="not a tls:// address"):
        Client("tcp://127.0.0.1:1", security=Security.temporary(), timeout=1)
    with pytest.raises(ConnectionError, match="write it as tls://"):
        Client("tcp://127.0.0.1:1", security=certs.security(), timeout=1)
    # A local cluster without certificates for its workers cannot start.
    with pytest.raises(ValueError, match="tls_worker_cert"):
        LocalCluster(
            n_workers=1,
            dashboard_address=None,
            security=Security(
                tls_ca_file=certs.ca_file, tls_scheduler_cert=cert, tls_scheduler_key=key
            ),
        )


def start_scheduler(*args: str):
    proc = subprocess.Popen(
        [PY, "-m", "shoal", "scheduler", "--port", "0", "--no-dashboard", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=ENV,
    )
    line = proc.stdout.readline()
    assert line.startswith("Scheduler at: tls://"), line + proc.stderr.read()
    return proc, line.split(": ", 1)[1].strip()


@contextlib.contextmanager
def tls_commands(certs, token_file):
    """``shoal scheduler`` and one ``shoal worker`` speaking TLS, started
    from their command lines; yields the scheduler's address and a dict
    with the scheduler's ``"pid"``, and its stderr (``"log"``) once both
    have stopped.
    """
    cert, key = certs.files["scheduler"]
    proc, address = start_scheduler(
        "--token-file", str(token_file), "--tls-ca-file", certs.ca_file, "--tls-cert", cert,
        "--tls-key", key,
    )  # fmt: skip
    wcert, wkey = certs.files["worker"]
    tls = ["--tls-ca-file", certs.ca_file, "--tls-cert", wcert, "--tls-key", wkey]
    worker = subprocess.Popen(
        [PY, "-m", "shoal", "worker", address, "--token-file", str(token_file), *tls], env=ENV
    )
    out: dict[str, Any] = {"pid": proc.pid}
    try:
        yield address, out
    finally:
        worker.kill()
        worker.wait()
        proc.terminate()
        _, out["log"] = proc.communicate(timeout=30)


def test_the_commands_speak_tls_and_log_plain_callers(certs, tmp_path):
    token_file = tmp_path / "token"
    token_file.write_text("tls-secret\n")
    wcert, wkey = certs.files["worker"]
    with tls_commands(certs, token_file) as (address, out):
        ok = elsewhere(address, repr_security(certs, "tls-secret"))
        assert ok.stdout.strip() == "result 2", ok.stderr
        # A worker without TLS options, and one dialling tcp://.
        bare = subprocess.run(
            [PY, "-m", "shoal", "worker", address, "--token-file", str(token_file)],
            capture_output=True,
            text=True,
            env=ENV,
            timeout=60,
        )
        assert bare.returncode != 0 and "no TLS options were given" in bare.stderr
        plain = subprocess.run(
            [
                PY,
                "-m",
                "shoal",
                "worker",
                address.replace("tls://", "tcp://"),
                "--timeout",
                "5",
                "--token-file",
                str(token_file),
            ],
            capture_output=True,
            text=True,
            env=ENV,
            timeout=60,
        )
        assert plain.returncode != 0 and "speaks TLS" in plain.stderr, plain.stderr
        # A worker with a certificate but no CA, and a key without its
        # certificate, are told what is missing.
        half = subprocess.run(
            [PY, "-m", "shoal", "worker", address, "--tls-cert", wcert, "--tls-key", wkey],
            capture_output=True,
            text=True,
            env=ENV,
            timeout=60,
        )
        assert half.returncode != 0 and "need --tls-ca-file" in half.stderr
        # The scheduler serves on.
        again = elsewhere(address, repr_security(certs, "tls-secret"))
        assert again.stdout.strip() == "result 2", again.stderr
    err = out["log"]
    # One warning line for the plain caller, naming TLS, and no crash.
    assert "TLS handshake failed" in err, err
    assert "panicked" not in err


def test_random_bytes_at_a_tls_port_leave_it_serving_with_flat_memory(certs, tmp_path):
    from test_protocol_fuzz import SCHEDULER_CORPUS, blast, host_port, rss

    token_file = tmp_path / "token"
    token_file.write_text("fuzz-secret\n")
    with tls_commands(certs, token_file) as (address, out):
        ok = elsewhere(address, repr_security(certs, "fuzz-secret"))
        assert ok.stdout.strip() == "result 2", ok.stderr
        before = rss(out["pid"])
        # Plain frames, mutated frames and noise: none is a TLS handshake.
        blast(host_port(address), SCHEDULER_CORPUS, 20_000, seed=7)
        assert rss(out["pid"]) - before < 50 << 20
        again = elsewhere(address, repr_security(certs, "fuzz-secret"))
        assert again.stdout.strip() == "result 2", again.stderr
    err = out["log"]
    # Refusals are logged, throttled to about a line a second, and nothing
    # panicked.
    assert "TLS handshake failed" in err
    assert "panicked" not in err
    assert err.count("\n") < 200
