"""Dask's configuration (``distributed.*`` keys), where shoal has the feature.

A key is read from dask's configuration when dask is loaded (its YAML files,
``dask.config.set``, and the ``DASK_*`` environment variables dask reads
at import), else from the environment variable dask would read
(``distributed.admin.max-error-length`` is
``DASK_DISTRIBUTED__ADMIN__MAX_ERROR_LENGTH``), else from the configuration
a parent process handed down (``DASK_INTERNAL_INHERIT_CONFIG``, as a local
cluster does for its workers); shoal does not import dask to read one.
Every key shoal reads goes through :func:`setting`.
"""

from __future__ import annotations

import os
import sys
from typing import Any

#: Returned by :func:`setting` when a key is set nowhere and has no default.
MISSING: Any = object()


def env_name(key: str) -> str:
    """The environment variable dask reads for ``key``."""
    return "DASK_" + "__".join(part.upper().replace("-", "_") for part in key.split("."))


def _from_env(text: str) -> Any:
    # dask parses environment values as Python literals when it can
    import ast

    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def setting(key: str, default: Any = MISSING) -> Any:
    """The value of Dask's configuration ``key`` (``default`` if unset)."""
    dask = sys.modules.get("dask")
    config = getattr(dask, "config", None)
    if config is not None:
        value = config.get(key, MISSING)
        if value is not MISSING:
            return value
    text = os.environ.get(env_name(key))
    if text is not None:
        return _from_env(text)
    node: Any = _inherited()
    for part in key.split("."):
        if not isinstance(node, dict):
            return default
        node = node.get(part, node.get(part.replace("-", "_"), MISSING))
        if node is MISSING:
            return default
    return node


_inherited_config: Any = None


def _inherited() -> Any:
    """The configuration a parent process handed down (decoded once)."""
    global _inherited_config
    if _inherited_config is None:
        text = os.environ.get("DASK_INTERNAL_INHERIT_CONFIG")
        _inherited_config = {}
        if text:
            import base64
            import json

            try:
                _inherited_config = json.loads(base64.urlsafe_b64decode(text.encode()))
            except ValueError:
                _inherited_config = {}
    return _inherited_config
