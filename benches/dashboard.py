"""What an open dashboard costs: the 10,000-task ``map`` and the
million-task graph with no dashboard, with the dashboard and no page, and
with its status page open in a headless Chromium (which follows the live
updates, as a user's browser does).

    python benches/dashboard.py [--graph N]   # default graph: 1,000,000 tasks

Needs chromium and websocket-client (``benches/run.sh`` installs the
latter; Debian: ``apt-get install chromium``).
"""

from __future__ import annotations

import os
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
# The tests' driver for a real headless Chromium.
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "tests"))

from browser import Browser, find_chromium  # noqa: E402

from shoal import Client  # noqa: E402

N = 10_000
ROUNDS = 7


def noop(x):
    return x


def open_page(url: str) -> Browser:
    chromium = find_chromium()
    if chromium is None:
        sys.exit("benches/dashboard.py needs chromium (Debian: apt-get install chromium)")
    b = Browser(chromium)
    try:
        b.goto(url)
        b.wait_for("window.shoalDashboard.updates > 0")
    except BaseException:
        b.close()
        raise
    # A page someone keeps open: let the browser finish starting (its first
    # second takes a whole core), until it uses under a tenth of a core.
    for _ in range(40):
        before = b.cpu_seconds()
        time.sleep(0.5)
        if b.cpu_seconds() - before < 0.05:
            break
    return b


def map_rates() -> dict[str, float]:
    """Median tasks/s of the map in each setting, rounds interleaved."""
    rates: dict[str, list[float]] = {"no dashboard": [], "page closed": [], "page open": []}
    for _ in range(ROUNDS):
        for setting in rates:
            address = None if setting == "no dashboard" else ":0"
            with Client(n_workers=2, threads_per_worker=1, dashboard_address=address) as c:
                c.gather(c.map(noop, range(100)))
                page = open_page(c.dashboard_link) if setting == "page open" else None
                try:
                    t = time.perf_counter()
                    c.gather(c.map(noop, range(N)))
                    rates[setting].append(N / (time.perf_counter() - t))
                finally:
                    if page is not None:
                        page.close()
    return {k: statistics.median(v) for k, v in rates.items()}


def graph_runs(n: int) -> dict[str, dict]:
    import big_graph

    return {
        "page closed": big_graph.run(n),
        "page open": big_graph.run(n, page=open_page),
    }


def main() -> None:
    n = 1_000_000
    if "--graph" in sys.argv:
        n = int(sys.argv[sys.argv.index("--graph") + 1])
    rates = map_rates()
    base = rates["page closed"]
    print("| 10,000 no-op tasks, map + gather | tasks/s | vs page closed |")
    print("|---|---|---|")
    for k, v in rates.items():
        print(f"| {k} | {v:,.0f} | {100 * (v / base - 1):+.1f} % |")
    runs = graph_runs(n)
    closed = runs["page closed"]
    print(f"\n| graph of {closed['tasks']:,} tasks | total (s) | scheduler bytes/task |")
    print("|---|---|---|")
    for k, r in runs.items():
        slower = 100 * (r["total_s"] / closed["total_s"] - 1)
        per_task = r["scheduler_bytes_per_task"]
        grown = 100 * (per_task / closed["scheduler_bytes_per_task"] - 1)
        print(f"| {k} | {r['total_s']:.1f} ({slower:+.1f} %) | {per_task:.0f} ({grown:+.1f} %) |")


if __name__ == "__main__":
    main()
