"""The seeds' task functions, importable by workers of any framework.

The tutorial's scraper (requests + lxml into pandas), the blog's
mocked HTTP call, a pure-Python CPU-bound task and an ``async def`` task.
"""

from __future__ import annotations

import asyncio
import time


def fetch_mock(date):
    """The blog's stand-in for an HTTP call: 0.2 s of waiting."""
    time.sleep(0.2)
    return date


def str_to_num(x):
    mult = {"k": 1e3, "m": 1e6}
    if x and x[-1] in mult:
        return int(float(x[:-1]) * mult[x[-1]])
    return int(float(x))


def _text(el, selector):
    """The text of the first match of ``selector`` under ``el``, one line per
    text node (as requests-html's ``find(..., first=True).text``)."""
    (match,) = el.cssselect(selector)[:1]
    return "\n".join(t.strip() for t in match.itertext() if t.strip())


def scrape_tag(base, page_num, tag="dask", pagesize=50):
    """The tutorial's scraper: one listing page into a DataFrame. The
    tutorial parses with requests-html (lxml and CSS selectors); this uses
    lxml and cssselect directly, the same parser without the browser."""
    import lxml.html
    import pandas as pd
    import requests

    url = f"{base}/questions/tagged/{tag}?tab=Newest&page={page_num}&pagesize={pagesize}"
    r = requests.get(url)
    if r.status_code not in range(200, 299):
        return pd.DataFrame()
    rows = []
    for q in lxml.html.fromstring(r.text).cssselect(".s-post-summary"):
        stats = [str_to_num(s.split()[0]) for s in _text(q, ".s-post-summary--stats").split("\n")]
        rows.append(
            {
                "title": _text(q, ".s-post-summary--content-title"),
                "tags": _text(q, ".s-post-summary--meta-tags").split("\n"),
                "votes": stats[0],
                "answers": stats[1],
                "views": stats[2],
            }
        )
    return pd.DataFrame(rows)


def get_page(base, page_num):
    """One plain HTTP GET of a listing page: its size in bytes."""
    import requests

    url = f"{base}/questions/tagged/dask?tab=Newest&page={page_num}&pagesize=50"
    r = requests.get(url, timeout=30)
    r.raise_for_status()
    return len(r.content)


def spin(seconds):
    """Pure-Python work holding the GIL; returns (pid, start, end)."""
    import os

    start = time.time()
    x = 0
    while time.time() - start < seconds:
        x += 1
    return (os.getpid(), start, time.time())


async def async_wait(i, seconds=0.1):
    await asyncio.sleep(seconds)
    return i


def max_overlap_per_process(spans):
    """The most spans running at once in any one process."""
    by_pid = {}
    for pid, s, e in spans:
        by_pid.setdefault(pid, []).append((s, e))
    best = 0
    for spans_of in by_pid.values():
        events = sorted([(s, 1) for s, _ in spans_of] + [(e, -1) for _, e in spans_of])
        now = 0
        for _, d in events:
            now += d
            best = max(best, now)
    return best


def scrape_span(base, page_num):
    """``scrape_tag``, returning where and when it ran (for diagnosis)."""
    import os

    start = time.time()
    scrape_tag(base, page_num)
    return (os.getpid(), start, time.time())
