"""The dashboard served by a real scheduler: its pages, JSON API, update
stream and Prometheus metrics, and where it listens.
"""

from __future__ import annotations

import re
import socket
import subprocess
import sys
import urllib.request

import pytest
from dashboard_helpers import base_url, first_update, get, get_json, updates

from shoal import Client, LocalCluster


def inc(x):
    return x + 1


def boom(x):
    raise ValueError(x)


@pytest.fixture(scope="module")
def dash():
    with Client(n_workers=2, threads_per_worker=1, dashboard_address=":0") as c:
        yield c, base_url(c)


def test_pages_script_and_style_are_served(dash):
    _, base = dash
    for path, kind, marker in [
        ("/status", "text/html", 'data-page="status"'),
        ("/workers", "text/html", 'data-page="workers"'),
        ("/static/dashboard.js", "text/javascript", "EventSource"),
        ("/static/style.css", "text/css", "--memory"),
        ("/health", "text/plain", "ok"),
    ]:
        status, got_kind, body = get(base + path)
        assert status == 200, path
        assert got_kind.startswith(kind), (path, got_kind)
        assert marker in body, path
    # Nothing is fetched from elsewhere: no CDN, no absolute URL.
    for path in ("/status", "/workers", "/static/dashboard.js", "/static/style.css"):
        body = get(base + path)[2]
        assert "http://" not in body and "https://" not in body, path


def test_root_redirects_to_status_and_unknown_paths_are_404(dash):
    _, base = dash
    with urllib.request.urlopen(base + "/", timeout=10) as r:
        assert r.geturl().endswith("/status")
    status, _, body = get(base + "/no-such-page")
    assert status == 404 and "no such page" in body


def test_status_counts_what_ran(dash):
    client, base = dash
    before = get_json(base + "/api/v1/status")
    done_before = next((p["completed"] for p in before["prefixes"] if p["name"] == "inc"), 0)
    futures = client.map(inc, range(300))
    assert client.gather(futures) == list(range(1, 301))
    u = first_update(
        base,
        lambda u: any(
            p["name"] == "inc" and p["completed"] == done_before + 300
            for p in u["status"]["prefixes"]
        ),
    )
    s = u["status"]
    inc_row = next(p for p in s["prefixes"] if p["name"] == "inc")
    # The futures are still held: their results are in memory.
    assert inc_row["states"]["memory"] == 300
    assert inc_row["states"]["processing"] == 0
    assert s["tasks"]["memory"] >= 300
    assert len(s["workers"]) == 2
    assert s["time"] >= s["started"]
    del futures


def test_errors_are_counted_and_marked(dash):
    client, base = dash
    f = client.submit(boom, 1)
    with pytest.raises(ValueError):
        f.result()
    u = first_update(
        base,
        lambda u: any(
            p["name"] == "boom" and p["states"]["erred"] == 1 for p in u["status"]["prefixes"]
        ),
    )
    assert u["status"]["failed"] >= 1
    events = get_json(base + "/api/v1/task-stream?since=0")["events"]
    mine = [e for e in events if e["name"] == "boom"]
    assert len(mine) == 1 and mine[0]["ok"] is False


def test_workers_report_their_health(dash):
    client, base = dash
    pids = set(client.cluster.worker_pids())
    # Wait for an update that shows every worker with its first health
    # report (`all` over no workers at all would be true at once).
    u = first_update(
        base,
        lambda u: (
            {w["pid"] for w in u["status"]["workers"]} == pids
            and all(w["metrics"]["rss"] > 0 for w in u["status"]["workers"])
        ),
    )
    workers = u["status"]["workers"]
    for w in workers:
        assert w["nthreads"] == 1
        assert w["memory_limit"] > 0
        # A worker process holds at least its interpreter.
        assert w["metrics"]["rss"] > 10 << 20
    direct = get_json(base + "/api/v1/workers")
    assert {w["address"] for w in direct} == {w["address"] for w in workers}


def test_the_task_stream_has_timings_and_is_bounded_per_call(dash):
    client, base = dash
    futures = client.map(inc, range(1500), pure=False)
    client.gather(futures)
    u = first_update(base, lambda u: u["status"]["stream_end"] >= 1500)
    end = u["status"]["stream_end"]
    page = get_json(f"{base}/api/v1/task-stream?since=0")
    assert len(page["events"]) <= 250, "a page never gets more than 250 at once"
    assert page["next"] == end
    recent = get_json(f"{base}/api/v1/task-stream?since={end - 5}")["events"]
    assert [e["seq"] for e in recent] == list(range(end - 5, end))
    addresses = {w["address"] for w in u["status"]["workers"]}
    for e in recent:
        assert e["name"] == "inc"
        assert e["worker"] in addresses
        assert e["stop"] >= e["start"] > 1e9
        assert e["thread"] > 0


