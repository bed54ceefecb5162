"""The structured event log: ``log_event``, ``get_events``,
``subscribe_topic`` and ``unsubscribe_topic``, and the handlers that show a
task's :func:`shoal.print` and :func:`shoal.warn` in this process. Part of
:class:`Client`.

The scheduler keeps each topic's latest 1,000 events (as Dask does) and
sends every new one to the clients subscribed to its topic; an event is a
``(timestamp, message)`` pair pickled by whoever logged it, its timestamp
taken from that process's clock (Dask takes the scheduler's).
"""

from __future__ import annotations

import builtins
import logging
import pickle
import sys
import threading
import time
import warnings
import weakref
from collections.abc import Callable
from typing import Any

from .._engine import Answer, Coord
from ..coordination._request import ask, next_subscription
from ..core import aio, serialize
from ..worker.task_output import FORWARD_TOPIC, ForwardLogging, replay_log_record

_log = logging.getLogger("shoal")


def topics_of(topic: Any) -> list[str]:
    """``topic`` (a name or a collection of names) as a list of names."""
    if isinstance(topic, str):
        return [topic]
    names = list(topic)
    if not names or not all(isinstance(t, str) for t in names):
        raise TypeError(f"topic must be a name or a list of names, not {topic!r}")
    return names


class EventCalls:
    """The Client's calls on the event log."""

    _event_handlers: dict[str, tuple[int, Callable[[Any], Any]]]

    @aio.maybe_async
    def log_event(self, topic: str | list[str], msg: Any) -> None:
        """Log an event under a topic (or several).

        Parameters
        ----------
        topic
            A topic name, or a list of names to log the same event under.
        msg
            Any picklable value.

        Examples
        --------
        >>> client.log_event("progress", {"done": 10})  # doctest: +SKIP

        """
        event = serialize.dumps((time.time(), msg))
        ask(self, Coord.LogEvent(topics_of(topic), event))

    @aio.maybe_async
    def get_events(self, topic: str | None = None) -> Any:
        """The events the scheduler keeps (the latest 1,000 of a topic).

        Parameters
        ----------
        topic
            A topic name; None: every topic.

        Returns
        -------
        tuple or dict
            For a topic, its ``(timestamp, msg)`` events, oldest first; for
            None, a dict of every topic's.

        """
        if topic is None:
            names = ask(self, Coord.EventTopics())
            assert isinstance(names, Answer.Names), names
            return {t: self._events_of(t) for t in names.names}
        return self._events_of(topic)

    def _events_of(self, topic: str) -> tuple[Any, ...]:
        answer = ask(self, Coord.GetEvents(topic))
        assert isinstance(answer, Answer.Items), answer
        return tuple(tuple(serialize.loads(frames)) for frames in answer.items)

    def subscribe_topic(self, topic: str, handler: Callable[[Any], Any]) -> None:
        """Call ``handler(event)`` for every event logged under ``topic``
        from now on (an ``async def`` handler is run to its end), from a
        thread of this client.

        Parameters
        ----------
        topic
            The topic name.
        handler
            Takes one ``(timestamp, msg)`` event. A second subscription to
            the same topic replaces the first one's handler.

        Examples
        --------
        >>> client.subscribe_topic("progress", print)  # doctest: +SKIP

        """
        if not isinstance(topic, str):
            raise TypeError(f"topic must be a name, not {topic!r}")
        if not callable(handler):
            raise TypeError(f"handler must be callable, not {handler!r}")
        old = self._event_handlers.get(topic)
        if old is not None:
            _log.info("Handler for %s already set. Overwriting.", topic)
            self._event_handlers[topic] = (old[0], handler)
            return
        sub = next_subscription()
        self._event_handlers[topic] = (sub, handler)
        ask(self, Coord.SubscribeEvents(topic, sub))
        threading.Thread(
            target=_deliver_events,
            args=(weakref.ref(self), self._session, topic, sub),
            name=f"shoal-events-{topic}",
            daemon=True,
        ).start()

    def unsubscribe_topic(self, topic: str) -> None:
        """Stop calling the handler of ``topic``.

        Raises
        ------
        ValueError
            If no handler is subscribed to it.

        """
        entry = self._event_handlers.pop(topic, None)
        if entry is None:
            raise ValueError(f"No event handler known for topic {topic}.")
        if self.status == "running":
            ask(self, Coord.Unsubscribe(entry[0]))

    def forward_logging(self, logger_name: str | None = None, level: int = logging.NOTSET) -> None:
        """Show here the log records the workers' ``logger_name`` logger
        (the root logger if None) emits at ``level`` and above, as Dask's:
        each is handled by this process's logger of the same name.

        Examples
        --------
        >>> client.forward_logging("my.package", level=logging.INFO)  # doctest: +SKIP

        """
        if FORWARD_TOPIC not in self._event_handlers:
            self.subscribe_topic(FORWARD_TOPIC, replay_log_record)
        self.register_plugin(  # type: ignore[attr-defined]
            ForwardLogging(logger_name, level), name=_forwarding_name(logger_name)
        )

    def unforward_logging(self, logger_name: str | None = None) -> None:
        """Stop what :meth:`forward_logging` started for ``logger_name``."""
        self.unregister_worker_plugin(_forwarding_name(logger_name))  # type: ignore[attr-defined]

    def _subscribe_events(self) -> None:
        """On connecting: subscribe the handlers this client has (again,
        after a reconnection), and show here what tasks :func:`shoal.print`
        and :func:`shoal.warn`.
        """
        handlers = {"print": show_print, "warn": show_warning}
        handlers.update((t, h) for t, (_, h) in self._event_handlers.items())
        self._event_handlers.clear()
        for topic, handler in handlers.items():
            self.subscribe_topic(topic, handler)


def _forwarding_name(logger_name: str | None) -> str:
    return f"forward-logging-{logger_name or '<root>'}"


def _deliver_events(client_ref: Any, session: Any, topic: str, sub: int) -> None:
    """Run by one thread per subscription until it ends or its client
    closes. It holds the client weakly, so a client nobody holds is still
    closed when it is collected (which ends this thread).
    """
    while True:
        try:
            frames = session.next_published(sub, None)
        except (RuntimeError, ConnectionError):  # unsubscribed, closed, or disconnected
            return
        client = client_ref()
        if client is None:
            return
        entry = client._event_handlers.get(topic)
        del client
        if frames is None or entry is None or entry[0] != sub:
            continue
        try:
            result = entry[1](tuple(serialize.loads(frames)))
            if hasattr(result, "__await__"):
                aio.run_to_end(result)
        except Exception:
            _log.exception("the handler of event topic %r raised", topic)


def show_print(event: Any) -> None:
    """Print here what a task printed with :func:`shoal.print`."""
    _, msg = event
    if not isinstance(msg, dict):
        builtins.print(msg)
        return
    file = {1: sys.stdout, 2: sys.stderr, None: None}.get(msg.get("file"))
    builtins.print(
        *msg.get("args", ()),
        sep=msg.get("sep"),
        end=msg.get("end"),
        file=file,
        flush=bool(msg.get("flush")),
    )


def show_warning(event: Any) -> None:
    """Warn here as a task did with :func:`shoal.warn`."""
    _, msg = event
    if not isinstance(msg, dict):
        warnings.warn(str(msg), stacklevel=2)
        return
    category = pickle.loads(msg["category"]) if msg.get("category") else UserWarning
    warnings.warn(pickle.loads(msg["message"]), category=category, stacklevel=2)
