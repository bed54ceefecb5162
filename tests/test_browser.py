"""The dashboard and a performance report in a real headless browser."""

from __future__ import annotations

import threading
import time

import pytest
from browser import Browser, find_chromium
from dashboard_helpers import base_url, get_json

from shoal import Client, performance_report

CHROMIUM = find_chromium()
pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="no chromium here (Debian: apt-get install chromium)"
)


def nap(x):
    time.sleep(0.01)
    return x


def boom(x):
    raise ValueError(x)


@pytest.fixture
def browser():
    assert CHROMIUM is not None
    b = Browser(CHROMIUM)
    try:
        yield b
    finally:
        b.close()


def test_status_page_draws_the_stream_and_matches_the_scheduler(browser, tmp_path):
    with Client(n_workers=2, threads_per_worker=1, dashboard_address=":0") as client:
        base = base_url(client)
        futures = client.map(nap, range(400))
        browser.goto(base + "/status")
        # The page follows the map while it runs: bars appear.
        browser.wait_for("window.shoalDashboard.drawn > 0")
        client.gather(futures)
        bad = client.submit(boom, 1)
        with pytest.raises(ValueError):
            bad.result()
        expected = get_json(base + "/api/v1/status")
        while expected["completed"] < 400:
            expected = get_json(base + "/api/v1/status")
        browser.wait_for(
            "document.getElementById('n-completed').textContent === '400' && "
            "document.getElementById('n-erred').textContent === '1'"
        )
        rows = browser.evaluate(
            "Array.from(document.querySelectorAll('#progress .prefix')).map(r => r.dataset.prefix)"
        )
        assert set(rows) == {"nap", "boom"}
        assert browser.evaluate("document.getElementById('n-workers').textContent") == "2"
        threads = browser.evaluate("document.getElementById('n-threads').textContent")
        assert threads == "2"
        png = browser.screenshot(str(tmp_path / "status.png"))
        assert png.startswith(b"\x89PNG") and len(png) > 5000

        browser.goto(base + "/workers")
        browser.wait_for("document.querySelectorAll('#workers tbody tr[data-worker]').length === 2")
        shown = browser.evaluate(
            "Array.from(document.querySelectorAll('#workers tbody tr')).map(r => r.dataset.worker)"
        )
        assert {f"tcp://{a}" for a in shown} == set(client.cluster.workers)
        browser.screenshot(str(tmp_path / "workers.png"))
    assert browser.errors == []
    assert all(u.startswith(base) for u in browser.requests), browser.requests


def test_a_page_left_open_keeps_following_new_work(browser):
    with Client(n_workers=1, dashboard_address=":0") as client:
        base = base_url(client)
        browser.goto(base + "/status")
        browser.wait_for("window.shoalDashboard.updates > 0")
        for round_ in range(1, 4):
            client.gather(client.map(nap, range(20), pure=False))
            browser.wait_for(
                f"document.getElementById('n-completed').textContent === '{20 * round_}'"
            )
    assert browser.errors == []


def test_a_performance_report_opens_without_a_network(browser, tmp_path):
    target = tmp_path / "report.html"
    with Client(n_workers=2, threads_per_worker=1, dashboard_address=None) as client:
        with performance_report(filename=str(target)):
            client.gather(client.map(nap, range(30)))

            def late():
                client.submit(boom, 2).exception()

            t = threading.Thread(target=late)
            t.start()
            t.join()
    browser.goto(target.as_uri())
    browser.wait_for("window.shoalDashboard.drawn === 31")
    summary = browser.evaluate(
        "Array.from(document.querySelectorAll('#summary tbody tr'))"
        ".map(r => [r.dataset.prefix, r.children[1].textContent, r.children[2].textContent])"
    )
    assert sorted(summary) == [["boom", "1", "1"], ["nap", "30", "0"]]
    assert browser.evaluate("document.getElementById('r-tasks').textContent") == "31"
    assert "performance_report" in browser.evaluate("document.getElementById('code').textContent")
    browser.screenshot(str(tmp_path / "report.png"))
    assert browser.errors == []
    assert all(u.startswith("file://") for u in browser.requests), browser.requests