def test_updates_stream_carries_new_events_only_once(dash):
    client, base = dash
    stream = updates(base)
    first = next(stream)
    client.gather(client.map(inc, range(50), pure=False))
    seen = []
    for u in stream:
        seen.extend(u["events"])
        if u["next"] >= first["next"] + 50:
            break
    seqs = [e["seq"] for e in seen]
    assert len(seqs) == len(set(seqs)), "no event is sent twice"
    assert set(range(first["next"], first["next"] + 50)) <= set(seqs)


def test_a_page_behind_gets_every_event_the_board_still_has(dash):
    client, base = dash
    client.gather(client.map(inc, range(400), pure=False))
    start = first_update(base, lambda u: True)["status"]["stream_end"]
    client.gather(client.map(inc, range(400), pure=False))
    end = first_update(base, lambda u: u["status"]["stream_end"] >= start + 400)["status"][
        "stream_end"
    ]
    # More than one update's worth (250) is waiting: it comes in several.
    since = end - 300
    seen = []
    for u in updates(base, since=since):
        seen.extend(e["seq"] for e in u["events"])
        if u["next"] >= end:
            break
    assert len(seen) == len(set(seen))
    assert set(range(since, end)) <= set(seen)


def test_metrics_are_prometheus_text(dash):
    client, base = dash
    client.gather(client.map(inc, range(20), pure=False))
    first_update(base, lambda u: u["status"]["completed"] >= 20)
    status, kind, text = get(base + "/metrics")
    assert status == 200 and kind.startswith("text/plain; version=0.0.4")
    declared = set(re.findall(r"^# TYPE (\S+) (?:gauge|counter)$", text, re.M))
    samples = [line for line in text.splitlines() if line and not line.startswith("#")]
    assert samples
    for line in samples:
        m = re.match(r'^([a-z_]+)(\{[a-z_]+="[^"]*"(,[a-z_]+="[^"]*")*\})? (\S+)$', line)
        assert m, line
        assert m.group(1) in declared, line
        float(m.group(4))
    assert "shoal_workers 2" in samples
    completed = re.search(r'^shoal_tasks_completed_total\{prefix="inc"\} (\d+)$', text, re.M)
    assert completed and int(completed.group(1)) >= 20
    assert re.search(r'^shoal_worker_memory_rss_bytes\{worker="[^"]+"\} \d', text, re.M)


def test_links_in_repr_and_html(dash):
    client, base = dash
    assert client.dashboard_link == base + "/status"
    assert client.cluster.dashboard_link == client.dashboard_link
    assert f"dashboard='{client.dashboard_link}'" in repr(client)
    assert client.dashboard_link in repr(client.cluster)
    html = client._repr_html_()
    assert f'href="{client.dashboard_link}"' in html
    # A second client, connected by address, learns the link from the scheduler.
    with Client(client.scheduler_address, set_as_default=False) as other:
        assert other.dashboard_link == client.dashboard_link


def status_with_host(base: str, host: str) -> int:
    """The HTTP status of ``GET /status`` sent with this ``Host`` header."""
    import http.client
    from urllib.parse import urlparse

    u = urlparse(base)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=10)
    try:
        conn.request("GET", "/status", headers={"Host": host})
        response = conn.getresponse()
        response.read()
        return response.status
    finally:
        conn.close()


def test_the_dashboard_answers_only_to_this_machines_names(dash):
    # DNS rebinding: a page from another site reaching the dashboard under
    # its own name is refused.
    from urllib.parse import urlparse

    _, base = dash
    port = urlparse(base).port
    assert status_with_host(base, f"127.0.0.1:{port}") == 200
    assert status_with_host(base, f"localhost:{port}") == 200
    assert status_with_host(base, f"{socket.gethostname()}:{port}") == 200
    assert status_with_host(base, f"rebound.example:{port}") == 403


