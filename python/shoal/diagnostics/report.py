"""Self-contained HTML reports of a task stream: one file, the dashboard's
own script and style inlined, no network needed to open it.
"""

from __future__ import annotations

import os
from typing import Any

from .. import _engine


def _page_event(record: dict[str, Any]) -> dict[str, Any]:
    (span,) = record["startstops"][:1]
    worker = record["worker"]
    return {
        "key": record["key"],
        "name": record.get("name") or _engine.key_prefix(record["key"]),
        "worker": _engine.strip_scheme(worker),
        "thread": record["thread"],
        "start": span["start"],
        "stop": span["stop"],
        "ok": record["status"] == "OK",
        "nbytes": record.get("nbytes", 0),
    }


def write_report(
    filename: str,
    records: list[dict[str, Any]],
    start: float,
    stop: float,
    title: str,
    code: str = "",
) -> str:
    """Write the task stream ``records`` (Dask's format) between ``start``
    and ``stop`` (seconds since the epoch), and the ``code`` that ran them,
    to ``filename``; returns its path.
    """
    import json  # only reports need it: kept off the start-up path

    events = [_page_event(r) for r in records]
    if events:
        start = min(start, min(e["start"] for e in events))
        stop = max(stop, max(e["stop"] for e in events))
    data = {"title": title, "start": start, "stop": stop, "events": events, "code": code}
    # "</" must not end the inline script early.
    payload = json.dumps(data).replace("</", "<\\/")
    page = _engine.dashboard_asset("report.html")
    style = _engine.dashboard_asset("style.css")
    script = _engine.dashboard_asset("dashboard.js")
    assert page is not None and style is not None and script is not None
    html = (
        page.replace("/*STYLE*/", style)
        .replace("/*DATA*/", payload)
        .replace("/*SCRIPT*/", script.replace("</", "<\\/"))
    )
    path = os.path.abspath(filename)
    with open(path, "w", encoding="utf-8") as f:
        f.write(html)
    return path
