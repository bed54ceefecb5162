"""Calling a quota-limited API from many tasks, politely.

The API (a local stand-in) allows 20 requests per second and answers
HTTP 429 when called faster. A cluster-wide limit keeps every worker
together under the quota, and retries back off on the odd 429 instead of
hammering the API; a ``ValueError`` (a bad answer) is not retried at all.
Run: ``python examples/rate_limited.py``.
"""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request

from shoal import Client

from fake_web import QuietHandler, start

QUOTA = 20  # requests per second


class TooManyRequests(Exception):
    """The API said 429."""


class _Api(QuietHandler):
    calls: list[float] = []
    lock = threading.Lock()

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        now = time.monotonic()
        with self.lock:
            recent = [t for t in self.calls if now - t < 1.0]
            allowed = len(recent) < QUOTA
            if allowed:
                recent.append(now)
            type(self).calls = recent
        body = json.dumps({"item": self.path.rsplit("/", 1)[-1]}).encode()
        self.reply(200 if allowed else 429, body, "application/json")


def fetch(base: str, item: int) -> dict:
    try:
        with urllib.request.urlopen(f"{base}/items/{item}", timeout=10) as r:
            return json.loads(r.read())
    except urllib.error.HTTPError as e:
        if e.code == 429:
            raise TooManyRequests(f"item {item}") from None
        raise ValueError(f"item {item}: HTTP {e.code}") from None


def main() -> None:
    base, server = start(_Api)
    with Client(n_workers=2) as client:
        # A little under the quota, shared by every task on every worker.
        client.set_limit("api", rate=QUOTA * 0.9, burst=5)
        t = time.perf_counter()
        futures = client.map(
            fetch,
            [base] * 60,
            range(60),
            limits="api",
            retries=5,
            retry_delay=0.5,
            retry_on=TooManyRequests,
        )
        items = client.gather(futures)
        print(f"{len(items)} items in {time.perf_counter() - t:.1f} s, within {QUOTA}/s")
        print(client.scheduler_info()["limits"])
    server.shutdown()


if __name__ == "__main__":
    main()