def test_more_dashboard_names_come_from_the_environment(monkeypatch):
    monkeypatch.setenv("SHOAL_DASHBOARD_HOSTS", "dash.example")
    with Client(n_workers=1, dashboard_address=":0", set_as_default=False) as c:
        base = base_url(c)
        assert status_with_host(base, "dash.example") == 200
        assert status_with_host(base, "rebound.example") == 403


def test_no_dashboard_when_turned_off():
    for off in (None, False):
        with LocalCluster(n_workers=1, dashboard_address=off) as cluster:
            assert cluster.dashboard_link is None
            with Client(cluster, set_as_default=False) as c:
                assert c.dashboard_link is None
                assert "dashboard" not in repr(c)


def test_a_taken_port_moves_to_the_next_free_one():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        with LocalCluster(n_workers=0, dashboard_address=f"127.0.0.1:{port}") as cluster:
            link = cluster.dashboard_link
            assert link is not None
            got = int(link.rsplit(":", 1)[1].split("/")[0])
            assert got != port
            assert get(link)[0] == 200
        with LocalCluster(n_workers=0, dashboard_address=port) as cluster:
            assert cluster.dashboard_link != f"http://127.0.0.1:{port}/status"


def test_bad_dashboard_addresses_are_refused():
    with pytest.raises(ValueError, match="port must be a number"):
        LocalCluster(n_workers=0, dashboard_address=":http")
    with pytest.raises(TypeError, match="dashboard_address"):
        LocalCluster(n_workers=0, dashboard_address=1.5)


def test_the_scheduler_command_prints_and_serves_its_dashboard():
    cmd = [sys.executable, "-m", "shoal.cli", "scheduler", "--host", "127.0.0.1", "--port", "0"]
    proc = subprocess.Popen([*cmd, "--dashboard-address", ":0"], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()
        second = proc.stdout.readline()
        assert first.startswith("Scheduler at: tcp://127.0.0.1:")
        m = re.match(r"Dashboard at: (http://127\.0\.0\.1:\d+)/status$", second.strip())
        assert m, second
        assert get_json(m.group(1) + "/api/v1/status")["workers"] == []
    finally:
        proc.terminate()
        proc.wait(10)
    proc = subprocess.Popen([*cmd, "--no-dashboard"], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().startswith("Scheduler at:")
    finally:
        proc.terminate()
        out, _ = proc.communicate(timeout=10)
    assert "Dashboard" not in out


def open_update_stream(base: str) -> tuple[socket.socket, bytes]:
    """A page's live-update request on a raw socket; returns the socket
    (kept open: the stream goes on) and the response's status line."""
    host, port = base.split("://", 1)[1].rsplit(":", 1)
    s = socket.create_connection((host, int(port)), timeout=10)
    s.sendall(f"GET /api/v1/updates HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
    head = b""
    while b"\r\n" not in head:
        chunk = s.recv(4096)
        if not chunk:
            break
        head += chunk
    return s, head.split(b"\r\n", 1)[0]


def test_live_update_streams_are_bounded():
    with Client(n_workers=1, threads_per_worker=1, dashboard_address=":0") as c:
        base = base_url(c)
        streams = []
        try:
            for _ in range(64):
                s, status = open_update_stream(base)
                assert b" 200 " in status, status
                streams.append(s)
            s, status = open_update_stream(base)
            s.close()
            assert b" 503 " in status, status
            # One page closes: another may follow.
            streams.pop().close()
            for _attempt in range(100):
                s, status = open_update_stream(base)
                streams.append(s)
                if b" 200 " in status:
                    break
                # The closed stream is noticed at its next publication.
                c.submit(inc, len(streams), pure=False).result()
            assert b" 200 " in status, status
            # The scheduler serves throughout.
            assert c.submit(inc, 1).result() == 2
        finally:
            for s in streams:
                s.close()


def test_silent_dashboard_connections_are_bounded_and_closed_when_idle():
    with Client(n_workers=1, threads_per_worker=1, dashboard_address=":0") as c:
        base = base_url(c)
        host, port = base.split("://", 1)[1].rsplit(":", 1)
        held = [socket.create_connection((host, int(port)), timeout=60) for _ in range(300)]
        try:
            # Past 256 open connections the dashboard closes new ones at once,
            # and the scheduler serves on.
            assert held[-1].recv(1) == b""
            assert c.submit(inc, 1).result() == 2
            # The silent ones are closed once idle (30 s); then pages load.
            for s in held[:256]:
                assert s.recv(1) == b""
            assert get(base + "/health")[0] == 200
        finally:
            for s in held:
                s.close()
