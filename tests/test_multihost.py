"""A cluster across hosts, without other machines: the scheduler, two
workers and the client each in a network namespace of their own, joined by
a bridge, each with its own address. Run with the token, and with the token
and TLS: a map, a graph whose intermediates move between workers, a large
result the client fetches straight from its worker, and a worker killed in
the middle of a graph."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap

import pytest
import trustme

pytestmark = pytest.mark.timeout(180)

PY = sys.executable
TAG = f"{os.getpid() % 100000}"
SUBNET = "10.77.0"
#: Each host's namespace and address.
HOSTS = {"scheduler": 1, "w1": 2, "w2": 3, "client": 4, "remote": 5}
ENV = {k: v for k, v in os.environ.items() if not k.startswith("SHOAL_")}


def ns(host: str) -> str:
    return f"shoal-{TAG}-{host}"


def run(*argv: str) -> None:
    subprocess.run(argv, check=True, capture_output=True, timeout=30)


def in_ns(host: str, *argv: str) -> list[str]:
    return ["ip", "netns", "exec", ns(host), *argv]


@pytest.fixture(scope="module")
def hosts():
    """The namespaces and the bridge; removed afterwards."""
    if os.geteuid() != 0 or shutil.which("ip") is None:
        pytest.skip("network namespaces need root and iproute2's `ip`")
    bridge = f"shbr{TAG}"
    made: list[str] = []
    try:
        run("ip", "link", "add", bridge, "type", "bridge")
    except (subprocess.CalledProcessError, OSError) as e:
        pytest.skip(f"cannot make a bridge here: {getattr(e, 'stderr', e)!r}")
    try:
        run("ip", "link", "set", bridge, "up")
        for host, n in HOSTS.items():
            run("ip", "netns", "add", ns(host))
            made.append(ns(host))
            veth = f"shv{TAG}{n}"
            run(
                "ip", "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", ns(host)
            )
            run("ip", "link", "set", veth, "master", bridge)
            run("ip", "link", "set", veth, "up")
            run(*in_ns(host, "ip", "addr", "add", f"{SUBNET}.{n}/24", "dev", "eth0"))
            run(*in_ns(host, "ip", "link", "set", "eth0", "up"))
            run(*in_ns(host, "ip", "link", "set", "lo", "up"))
        # The remote client's host reaches the scheduler and nothing else
        # (as behind a NAT or through a tunnel to the scheduler's port).
        for worker in ("w1", "w2"):
            run(*in_ns("remote", "ip", "route", "add", "prohibit", f"{SUBNET}.{HOSTS[worker]}/32"))
        yield {host: f"{SUBNET}.{n}" for host, n in HOSTS.items()}
    finally:
        for name in made:
            subprocess.run(["ip", "netns", "del", name], capture_output=True)
        subprocess.run(["ip", "link", "del", bridge], capture_output=True)


@pytest.fixture(scope="module", params=["token", "tls"])
def cluster(request, hosts, tmp_path_factory):
    """``shoal scheduler`` and two ``shoal worker``s on their own hosts;
    yields what a client needs: the address, and the client's options."""
    tmp = tmp_path_factory.mktemp(f"multihost-{request.param}")
    token = tmp / "token"
    token.write_text("multi-host-secret\n")
    tls: dict[str, list[str]] = {}
    client_tls: dict[str, str] = {}
    if request.param == "tls":
        ca = trustme.CA()
        ca.cert_pem.write_to_path(str(tmp / "ca.pem"))
        for host, address in hosts.items():
            cert = ca.issue_cert(address)
            cert.cert_chain_pems[0].write_to_path(str(tmp / f"{host}.pem"))
            cert.private_key_pem.write_to_path(str(tmp / f"{host}.key"))
            tls[host] = [
                "--tls-ca-file", str(tmp / "ca.pem"),
                "--tls-cert", str(tmp / f"{host}.pem"),
                "--tls-key", str(tmp / f"{host}.key"),
            ]  # fmt: skip
        client_tls = {
            "tls_ca_file": str(tmp / "ca.pem"),
            "tls_client_cert": str(tmp / "client.pem"),
            "tls_client_key": str(tmp / "client.key"),
        }
    procs = []
    try:
        sched = subprocess.Popen(
            in_ns(
                "scheduler", PY, "-m", "shoal", "scheduler", "--host", hosts["scheduler"],
                "--port", "8786", "--no-dashboard", "--token-file", str(token),
                *tls.get("scheduler", []),
            ),
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV,
        )  # fmt: skip
        procs.append(sched)
        line = sched.stdout.readline()
        scheme = "tls://" if tls else "tcp://"
        address = f"{scheme}{hosts['scheduler']}:8786"
        assert line.strip() == f"Scheduler at: {address}", line + sched.stderr.read()
        for w in ("w1", "w2"):
            procs.append(
                subprocess.Popen(
                    in_ns(
                        w,
                        PY,
                        "-m",
                        "shoal",
                        "worker",
                        address,
                        "--name",
                        w,
                        "--token-file",
                        str(token),
                        *tls.get(w, []),
                    ),
                    env=ENV,
                )  # fmt: skip
            )
        yield {"address": address, "token": str(token), "tls": client_tls, "hosts": hosts}
    finally:
        for p in procs:
            p.kill()
            p.wait()


