"""Processes: start-up, shutdown, orphans, the CLI, scripts run as __main__."""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import textwrap

import pytest

from shoal import Client, wait

from conftest import pid_alive, until, wait_for_exit
from tasks import big_bytes, getpid, inc

PY = sys.executable
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}


def _spawn(code: str, **kw) -> subprocess.Popen:
    return subprocess.Popen(
        [PY, "-c", textwrap.dedent(code)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=ENV,
        **kw,
    )


def test_close_leaves_no_worker_process():
    c = Client(n_workers=2)
    pids = c.cluster.worker_pids()
    assert len(pids) == 2 and all(pid_alive(p) for p in pids)
    assert sorted(c.gather(c.map(getpid, range(20), pure=False)))[0] in pids
    c.close()
    assert wait_for_exit(pids, 5) == []


def test_sigkill_of_the_client_leaves_no_orphans():
    proc = _spawn(
        """
        import sys
        from shoal import Client
        c = Client(n_workers=2)
        print(" ".join(map(str, c.cluster.worker_pids())), flush=True)
        sys.stdin.read()
        """
    )
    pids = [int(p) for p in proc.stdout.readline().split()]
    assert len(pids) == 2 and all(pid_alive(p) for p in pids)
    proc.kill()
    proc.wait()
    assert wait_for_exit(pids, 2) == []


def _start_scheduler():
    proc = subprocess.Popen(
        [PY, "-m", "shoal", "scheduler", "--host", "127.0.0.1", "--port", "0"],
        stdout=subprocess.PIPE,
        text=True,
        env=ENV,
    )
    line = proc.stdout.readline()
    assert line.startswith("Scheduler at: tcp://"), line
    return proc, line.split(": ", 1)[1].strip()


def _reap(*procs: subprocess.Popen) -> None:
    """Kill whatever is still running and wait for every process."""
    for p in procs:
        if p.poll() is None:
            p.kill()
        p.wait()


def _start_worker(address, *args):
    return subprocess.Popen([PY, "-m", "shoal", "worker", address, *args], env=ENV)


def test_remote_cluster_from_the_command_line_and_sigkill_of_the_scheduler():
    sched, address = _start_scheduler()
    workers = [_start_worker(address, "--nthreads", "2", "--name", f"w{i}") for i in range(2)]
    try:
        with Client(address) as c:
            c.wait_for_workers(2, timeout=30)
            info = c.scheduler_info()["workers"]
            assert sorted(w["name"] for w in info.values()) == ["w0", "w1"]
            assert all(w["nthreads"] == 2 for w in info.values())
            assert c.gather(c.map(inc, range(10))) == list(range(1, 11))
            sched.kill()
            sched.wait()
            assert wait_for_exit([w.pid for w in workers], 2) == []
            # The client notices: a lost connection, not a result that
            # never comes (TimeoutError is an OSError too, but not this).
            with pytest.raises(ConnectionError):
                c.submit(inc, 1).result(timeout=30)
    finally:
        _reap(sched, *workers)


def test_shutdown_stops_a_remote_scheduler_and_its_workers():
    sched, address = _start_scheduler()
    worker = _start_worker(address)
    try:
        c = Client(address)
        c.wait_for_workers(1, timeout=30)
        assert c.submit(inc, 1).result() == 2
        c.shutdown()
        assert sched.wait(timeout=10) == 0
        assert worker.wait(timeout=10) == 0
    finally:
        _reap(sched, worker)


def test_a_worker_without_a_scheduler_gives_up_clearly():
    proc = subprocess.run(
        [PY, "-m", "shoal.worker", "tcp://127.0.0.1:1", "--timeout", "0.5"],
        capture_output=True,
        text=True,
        env=ENV,
        timeout=30,
    )
    assert proc.returncode == 1
    assert "could not reach the scheduler" in proc.stderr


def test_the_cli_explains_itself():
    out = subprocess.run([PY, "-m", "shoal", "--help"], capture_output=True, text=True, env=ENV)
    assert out.returncode == 0 and "scheduler" in out.stdout
    bad = subprocess.run([PY, "-m", "shoal", "fly"], capture_output=True, text=True, env=ENV)
    assert bad.returncode == 2 and "unknown command" in bad.stderr


def test_functions_and_classes_defined_in_main_run_on_workers(tmp_path):
    script = tmp_path / "analysis.py"
    script.write_text(
        textwrap.dedent(
            """
            from shoal import Client, as_completed

            class Point:
                def __init__(self, x):
                    self.x = x

            def square(p):
                return Point(p.x * p.x)

            if __name__ == "__main__":
                with Client(n_workers=2) as client:
                    pts = client.map(square, [Point(i) for i in range(5)])
                    print([p.x for p in client.gather(pts)])
                    print(client.gather(client.map(lambda v: v - 1, range(3))))
                    print(sorted(f.result().x for f in as_completed(pts)))
            """
        )
    )
    out = subprocess.run(
        [PY, str(script)], capture_output=True, text=True, env=ENV, timeout=60, cwd=tmp_path
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == ["[0, 1, 4, 9, 16]", "[-1, 0, 1]", "[0, 1, 4, 9, 16]"]


def test_nothing_is_left_in_the_temp_directory(tmp_path):
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    out = subprocess.run(
        [
            PY,
            "-c",
            "from shoal import Client\n"
            "with Client(n_workers=2) as c:\n"
            "    assert c.submit(sum, c.map(abs, range(-5, 5))).result() == 25\n",
        ],
        env={**ENV, "TMPDIR": str(tmp)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    assert list(tmp.iterdir()) == []


def test_ctrl_c_interrupts_a_wait_for_a_result(tmp_path):
    gate = tmp_path / "gate"
    proc = _spawn(
        f"""
        import signal, sys
        sys.path.insert(0, {os.path.dirname(__file__)!r})
        from tasks import wait_for_file
        from shoal import Client
        with Client(n_workers=1) as c:
            f = c.submit(wait_for_file, {str(gate)!r})
            try:
                print("waiting", flush=True)
                f.result()
            except KeyboardInterrupt:
                # Presses after the first one no longer matter.
                signal.signal(signal.SIGINT, signal.SIG_IGN)
                print("interrupted", flush=True)
        """
    )
    assert proc.stdout.readline().strip() == "waiting"
    # Python runs a signal's handler at the main thread's next bytecode
    # boundary, which may be inside a finaliser (a Future's __del__), where
    # the KeyboardInterrupt is reported and dropped; a person presses Ctrl-C
    # again, and so does this test (after 10 s of silence), until the wait
    # says it was interrupted.
    fd = proc.stdout.fileno()
    said = b""
    for _ in range(5):
        proc.send_signal(signal.SIGINT)
        if select.select([fd], [], [], 10.0)[0]:
            said += os.read(fd, 100)
            if b"\n" in said:
                break
    assert said.strip() == b"interrupted"
    gate.write_text("go")
    assert proc.wait(timeout=30) == 0


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_standalone_scheduler_stops_on_a_signal_and_takes_its_workers(sig):
    sched, address = _start_scheduler()
    worker = _start_worker(address)
    try:
        with Client(address) as c:
            c.wait_for_workers(1, timeout=30)
            sched.send_signal(sig)
            assert sched.wait(timeout=10) == 0
            assert worker.wait(timeout=10) == 0
    finally:
        _reap(sched, worker)


def test_a_killed_worker_is_not_news_on_the_terminal(tmp_path):
    script = """
        import os, signal
        from shoal import Client
        from tasks import inc
        with Client(n_workers=2) as c:
            info = c.scheduler_info()["workers"]
            address, w = next(iter(info.items()))
            os.kill(w["pid"], signal.SIGKILL)
            c.wait_for_workers(2, timeout=30, without=[address])
            assert c.gather(c.map(inc, range(100))) == list(range(1, 101))
        print("done")
        """
    quiet = subprocess.run(
        [PY, "-c", textwrap.dedent(script)], capture_output=True, text=True, env=ENV, timeout=60
    )
    assert quiet.stdout == "done\n", quiet.stderr
    assert quiet.stderr == ""
    # The same run with SHOAL_LOG=debug tells the story.
    loud = subprocess.run(
        [PY, "-c", textwrap.dedent(script)],
        capture_output=True,
        text=True,
        env={**ENV, "SHOAL_LOG": "debug"},
        timeout=60,
    )
    assert loud.stdout == "done\n", loud.stderr
    assert "lost" in loud.stderr


def test_the_command_lines_take_dasks_options(tmp_path):
    """HPC scripts can swap ``dask scheduler``/``dask worker`` for shoal's:
    --scheduler-file, --nworkers, --worker-port, --interface, --preload."""
    scheduler_file = tmp_path / "scheduler.json"
    marks = tmp_path / "marks"
    marks.mkdir()
    preload = tmp_path / "mark_worker.py"
    preload.write_text(
        "import os\n"
        "def dask_setup(worker):\n"
        f"    open(os.path.join({str(marks)!r}, worker.name), 'w').close()\n"
    )
    sched = subprocess.Popen(
        [
            PY,
            "-m",
            "shoal",
            "scheduler",
            "--port",
            "0",
            "--no-dashboard",
            "--scheduler-file",
            str(scheduler_file),
        ],
        stdout=subprocess.PIPE,
        text=True,
        env=ENV,
    )
    # started before the scheduler file exists: it waits for it
    workers = subprocess.Popen(
        [
            PY,
            "-m",
            "shoal",
            "worker",
            "--scheduler-file",
            str(scheduler_file),
            "--nworkers",
            "2",
            "--nthreads",
            "1",
            "--worker-port",
            "47100:47120",
            "--interface",
            "lo",
            "--preload",
            str(preload),
        ],
        env=ENV,
    )
    try:
        line = sched.stdout.readline()
        assert line.startswith("Scheduler at: tcp://"), line
        with Client(scheduler_file=str(scheduler_file)) as c:
            c.wait_for_workers(2, timeout=30)
            info = c.scheduler_info()["workers"]
            ports = sorted(int(a.rsplit(":", 1)[1]) for a in info)
            assert all(47100 <= p <= 47120 for p in ports) and len(set(ports)) == 2
            assert all(a.startswith("tcp://127.0.0.1:") for a in info)
            assert all(w["nthreads"] == 1 for w in info.values())
            names = sorted(w["name"] for w in info.values())
            until(lambda: sorted(os.listdir(marks)) == names, what="the preloads to run")
            pids = set(c.run(os.getpid).values())
            workers.send_signal(signal.SIGTERM)  # the supervisor takes its workers along
            assert workers.wait(timeout=20) == 0
            assert wait_for_exit(list(pids), 10) == []
        sched.send_signal(signal.SIGTERM)
        assert sched.wait(timeout=10) == 0
        assert not scheduler_file.exists()  # removed as it stopped
    finally:
        _reap(sched, workers)


def test_worker_command_line_refuses_bad_dask_options():
    for args, message in [
        (["tcp://127.0.0.1:1", "--nworkers", "0"], "--nworkers must be 1 or more"),
        (["tcp://127.0.0.1:1", "--worker-port", "x"], "--worker-port must be"),
        (["tcp://127.0.0.1:1", "--interface", "no-such-nic"], "no network interface"),
        ([], "--scheduler-file"),
    ]:
        out = subprocess.run(
            [PY, "-m", "shoal", "worker", *args], capture_output=True, text=True, env=ENV
        )
        assert out.returncode == 2 and message in out.stderr, (args, out.stderr)


def test_a_worker_with_a_lifetime_retires_and_its_results_stay(tmp_path):
    sched, address = _start_scheduler()
    lasting = _start_worker(address, "--name", "lasting")
    short = _start_worker(address, "--name", "short", "--lifetime", "3s")
    try:
        with Client(address) as c:
            c.wait_for_workers(2, timeout=30)
            by_name = {w["name"]: a for a, w in c.scheduler_info()["workers"].items()}
            # large enough to live on its worker only (not kept by the scheduler)
            held = c.submit(big_bytes, 1_000_000, workers=[by_name["short"]])
            wait(held)
            assert short.wait(timeout=30) == 0  # it left by itself, gracefully
            assert list(c.nthreads()) == [by_name["lasting"]]
            assert c.who_has([held])[held.key] == [by_name["lasting"]]  # moved first
            assert len(held.result()) == 1_000_000
    finally:
        _reap(sched, lasting, short)


def test_a_lifetime_needs_restart_under_a_supervisor():
    out = subprocess.run(
        [PY, "-m", "shoal", "worker", "tcp://127.0.0.1:1", "--nworkers", "2", "--lifetime", "1h"],
        capture_output=True,
        text=True,
        env=ENV,
    )
    assert out.returncode == 2 and "--lifetime-restart" in out.stderr
