"""progress, get_task_stream and performance_report against real clusters."""

from __future__ import annotations

import io
import json
import os
import pty
import re
import subprocess
import sys
import textwrap
import time

import pytest

from shoal import Client, delayed, get_task_stream, performance_report, progress

from conftest import run_async, until


def inc(x):
    return x + 1


def boom(x):
    raise ValueError(x)


def test_progress_off_a_terminal_writes_one_final_line(client):
    out = io.StringIO()
    futures = client.map(inc, range(40), pure=False)
    assert progress(futures, file=out) is None
    assert all(f.done() for f in futures)
    text = out.getvalue()
    assert "\r" not in text
    assert text.count("\n") == 1
    assert "100% Completed | 40/40 tasks" in text


def test_progress_counts_errors_and_persisted_delayed(client):
    out = io.StringIO()
    good = client.map(inc, range(5), pure=False)
    bad = client.submit(boom, 1)
    lazy = delayed(inc)(41).persist()
    progress([good, {"x": bad}], lazy, file=out)
    text = out.getvalue()
    assert "7/7 tasks" in text and "1 erred" in text
    assert lazy.compute() == 42


def test_progress_with_complete_false_counts_only_unfinished(client):
    done = client.map(inc, range(3), pure=False)
    client.gather(done)
    out = io.StringIO()
    progress(done, complete=False, file=out)
    assert "0/0 tasks" in out.getvalue()


def test_progress_refuses_what_it_cannot_follow(client):
    with pytest.raises(ValueError, match="persist it first"):
        progress(delayed(inc)(1), file=io.StringIO())
    with pytest.raises(NotImplementedError, match="group_by"):
        progress([], group_by="spans")
    with pytest.raises(ValueError, match="interval"):
        progress([], interval=0)
    with pytest.raises(ValueError, match="could not read"):
        progress([], interval="soon")


_PTY_SCRIPT = textwrap.dedent(
    """
    import time
    from shoal import Client, progress

    def nap(x):
        time.sleep(0.02)
        return x

    with Client(n_workers=2, threads_per_worker=1, dashboard_address=None) as c:
        progress(c.map(nap, range(60)), interval="20ms")
    print("DONE")
    """
)


def test_progress_on_a_terminal_redraws_one_line_in_place():
    pid, fd = pty.fork()
    if pid == 0:  # the child: its standard output is the terminal
        os.execv(sys.executable, [sys.executable, "-c", _PTY_SCRIPT])
    chunks = []
    deadline = time.monotonic() + 50
    try:
        while time.monotonic() < deadline:
            try:
                data = os.read(fd, 4096)
            except OSError:  # the child closed the terminal
                break
            if not data:
                break
            chunks.append(data)
    finally:
        _, status = os.waitpid(pid, 0)
    out = b"".join(chunks).decode()
    assert os.waitstatus_to_exitcode(status) == 0, out
    assert "DONE" in out
    lines = [line for line in out.replace("\r\n", "\n").split("\n") if "Completed" in line]
    assert len(lines) == 1, "one line, redrawn with carriage returns"
    frames = [f for f in lines[0].split("\r") if f]
    assert len(frames) >= 2, frames
    assert frames[-1].startswith("[" + "#" * 40 + "] | 100% Completed | 60/60 tasks")
    counts = [int(m.group(1)) for m in map(re.compile(r"\| (\d+)/60 tasks").search, frames) if m]
    assert counts == sorted(counts), "the count only grows"


def test_progress_in_a_notebook_kernel_is_a_live_widget():
    pytest.importorskip("ipykernel")
    pytest.importorskip("ipywidgets")
    jupyter_client = pytest.importorskip("jupyter_client")
    km, kc = jupyter_client.manager.start_new_kernel(kernel_name="python3")
    try:
        code = textwrap.dedent(
            """
            from shoal import Client, progress
            def inc(x):
                return x + 1
            c = Client(n_workers=1, dashboard_address=None)
            w = progress(c.map(inc, range(10)), interval="10ms")
            assert w.finished.wait(30)
            bar, count = w.children[1].children[1], w.children[1].children[2]
            print(type(w).__name__, count.value, bar.value)
            c.close()
            """
        )
        collect = _Collector()
        reply = kc.execute_interactive(code, timeout=50, output_hook=collect)
        assert reply["content"]["status"] == "ok", collect.text
        assert "VBox 10 / 10 10" in collect.text
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)


class _Collector:
    def __init__(self):
        self.text = ""

    def __call__(self, msg):
        if msg["msg_type"] == "stream":
            self.text += msg["content"]["text"]
        elif msg["msg_type"] == "error":
            self.text += "\n".join(msg["content"]["traceback"])


