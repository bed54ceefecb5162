"""The notebook side of ``progress``: live ``ipywidgets`` bars."""

from __future__ import annotations

import threading
import time
from typing import Any


def progress_widget(tally: Any, multi: bool, interval: float) -> Any:
    """A widget following ``tally`` (see ``progress``), updated from a
    background thread every ``interval`` seconds until every future is done.
    """
    try:
        import ipywidgets as w
    except ImportError as e:
        raise ImportError(
            "progress bars in a notebook need ipywidgets: pip install ipywidgets "
            "(or call progress(..., notebook=False) for a text bar)"
        ) from e

    names = sorted(tally.total) if multi else ["all"]
    bars = {}
    rows = []
    for name in names:
        total = sum(tally.total.values()) if name == "all" else tally.total[name]
        bar = w.IntProgress(value=0, min=0, max=max(total, 1), bar_style="info")
        label = w.HTML(f"<code>{name}</code>")
        count = w.HTML(f"0 / {total}")
        bars[name] = (bar, count, total)
        rows.append(w.HBox([label, bar, count]))
    summary = w.HTML("")
    box = w.VBox([summary, *rows])

    def draw() -> None:
        with tally.lock:
            done = dict(tally.done)
            erred = tally.erred
        for name, (bar, count, total) in bars.items():
            n = sum(done.values()) if name == "all" else done[name]
            bar.value = n
            count.value = f"{n} / {total}"
            if n >= total:
                bar.bar_style = "success"
        elapsed = time.monotonic() - tally.started
        state = "Finished" if tally.finished.is_set() else "Running"
        summary.value = f"<b>{state}</b>: {elapsed:.1f} s" + (f", {erred} erred" if erred else "")
        if erred:
            for bar, _, _ in bars.values():
                bar.bar_style = "danger"

    drawn = threading.Event()

    def follow() -> None:
        while not tally.finished.wait(interval):
            draw()
        draw()
        drawn.set()

    # Set once the final state is drawn (every future done).
    box.finished = drawn
    draw()
    threading.Thread(target=follow, name="shoal-progress-widget", daemon=True).start()
    return box
