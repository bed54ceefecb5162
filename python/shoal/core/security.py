"""Who may talk to a cluster: the shared-secret token.

Every connection to a scheduler, and every request to a worker's data
server, presents the cluster's token first; a scheduler started with one
refuses anyone without it. A :class:`~shoal.LocalCluster` makes its own;
``shoal scheduler`` needs one whenever it listens beyond this machine.

Where a token comes from, first found first: ``Security(token=...)``, the
``SHOAL_TOKEN`` environment variable, the file named by
``SHOAL_TOKEN_FILE``. A process that started a :class:`~shoal.LocalCluster`
also knows that cluster's token by its address, so ``Client(address)``
works there as in Dask.
"""

from __future__ import annotations

import os
import secrets
import threading
from typing import Any

#: Environment variables a token is read from.
TOKEN_ENV = "SHOAL_TOKEN"
TOKEN_FILE_ENV = "SHOAL_TOKEN_FILE"

_known: dict[str, str] = {}
_known_lock = threading.Lock()


class Security:
    """Credentials for a shoal cluster, in the place of Dask's ``Security``.

    Parameters
    ----------
    token
        The cluster's shared secret (printable ASCII without spaces, at most
        1,024 characters). ``None`` takes it from ``SHOAL_TOKEN`` or the file
        named by ``SHOAL_TOKEN_FILE``, if either is set.
    **kwargs
        Dask's TLS options (``tls_ca_file``, ``tls_client_cert``, ...) are
        refused with ``NotImplementedError``: shoal does not speak TLS yet.

    Examples
    --------
    >>> from shoal import Client, Security
    >>> client = Client("tcp://10.0.0.5:8786", security=Security(token="..."))  # doctest: +SKIP

    """

    def __init__(self, token: str | None = None, **kwargs: Any):
        if kwargs:
            raise NotImplementedError(
                f"shoal does not support {sorted(kwargs)} yet: TLS is not implemented; "
                "reach the scheduler over a trusted network, with a token"
            )
        if token is not None and not isinstance(token, str):
            raise TypeError(f"token must be a string, not {type(token).__name__}")
        self.token = token

    @classmethod
    def temporary(cls) -> Security:
        """New credentials with a random token (as a local cluster makes)."""
        return cls(token=secrets.token_urlsafe(32))

    def __repr__(self) -> str:
        return f"Security(token={'<hidden>' if self.token else None})"


def token_from_environment() -> str | None:
    """The token in ``SHOAL_TOKEN``, else in the file ``SHOAL_TOKEN_FILE``
    names, else None.
    """
    token = os.environ.get(TOKEN_ENV)
    if token:
        return token
    path = os.environ.get(TOKEN_FILE_ENV)
    if path:
        return read_token_file(path)
    return None


def add_token_options(parser: Any, what: str) -> None:
    """Add ``--token`` and ``--token-file`` to a command's ``parser``
    (read back with :func:`given_token`); ``what`` says what the token is.
    """
    parser.add_argument(
        "--token",
        default=None,
        help=f"{what} (visible to `ps`: prefer --token-file or {TOKEN_ENV})",
    )
    parser.add_argument("--token-file", default=None, help="a file holding the token")


def given_token(token: str | None, token_file: str | None) -> str | None:
    """The token of a command line: ``--token``, else ``--token-file``,
    else the environment's.
    """
    if token is not None and token_file is not None:
        raise ValueError("give --token or --token-file, not both")
    if token is not None:
        return token
    if token_file is not None:
        return read_token_file(token_file)
    return token_from_environment()


def read_token_file(path: str) -> str:
    """A token from a file (surrounding whitespace dropped); a missing or
    empty file is an error naming it.
    """
    try:
        with open(path) as f:
            token = f.read().strip()
    except OSError as e:
        raise ValueError(f"could not read the token file {path!r}: {e.strerror}") from None
    if not token:
        raise ValueError(f"the token file {path!r} is empty")
    return token


def resolve(security: Any, address: str | None = None) -> str | None:
    """The token to present: the ``security`` given (a :class:`Security` or
    None), else the environment's, else the one of a local cluster of this
    process at ``address``.
    """
    if security is not None and not isinstance(security, Security):
        raise TypeError(f"security must be a shoal.Security, not {type(security).__name__}")
    if security is not None and security.token:
        return security.token
    token = token_from_environment()
    if token:
        return token
    if address is not None:
        with _known_lock:
            return _known.get(_normal(address))
    return None


def is_loopback(host: str) -> bool:
    """Whether listening on ``host`` reaches only this machine."""
    import ipaddress

    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        # A host name: it may resolve to any interface.
        return False


def remember(address: str, token: str) -> None:
    """Note the token of a local cluster of this process."""
    with _known_lock:
        _known[_normal(address)] = token


def forget(address: str) -> None:
    """Drop what :func:`remember` noted for ``address``."""
    with _known_lock:
        _known.pop(_normal(address), None)


def _normal(address: str) -> str:
    return address.split("://", 1)[-1]