def test_get_task_stream_records_only_the_block(client):
    client.gather(client.map(inc, range(10), pure=False))
    with get_task_stream() as ts:
        client.gather(client.map(inc, range(100, 125), pure=False))
        bad = client.submit(boom, 2)
        with pytest.raises(ValueError):
            bad.result()
    assert len(ts.data) == 26
    workers = set(client.cluster.workers)
    for r in ts.data:
        assert set(r) >= {"key", "worker", "thread", "status", "nbytes", "startstops", "metadata"}
        (span,) = r["startstops"]
        assert span["action"] == "compute" and span["stop"] >= span["start"]
        assert r["worker"] in workers
    statuses = {r["key"]: r["status"] for r in ts.data}
    assert statuses[bad.key] == "error"
    assert sum(s == "OK" for s in statuses.values()) == 25


def test_client_get_task_stream_selects_by_time_and_count(client, tmp_path):
    t0 = time.time()
    client.gather(client.map(inc, range(30), pure=False))
    recent = client.get_task_stream(start=t0)
    assert len(recent) == 30
    assert len(client.get_task_stream(start=t0, count=7)) == 7
    assert client.get_task_stream(count=0) == []
    assert len(client.get_task_stream(start="1 hour")) >= 30
    assert client.get_task_stream(stop=t0 - 3600) == []
    data, path = client.get_task_stream(start=t0, plot="save", filename=str(tmp_path / "ts.html"))
    assert len(data) == 30 and os.path.getsize(path) > 1000
    with pytest.raises(NotImplementedError, match="plot='save'"):
        client.get_task_stream(plot=True)
    with pytest.raises(NotImplementedError, match="bokeh_resources"):
        client.get_task_stream(bokeh_resources="cdn")


def test_performance_report_writes_one_self_contained_file(client, tmp_path):
    target = tmp_path / "report.html"
    with performance_report(filename=str(target)) as report:
        client.gather(client.map(inc, range(40), pure=False))
    html = target.read_text()
    assert report.path == str(target)
    # Nothing to load: no external script, style sheet or image.
    assert re.search(r"<(script|link|img)[^>]*(src|href)=\"(?!data:)", html) is None
    m = re.search(r"window\.SHOAL_REPORT = (\{.*?\});</script>", html, re.S)
    assert m
    data = json.loads(m.group(1).replace("<\\/", "</"))
    assert len(data["events"]) == 40 and {e["name"] for e in data["events"]} == {"inc"}
    assert "performance_report(filename=str(target))" in data["code"], "the calling code"


def test_performance_report_refuses_what_it_cannot_do():
    with pytest.raises(NotImplementedError, match="storage_options"):
        performance_report(storage_options={"anon": True})
    with pytest.raises(ValueError, match="stacklevel"):
        performance_report(stacklevel=0)


def test_without_a_client_the_context_managers_say_so():
    code = textwrap.dedent(
        """
        from shoal import get_task_stream
        try:
            with get_task_stream():
                pass
        except ValueError as e:
            print("ERR", e)
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30)
    assert "ERR No clients found" in out.stdout, out.stderr


def fails():
    raise ValueError("no")


def test_story_tells_each_transition_with_its_cause_and_time(client):
    before = time.time()
    x = client.submit(sum, [1, 2], pure=False)
    assert x.result() == 3
    key = x.key
    del x  # released and forgotten: its story stays
    bad = client.submit(fails, pure=False)
    with pytest.raises(ValueError):
        bad.result()

    def steps(*keys):
        return [(k, start, finish, why) for _, k, start, finish, _, why, _ in client.story(*keys)]

    # Freeing is asynchronous: the story ends with the forgetting once the
    # scheduler has handled the release.
    told = until(
        lambda: (s := steps(key)) and s[-1][2] == "forgotten" and s,
        what="the key forgotten",
    )
    assert told == [
        (key, "released", "queued", "update-graph"),
        (key, "queued", "processing", "schedule"),
        (key, "processing", "memory", "task-finished"),
        (key, "memory", "released", "client-releases-keys"),
        (key, "released", "forgotten", "client-releases-keys"),
    ]
    entries = client.story(bad)  # a future names its key
    assert [e[0] for e in entries] == ["scheduler"] * len(entries)
    assert entries[-1][2:4] == ("processing", "erred")
    assert entries[-1][5] == "task-erred"
    stamps = [e[6] for e in client.story(key, bad.key)]
    assert stamps == sorted(stamps) and before - 1 <= stamps[0] <= stamps[-1] <= time.time() + 1
    assert client.story("never-submitted") == []
    with pytest.raises(ValueError, match="on_error"):
        client.story(key, on_error="maybe")


def test_story_on_an_asynchronous_client(client):
    async def main():
        async with Client(client.scheduler_address, asynchronous=True, set_as_default=False) as ac:
            x = ac.submit(sum, [1, 2], pure=False)
            await x
            return [step[3] for step in await ac.story(x)]

    assert run_async(main()) == ["queued", "processing", "memory"]
