"""A real headless Chromium driven over its DevTools protocol, for the tests."""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from typing import Any


def find_chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    return None


class Browser:
    """One headless Chromium with one page, and what that page reported:
    console errors, uncaught exceptions and every URL it requested.
    """

    def __init__(self, binary: str):
        self.profile = tempfile.mkdtemp(prefix="shoal-chromium-")
        # Chromium's own temporary files go inside the profile, removed with it.
        scratch = os.path.join(self.profile, "tmp")
        os.mkdir(scratch)
        self.proc = subprocess.Popen(
            [
                binary,
                "--headless=new",
                "--no-sandbox",
                "--disable-gpu",
                "--no-first-run",
                "--disable-extensions",
                "--remote-debugging-port=0",
                f"--user-data-dir={self.profile}",
                "--window-size=1280,900",
                "about:blank",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            # Its own process group: its helper processes go with it.
            start_new_session=True,
            env={**os.environ, "TMPDIR": scratch},
        )
        self.errors: list[str] = []
        self.requests: list[str] = []
        self._id = 0
        try:
            port = self._devtools_port()
            self._connect(port)
        except BaseException:
            self.close()
            raise

    def _devtools_port(self) -> int:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            m = re.search(r"DevTools listening on ws://[^:]+:(\d+)/", line)
            if m:
                return int(m.group(1))
        raise RuntimeError("chromium exited before it listened")

    def _connect(self, port: int) -> None:
        import websocket

        with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10) as r:
            pages = [t for t in json.load(r) if t["type"] == "page"]
        # Chromium refuses DevTools connections that carry an Origin header it
        # was not told to allow; a client of our own sends none.
        self.ws = websocket.create_connection(
            pages[0]["webSocketDebuggerUrl"], timeout=30, suppress_origin=True
        )
        for domain in ("Runtime", "Log", "Page", "Network"):
            self.call(f"{domain}.enable")

    def _note(self, msg: dict[str, Any]) -> None:
        method, params = msg.get("method"), msg.get("params", {})
        if method == "Runtime.exceptionThrown":
            self.errors.append(json.dumps(params["exceptionDetails"]))
        elif method == "Runtime.consoleAPICalled" and params.get("type") == "error":
            self.errors.append(json.dumps(params.get("args")))
        elif method == "Log.entryAdded" and params["entry"]["level"] == "error":
            self.errors.append(params["entry"].get("text", ""))
        elif method == "Network.requestWillBeSent":
            self.requests.append(params["request"]["url"])

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        self._id += 1
        self.ws.send(json.dumps({"id": self._id, "method": method, "params": params}))
        while True:
            msg = json.loads(self.ws.recv())
            if msg.get("id") == self._id:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return msg.get("result", {})
            self._note(msg)

    def goto(self, url: str) -> None:
        self.call("Page.navigate", url=url)
        self.wait_for("document.readyState === 'complete'")

    def evaluate(self, expression: str) -> Any:
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def wait_for(self, expression: str, timeout: float = 20.0) -> Any:
        """Evaluate until the page says true (the page changes by itself)."""
        deadline = time.monotonic() + timeout
        while True:
            value = self.evaluate(expression)
            if value:
                return value
            if time.monotonic() > deadline:
                raise AssertionError(f"the page never made {expression!r} true")
            # Ask again after the page's next frame.
            self.call(
                "Runtime.evaluate",
                expression="new Promise(r => requestAnimationFrame(() => r(0)))",
                awaitPromise=True,
            )

    def _group(self) -> Iterator[list[str]]:
        """The ``/proc/PID/stat`` fields (after the name) of every process
        in chromium's process group: its state, parent, group, ...
        """
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                with open(f"/proc/{entry}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[2]) == self.proc.pid:
                yield fields

    def cpu_seconds(self) -> float:
        """CPU time used so far by chromium and its helper processes."""
        ticks = sum(int(f[11]) + int(f[12]) for f in self._group())
        return ticks / os.sysconf("SC_CLK_TCK")

    def screenshot(self, path: str) -> bytes:
        data = base64.b64decode(self.call("Page.captureScreenshot", format="png")["data"])
        with open(path, "wb") as f:
            f.write(data)
        return data

    def close(self) -> None:
        try:
            if getattr(self, "ws", None) is not None:
                self.ws.close()
        finally:
            self._stop_group()
            shutil.rmtree(self.profile, ignore_errors=True)
            if os.path.exists(self.profile):
                raise RuntimeError(f"could not remove {self.profile}")

    def _stop_group(self) -> None:
        """Stop chromium and every helper process it started."""
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            pass
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait(10)
        # Helpers reparented elsewhere die with the group; wait until they
        # are gone, so none writes into the profile after it is removed.
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and any(f[0] != "Z" for f in self._group()):
            time.sleep(0.05)