def from_client_host(cluster, body: str, host: str = "client", options: str = "") -> dict:
    """Run ``body`` in a client on ``host``, connected as ``c`` (with the
    client's ``options`` too); returns the JSON it prints."""
    code = textwrap.dedent(
        """
        import json, os, signal, time
        from shoal import Client, Security, delayed, wait

        def block(i, n=1_000_000):
            return bytes([i % 256]) * n

        def total(*blocks):
            return sum(len(b) for b in blocks)

        def slow(x):
            time.sleep(0.05)
            return x + 1

        sec = Security(token=open({token!r}).read().strip(), **{tls!r})
        with Client({address!r}, security=sec, timeout=20{options}) as c:
            c.wait_for_workers(2, timeout=60)
            workers = {{w["name"]: a for a, w in c.scheduler_info()["workers"].items()}}
            out = {{"workers": workers}}
        {body}
            print(json.dumps(out))
        """
    ).format(
        token=cluster["token"],
        tls=cluster["tls"],
        address=cluster["address"],
        options=options,
        body=textwrap.indent(textwrap.dedent(body), " " * 4),
    )
    proc = subprocess.run(
        in_ns(host, PY, "-c", code), capture_output=True, text=True, env=ENV, timeout=150
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_workers_advertise_their_own_hosts(cluster):
    out = from_client_host(cluster, "")
    hosts = cluster["hosts"]
    scheme = cluster["address"].split("://")[0]
    assert out["workers"]["w1"].startswith(f"{scheme}://{hosts['w1']}:")
    assert out["workers"]["w2"].startswith(f"{scheme}://{hosts['w2']}:")


def test_a_map_and_a_graph_whose_intermediates_move_between_hosts(cluster):
    out = from_client_host(
        cluster,
        """
        out["map"] = c.gather(c.map(slow, range(100))) == list(range(1, 101))
        w1, w2 = workers["w1"], workers["w2"]
        a = c.submit(block, 1, workers=[w1])
        b = c.submit(block, 2, workers=[w2])
        # Needs both: one of them crosses from one host to the other.
        both = c.submit(total, a, b, workers=[w1])
        out["both"] = both.result()
        out["b_on"] = sorted(c.who_has(b)[b.key])
        parts = [delayed(block)(i) for i in range(8)]
        out["graph"] = delayed(total)(*parts).compute(scheduler=c)
        """,
    )
    assert out["map"]
    assert out["both"] == 2_000_000
    # b was made on w2 and copied to w1 for `total`.
    assert out["b_on"] == sorted([out["workers"]["w1"], out["workers"]["w2"]])
    assert out["graph"] == 8_000_000


def test_a_large_result_comes_straight_from_its_worker(cluster):
    out = from_client_host(
        cluster,
        """
        big = c.submit(block, 7, 5_000_000, workers=[workers["w2"]])
        wait(big)
        out["holders"] = c.who_has(big)[big.key]
        value = big.result()
        out["ok"] = value == bytes([7]) * 5_000_000
        """,
    )
    assert out["holders"] == [out["workers"]["w2"]]
    assert out["ok"]


def test_a_client_that_reaches_only_the_scheduler_gets_everything_through_it(cluster):
    """``direct_to_workers=False``: results, scatter and ``Client.run``
    through the scheduler, from a host whose routes to the workers are
    prohibited; and ``gather(direct=False)`` on a default client."""
    body = """
        from shoal import Client as C
        big = c.submit(block, 7, 3_000_000, workers=[workers["w2"]])
        out["big"] = big.result() == bytes([7]) * 3_000_000
        out["gathered"] = c.gather([c.submit(block, i, 200_000, pure=False) for i in range(4)])
        out["gathered"] = [len(b) for b in out["gathered"]]
        f = c.scatter(bytes(2_000_000), workers=[workers["w1"]])
        out["scattered"] = c.submit(total, f, workers=[workers["w2"]], pure=False).result()
        out["ran"] = sorted(c.run(os.getpid))
        """
    out = from_client_host(cluster, body, host="remote", options=", direct_to_workers=False")
    assert out["big"]
    assert out["gathered"] == [200_000] * 4
    assert out["scattered"] == 2_000_000
    assert out["ran"] == sorted(out["workers"].values())
    one = """
        big = c.submit(block, 3, 1_000_000, workers=[workers["w1"]])
        wait(big)
        out["direct_false"] = len(c.gather(big, direct=False))
        """
    assert from_client_host(cluster, one, host="remote")["direct_false"] == 1_000_000


def test_shuffles_persist_and_scatter_across_hosts(cluster):
    out = from_client_host(
        cluster,
        """
        import numpy as np, pandas as pd, dask.dataframe as dd
        from shoal import futures_of

        def part(i):
            rng = np.random.default_rng(i)
            return pd.DataFrame({"x": rng.random(2000), "k": rng.integers(0, 300, 2000)})

        df = dd.from_map(part, range(6))
        pdf = pd.concat([part(i) for i in range(6)])
        got = df.groupby(df.k).apply(len, meta=(None, "int64")).compute(scheduler=c)
        want = pdf.groupby(pdf.k).apply(len)
        out["groupby"] = got.sort_index().to_dict() == want.sort_index().to_dict()
        s = df.set_index("x").compute(scheduler=c)
        out["set_index"] = bool(s.index.is_monotonic_increasing) and len(s) == len(pdf)
        p = c.persist(df)
        wait(p)
        held = c.who_has(futures_of(p))
        out["persisted_on"] = sorted({h for hs in held.values() for h in hs})
        out["persisted_sum"] = float(p.x.sum().compute(scheduler=c)) == float(pdf.x.sum())
        arr = np.arange(1_000_000, dtype="float64")
        f = c.scatter(arr, workers=[workers["w2"]])
        total = c.submit(lambda v: float(v.sum()), f, workers=[workers["w1"]], pure=False)
        out["scatter"] = total.result() == float(arr.sum())
        """,
    )
    assert out["groupby"] and out["set_index"] and out["persisted_sum"] and out["scatter"]
    assert out["persisted_on"] == sorted(out["workers"].values())


def test_a_worker_killed_mid_graph_loses_no_result(cluster):
    # Last in the module: it leaves one worker.
    out = from_client_host(
        cluster,
        """
        pid = c.scheduler_info()["workers"][workers["w2"]]["pid"]
        firsts, chains = [], []
        for i in range(8):
            x = c.submit(slow, i * 100, workers=[workers["w1" if i % 2 else "w2"]])
            firsts.append(x)
            for _ in range(10):
                x = c.submit(slow, x)
            chains.append(x)
        # Once the first links have run, half of them on w2, kill w2.
        wait(firsts)
        out["on_w2"] = sum(workers["w2"] in c.who_has(f)[f.key] for f in firsts)
        os.kill(pid, signal.SIGKILL)
        out["results"] = c.gather(chains)
        """,
    )
    assert out["on_w2"] == 4
    assert out["results"] == [i * 100 + 11 for i in range(8)]
