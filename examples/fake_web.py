"""A local stand-in for the web services the seed workloads call.

Serves, with a fixed latency per request:

* ``/questions/tagged/<tag>?tab=Newest&page=N&pagesize=50``: a Stack
  Overflow-like listing page whose posts use the site's real class names
  (``s-post-summary`` and friends), with deterministic content per page;
* ``/intensity/date/<YYYY-MM-DD>``: a carbon-intensity-like JSON answer.

Start it with :func:`serve`; it runs on a daemon thread of this process.
"""

from __future__ import annotations

import html
import json
import random
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

WORDS = (
    "dask delayed dataframe compute cluster worker memory partition groupby merge parquet "
    "xarray numpy pandas scheduler future graph task parallel slow error index"
).split()
TAGS = ["python", "dask", "pandas", "numpy", "dask-distributed", "python-xarray", "parquet"]


def _count(n: int) -> str:
    if n >= 1_000_000:
        return f"{n / 1e6:.1f}m"
    if n >= 1000:
        return f"{n / 1e3:.1f}k"
    return str(n)


def listing_page(tag: str, page: int, pagesize: int) -> str:
    """An HTML listing page with ``pagesize`` question summaries."""
    rng = random.Random(f"{tag}-{page}")
    posts = []
    for _ in range(pagesize):
        title = " ".join(rng.choice(WORDS) for _ in range(rng.randint(4, 9))).capitalize()
        votes, answers = rng.randint(0, 40), rng.randint(0, 6)
        views = rng.choice(
            [rng.randint(1, 999), rng.randint(1000, 99_000), rng.randint(10**6, 3 * 10**6)]
        )
        tags = [tag, *rng.sample([t for t in TAGS if t != tag], rng.randint(0, 3))]
        tag_links = "".join(f'<a class="post-tag">{t}</a>' for t in tags)
        posts.append(
            f"""
  <div class="s-post-summary js-post-summary">
    <div class="s-post-summary--stats">
      <div class="s-post-summary--stats-item">{votes} votes</div>
      <div class="s-post-summary--stats-item">{answers} answers</div>
      <div class="s-post-summary--stats-item">{_count(views)} views</div>
    </div>
    <div class="s-post-summary--content">
      <h3 class="s-post-summary--content-title"><a href="#">{html.escape(title)}</a></h3>
      <div class="s-post-summary--meta">
        <div class="s-post-summary--meta-tags">{tag_links}</div>
      </div>
    </div>
  </div>"""
        )
    return f"<html><body><div id='questions'>{''.join(posts)}</div></body></html>"


def intensity(date: str) -> dict:
    """A carbon-intensity-like answer for one day."""
    rng = random.Random(date)
    return {
        "data": [
            {
                "from": f"{date}T{h:02d}:00Z",
                "intensity": {"forecast": rng.randint(80, 300), "index": "moderate"},
            }
            for h in range(0, 24, 6)
        ]
    }


class QuietHandler(BaseHTTPRequestHandler):
    """A request handler that answers with :meth:`reply` and logs nothing."""

    def reply(self, status: int, body: bytes, ctype: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


class _Handler(QuietHandler):
    latency = 0.1

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        time.sleep(self.latency)  # the network round trip being simulated
        url = urlparse(self.path)
        parts = url.path.strip("/").split("/")
        if parts[:2] == ["questions", "tagged"] and len(parts) == 3:
            q = parse_qs(url.query)
            body = listing_page(
                parts[2], int(q.get("page", ["1"])[0]), int(q.get("pagesize", ["50"])[0])
            ).encode()
            ctype = "text/html; charset=utf-8"
        elif parts[:2] == ["intensity", "date"] and len(parts) == 3:
            body = json.dumps(intensity(parts[2])).encode()
            ctype = "application/json"
        else:
            self.send_error(404)
            return
        self.reply(200, body, ctype)


class _Server(ThreadingHTTPServer):
    # A real site accepts many connections at once. http.server's default
    # backlog of 5 drops the SYNs of a burst of parallel requests, which the
    # client then resends only after a second.
    request_queue_size = 1024
    daemon_threads = True


def start(handler: type[BaseHTTPRequestHandler]) -> tuple[str, ThreadingHTTPServer]:
    """Serve ``handler`` on a free loopback port from a daemon thread;
    return the base URL and the server.
    """
    server = _Server(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return f"http://127.0.0.1:{server.server_address[1]}", server


def serve(latency: float = 0.1) -> tuple[str, ThreadingHTTPServer]:
    """Start the server on a free port; return its base URL and the server."""
    return start(type("Handler", (_Handler,), {"latency": latency}))
