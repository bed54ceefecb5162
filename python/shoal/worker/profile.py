"""A worker's statistical profile of its tasks, as Dask's workers keep one.

Every ``distributed.worker.profile.interval`` (10 ms) a thread of the worker
looks at the stack of each executor thread running a task and counts it in
a tree of call sites (Dask's profile format: nodes with ``identifier``,
``description``, ``count`` and ``children``), one tree per key prefix (the
profile of all tasks merges them when asked). Every ``cycle`` (1 s) the
trees are filed under the time they end, so :meth:`shoal.Client.profile`
can ask for a window; an hour of cycles is kept. ``distributed.worker.profile.enabled: False`` turns
sampling off, and the profile stays empty.
"""

from __future__ import annotations

import collections
import sys
import threading
import time
from types import CodeType, FrameType
from typing import Any

from .. import _engine
from ..core.settings import setting
from ..core.times import parse_timedelta

#: Cycles kept (an hour of the default one-second cycles).
HISTORY = 3600


def empty() -> dict[str, Any]:
    """A profile with nothing in it."""
    return {"identifier": "root", "description": "root", "children": {}, "count": 0}


def merge(*trees: dict[str, Any]) -> dict[str, Any]:
    """One profile counting everything in ``trees``."""
    out = empty()
    for tree in trees:
        _add_tree(out, tree)
    return out


def _add_tree(into: dict[str, Any], tree: dict[str, Any]) -> None:
    into["count"] += tree["count"]
    for ident, child in tree["children"].items():
        mine = into["children"].get(ident)
        if mine is None:
            mine = into["children"][ident] = {
                "identifier": ident,
                "description": child["description"],
                "children": {},
                "count": 0,
            }
        _add_tree(mine, child)


#: A code object's identifier in a profile (its name, file and first line),
#: made once per code object: the sampler meets the same few thousand
#: hundreds of times a second.
_idents: dict[CodeType, str] = {}


def _ident(code: CodeType) -> str:
    ident = _idents.get(code)
    if ident is None:
        if len(_idents) > 100_000:
            _idents.clear()  # bounded: code made on the fly (exec, lambdas)
        ident = _idents[code] = f"{code.co_name};{code.co_filename};{code.co_firstlineno}"
    return ident


def _count(tree: dict[str, Any], path: list[tuple[CodeType, int]]) -> None:
    tree["count"] += 1
    node = tree
    for code, line in path:
        ident = _ident(code)
        child = node["children"].get(ident)
        if child is None:
            # The line a frame was at when its call site was first seen.
            child = node["children"][ident] = {
                "identifier": ident,
                "description": f"{code.co_filename}:{line}:{code.co_name}",
                "children": {},
                "count": 0,
            }
        child["count"] += 1
        node = child


class Profiler:
    """Samples the task stacks of one worker (see the module's description)."""

    def __init__(self, running: dict[int, str], stop_at: Any):
        self.enabled = bool(setting("distributed.worker.profile.enabled", True))
        interval = parse_timedelta(setting("distributed.worker.profile.interval", "10ms"))
        cycle = parse_timedelta(setting("distributed.worker.profile.cycle", "1000ms"))
        self.interval = max(interval or 0.01, 0.001)
        self.cycle = cycle or 1.0
        self._running = running
        self._stop_at = stop_at  # the executor loop's code: stacks start above it
        self._lock = threading.Lock()
        self._current: dict[str, dict[str, Any]] = {}
        self._history: collections.deque[tuple[float, dict[str, dict[str, Any]]]] = (
            collections.deque(maxlen=HISTORY)
        )
        self._closed = threading.Event()
        #: Key -> its prefix (the sampler's own; no lock needed).
        self._prefixes: dict[str, str] = {}
        if self.enabled:
            threading.Thread(target=self._sample, name="shoal-profile", daemon=True).start()

    def close(self) -> None:
        """Stop sampling."""
        self._closed.set()

    def _sample(self) -> None:
        cycle_end = time.time() + self.cycle
        while not self._closed.wait(self.interval):
            if self._running:
                frames = sys._current_frames()
                for ident, key in list(self._running.items()):
                    frame = frames.get(ident)
                    if frame is not None:
                        self._add(key, self._path(frame))
                # A frame kept past its function's return keeps its locals
                # (a task's result) alive: hold none while idle.
                frames = frame = None
            now = time.time()
            if now >= cycle_end:
                with self._lock:
                    if self._current:
                        self._history.append((now, self._current))
                        self._current = {}
                cycle_end = now + self.cycle

    def _path(self, frame: FrameType | None) -> list[tuple[CodeType, int]]:
        path = []
        while frame is not None and frame.f_code is not self._stop_at:
            path.append((frame.f_code, frame.f_lineno))
            frame = frame.f_back
        path.reverse()
        return path

    def _add(self, key: str, path: list[tuple[CodeType, int]]) -> None:
        prefix = self._prefixes.get(key)
        if prefix is None:
            if len(self._prefixes) > 10_000:
                self._prefixes.clear()
            prefix = self._prefixes[key] = _engine.key_prefix(key)
        # One tree per prefix; the profile of all tasks merges them when
        # asked (counting twice per sample cost the sampler half its time).
        with self._lock:
            tree = self._current.get(prefix)
            if tree is None:
                tree = self._current[prefix] = empty()
            _count(tree, path)

    def profile(
        self, key: str | None = None, start: float | None = None, stop: float | None = None
    ) -> dict[str, Any]:
        """The profile of tasks of prefix ``key`` (all if None) over the
        cycles that ended between ``start`` and ``stop`` (seconds since the
        epoch; the one under way counts as ending now).
        """
        now = time.time()
        with self._lock:
            cycles = [*self._history, (now, self._current)]
            trees = [
                tree
                for ended, by_prefix in cycles
                if (start is None or ended >= start)
                and (stop is None or ended - self.cycle <= stop)
                for prefix, tree in by_prefix.items()
                if key is None or prefix == key
            ]
            return merge(*trees)
