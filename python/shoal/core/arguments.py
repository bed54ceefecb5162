"""Dask arguments shoal accepts for compatibility but does not implement yet.

Each raises :class:`NotImplementedError` naming the argument and what to do
instead, unless it is left at a value that means "not used". No argument is
accepted and then silently ignored.
"""

from __future__ import annotations

from typing import Any

#: Default for arguments whose "not used" value must be told apart from any
#: value a user passes.
UNSET: Any = type("Unset", (), {"__repr__": lambda self: "UNSET"})()

_ADVICE = {
    "resources": "give resources= to submit, map or compute",
    "actor": "submit ordinary functions; actors are not supported yet",
    "actors": "submit ordinary functions; actors are not supported yet",
    "allow_other_workers": "give it to submit, map or compute",
    "loop": "leave it unset; shoal clients run their own network thread",
    "heartbeat_interval": "leave it unset",
    "extensions": "leave it unset",
    "connection_limit": "leave it unset",
    "batch_size": "leave it unset; map sends its tasks in one batch",
    "force": "leave it False",
    "worker_class": "leave it unset",
    "interface": "use host= instead",
    "protocol": "leave it unset; shoal speaks tcp",
    "worker_dashboard_address": "leave it unset",
}


def reject(name: str, value: Any, unused: tuple[Any, ...] = (None, False, UNSET)) -> None:
    """Raise ``NotImplementedError`` for ``name=value`` unless ``value`` is
    one of the ``unused`` values.
    """
    for u in unused:
        if value is u or (type(value) is type(u) and value == u):
            return
    advice = _ADVICE.get(name, "leave it unset")
    raise NotImplementedError(f"shoal does not support {name}={value!r} yet: {advice}")
