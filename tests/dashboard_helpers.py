"""Reading a real scheduler's dashboard over HTTP, for the tests."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any, Callable


def base_url(client: Any) -> str:
    link = client.dashboard_link
    assert link is not None and link.endswith("/status")
    return link[: -len("/status")]


def get(url: str) -> tuple[int, str, str]:
    """Status, content type and body of a GET."""
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            return r.status, r.headers.get("Content-Type", ""), r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.headers.get("Content-Type", ""), e.read().decode()


def get_json(url: str) -> Any:
    status, kind, body = get(url)
    assert status == 200, (url, status, body)
    assert kind.startswith("application/json"), kind
    return json.loads(body)


def updates(base: str, since: int = 0, timeout: float = 20.0) -> Iterator[dict[str, Any]]:
    """The dashboard's server-sent updates, parsed, as they arrive."""
    with urllib.request.urlopen(f"{base}/api/v1/updates?since={since}", timeout=timeout) as r:
        assert r.headers.get("Content-Type", "").startswith("text/event-stream")
        event, data = None, []
        for raw in r:
            line = raw.decode().rstrip("\n")
            if line.startswith("event:"):
                event = line[len("event:") :].strip()
            elif line.startswith("data:"):
                data.append(line[len("data:") :].strip())
            elif line == "" and data:
                if event == "update":
                    yield json.loads("\n".join(data))
                event, data = None, []


def first_update(
    base: str, predicate: Callable[[dict[str, Any]], bool], timeout: float = 20.0
) -> dict[str, Any]:
    """The first update (from the stream) for which ``predicate`` holds."""
    deadline = time.monotonic() + timeout
    for u in updates(base, timeout=timeout):
        if predicate(u):
            return u
        assert time.monotonic() < deadline, "the dashboard never showed it"
    raise AssertionError("the update stream ended")
