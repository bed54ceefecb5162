"""Thousands of concurrent requests with ``async def`` tasks.

Each task awaits an HTTP request on its worker's event loop, so a worker
with one thread keeps hundreds of requests in flight. Uses only the standard
library and a local server (``fake_web.py``) with 0.3 s of latency. Run:
``python examples/async_scraper.py``.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from urllib.parse import urlsplit

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from shoal import Client  # noqa: E402

from fake_web import serve  # noqa: E402


async def http_get(url: str) -> str:
    """A minimal HTTP/1.0 GET on asyncio streams (standard library only; with
    aiohttp or httpx.AsyncClient this is one line)."""
    parts = urlsplit(url)
    reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
    path = parts.path + (f"?{parts.query}" if parts.query else "")
    writer.write(f"GET {path} HTTP/1.0\r\nHost: {parts.hostname}\r\n\r\n".encode())
    await writer.drain()
    response = await reader.read()
    writer.close()
    await writer.wait_closed()
    return response.split(b"\r\n\r\n", 1)[1].decode()


async def fetch_views(url: str) -> int:
    """Fetch one listing page and count its posts' view counters."""
    html = await http_get(url)
    return html.count("views")


def main() -> None:
    base, server = serve(latency=0.3)
    urls = [f"{base}/questions/tagged/dask?tab=Newest&page={p}&pagesize=50" for p in range(200)]
    with Client(n_workers=2, threads_per_worker=1) as client:
        t = time.perf_counter()
        counts = client.gather(client.map(fetch_views, urls))
        print(f"{len(urls)} pages, {sum(counts)} view counts, in {time.perf_counter() - t:.2f} s")
    server.shutdown()


if __name__ == "__main__":
    main()
