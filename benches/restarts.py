"""Workers coming back: how long until a replaced worker serves again,
shoal and dask.distributed side by side, each on a fresh
``Client(n_workers=2)`` in a script that imported pandas (so shoal's
workers are forks of a template that imported it too).

* ``restart()``: ``client.restart()``, then one task (the call returns
  once both workers are back);
* ``killed worker``: a worker killed with SIGKILL (as a worker over its
  memory's terminate fraction ends), until a task runs on its
  replacement: its cluster starts a new process in its place;
* ``first pandas task after restart()``: a task that builds a pandas
  frame on a restarted worker.

Each framework runs ``--rounds`` times (3 by default), in turn, a fresh
cluster each time; the table shows each step's median and range.

Usage: ``python benches/restarts.py [shoal] [dask] [--rounds 3]``
"""

from __future__ import annotations

import os
import signal
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from child import report, steps_main  # noqa: E402

STEPS = ["restart()", "first pandas task after restart()", "killed worker"]


def frame_len(n: int) -> int:
    import pandas as pd

    return len(pd.DataFrame({"x": range(n)}))


def where() -> int:
    return os.getpid()


def run(framework: str) -> dict:
    import pandas  # noqa: F401 (the user's script has it)

    if framework == "shoal":
        from shoal import Client
    else:
        import logging

        from distributed import Client

        logging.getLogger("distributed").setLevel(logging.ERROR)

    out: dict[str, float] = {}
    with Client(n_workers=2, threads_per_worker=1) as client:
        client.gather(client.map(frame_len, [10, 20], pure=False))
        t = time.perf_counter()
        client.restart()
        assert client.submit(where, pure=False).result() > 0
        out["restart()"] = time.perf_counter() - t
        t = time.perf_counter()
        assert client.submit(frame_len, 5, pure=False).result() == 5
        out["first pandas task after restart()"] = time.perf_counter() - t
        report(out)

        pids = client.run(where)
        victim_address, victim = sorted(pids.items())[0]
        t = time.perf_counter()
        os.kill(victim, signal.SIGKILL)
        deadline = time.monotonic() + 60
        while True:
            info = client.scheduler_info()["workers"]
            fresh = [a for a in info if a not in pids]
            if fresh:
                f = client.submit(where, pure=False, workers=fresh[:1])
                if f.result() not in pids.values():
                    break
            if time.monotonic() > deadline:
                raise TimeoutError("no worker replaced the killed one")
            time.sleep(0.005)
        out["killed worker"] = time.perf_counter() - t
    return out


if __name__ == "__main__":
    steps_main(__file__, "worker restarts (s)", STEPS, run)
