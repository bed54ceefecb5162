"""Who may talk to a cluster: the shared-secret token, and TLS.

Every connection to a scheduler, and every request to a worker's data
server, presents the cluster's token first; a scheduler started with one
refuses anyone without it. A :class:`~shoal.LocalCluster` makes its own;
``shoal scheduler`` needs one whenever it listens beyond this machine.

Where a token comes from, first found first: ``Security(token=...)``, the
``SHOAL_TOKEN`` environment variable, the file named by
``SHOAL_TOKEN_FILE``. A process that started a :class:`~shoal.LocalCluster`
also knows that cluster's credentials by its address, so ``Client(address)``
works there as in Dask.

TLS takes Dask's ``Security`` options: a CA every certificate must chain
to, and a certificate and key per role (client, scheduler, worker). As in
Dask the name in a certificate is not compared with the address dialled.
A server with TLS requires a certificate of every caller (mutual TLS)
unless ``tls_mutual=False``; callers without one still need the token.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import secrets
import sys
import threading
from typing import Any

from .. import _engine

#: Environment variables a token is read from.
TOKEN_ENV = "SHOAL_TOKEN"
TOKEN_FILE_ENV = "SHOAL_TOKEN_FILE"
#: Environment variables a worker reads its TLS from (a path or the PEM
#: text), when ``--tls-*`` options are not given.
TLS_ENV = {"ca": "SHOAL_TLS_CA", "cert": "SHOAL_TLS_CERT", "key": "SHOAL_TLS_KEY"}

ROLES = ("client", "scheduler", "worker")

_known: dict[str, Security] = {}
_known_lock = threading.Lock()

#: Dask's ``Security`` options shoal does not take, with what to do instead.
_REFUSED = {
    "tls_ciphers": "rustls chooses among modern ciphers only",
    "tls_min_version": "shoal speaks TLS 1.2 and 1.3",
    "tls_max_version": "shoal speaks TLS 1.2 and 1.3",
    "extra_conn_args": "shoal's connections take no extra arguments",
}


def new_token() -> str:
    """A new random token (43 characters)."""
    return secrets.token_urlsafe(32)


class Security:
    """Credentials for a shoal cluster, with Dask's ``Security`` names.

    Parameters
    ----------
    token
        The cluster's shared secret (printable ASCII without spaces, at most
        1,024 characters). ``None`` takes it from ``SHOAL_TOKEN`` or the file
        named by ``SHOAL_TOKEN_FILE``, if either is set.
    require_encryption
        Refuse to connect or serve without TLS.
    tls_ca_file
        The certificate authority every peer's certificate must chain to: a
        path, or the PEM text itself. TLS is on when this is given.
    tls_client_cert, tls_client_key
        The certificate and key a client presents (a path or PEM text).
    tls_scheduler_cert, tls_scheduler_key
        The scheduler's certificate and key.
    tls_worker_cert, tls_worker_key
        A worker's certificate and key, which it serves its data with and
        presents to the scheduler and to other workers.
    tls_mutual
        Whether servers require a certificate signed by the CA of every
        caller (default True, as in Dask). With False, callers may come
        without a certificate, and the token alone says who may in.

    Raises
    ------
    NotImplementedError
        For Dask's ``tls_ciphers``, ``tls_min_version``,
        ``tls_max_version`` and ``extra_conn_args``.

    Examples
    --------
    >>> from shoal import Client, Security
    >>> client = Client("tcp://10.0.0.5:8786", security=Security(token="..."))  # doctest: +SKIP
    >>> sec = Security(token="...", tls_ca_file="ca.pem",
    ...                tls_client_cert="me.pem", tls_client_key="me.key")  # doctest: +SKIP
    >>> client = Client("tls://10.0.0.5:8786", security=sec)  # doctest: +SKIP

    """

    def __init__(
        self,
        token: str | None = None,
        *,
        require_encryption: bool = False,
        tls_ca_file: str | None = None,
        tls_client_cert: str | None = None,
        tls_client_key: str | None = None,
        tls_scheduler_cert: str | None = None,
        tls_scheduler_key: str | None = None,
        tls_worker_cert: str | None = None,
        tls_worker_key: str | None = None,
        tls_mutual: bool = True,
        **kwargs: Any,
    ):
        for name in kwargs:
            if name in _REFUSED:
                raise NotImplementedError(
                    f"Security({name}=...) is not supported: {_REFUSED[name]}"
                )
        if kwargs:
            raise TypeError(f"Security() got unexpected arguments {sorted(kwargs)}")
        if token is not None and not isinstance(token, str):
            raise TypeError(f"token must be a string, not {type(token).__name__}")
        self.token = token
        self.require_encryption = bool(require_encryption)
        self.tls_ca_file = tls_ca_file
        self.tls_client_cert = tls_client_cert
        self.tls_client_key = tls_client_key
        self.tls_scheduler_cert = tls_scheduler_cert
        self.tls_scheduler_key = tls_scheduler_key
        self.tls_worker_cert = tls_worker_cert
        self.tls_worker_key = tls_worker_key
        self.tls_mutual = bool(tls_mutual)
        for role in ROLES:
            cert, key = self._pair(role)
            if (cert is None) != (key is None):
                raise ValueError(f"tls_{role}_cert and tls_{role}_key go together: give both")
            if cert is not None and tls_ca_file is None:
                raise ValueError(
                    f"tls_{role}_cert needs tls_ca_file, the CA peers are checked against"
                )
        if self.require_encryption and tls_ca_file is None:
            raise ValueError("require_encryption=True needs TLS: give tls_ca_file and certificates")

    @classmethod
    def temporary(cls) -> Security:
        """New credentials for one cluster: a random token, and TLS with a
        new CA and one certificate it signed for every role (as Dask's
        ``Security.temporary()``).

        Returns
        -------
        Security
            With ``require_encryption=True``.

        Examples
        --------
        >>> from shoal import LocalCluster, Security
        >>> cluster = LocalCluster(security=Security.temporary())  # doctest: +SKIP

        """
        ca, cert, key = _engine.temporary_certificates()
        pairs = {f"tls_{r}_{part}": v for r in ROLES for part, v in (("cert", cert), ("key", key))}
        return cls(token=new_token(), require_encryption=True, tls_ca_file=ca, **pairs)

    @property
    def tls(self) -> bool:
        """Whether these credentials speak TLS."""
        return self.tls_ca_file is not None

    @property
    def scheme(self) -> str:
        """``tls://`` with TLS, else ``tcp://``."""
        return _engine.scheme(self.tls)

    def with_token(self, token: str | None) -> Security:
        """A copy with ``token`` in place of this one's."""
        other = copy.copy(self)
        other.token = token
        return other

    def _pair(self, role: str) -> tuple[str | None, str | None]:
        return getattr(self, f"tls_{role}_cert"), getattr(self, f"tls_{role}_key")

    def tls_for(self, role: str) -> tuple[bytes, bytes | None, bytes | None, bool] | None:
        """What the engine takes for ``role`` (``"client"``, ``"scheduler"``
        or ``"worker"``): ``(ca, cert, key, mutual)`` as PEM bytes, or None
        without TLS. Files are read now; a missing one is a ``ValueError``
        naming it.
        """
        if role not in ROLES:
            raise ValueError(f"role must be one of {ROLES}, not {role!r}")
        if self.tls_ca_file is None:
            return None
        cert, key = self._pair(role)
        return (
            _pem(self.tls_ca_file, "tls_ca_file"),
            None if cert is None else _pem(cert, f"tls_{role}_cert"),
            None if key is None else _pem(key, f"tls_{role}_key"),
            self.tls_mutual,
        )

    def check_address(self, address: str) -> None:
        """Raise ``ValueError`` if ``address`` is plain TCP while
        encryption is required.
        """
        if self.require_encryption and not address.startswith(_engine.scheme(True)):
            raise ValueError(f"require_encryption=True, but {address!r} is not a tls:// address")

    def __repr__(self) -> str:
        parts = [f"token={'<hidden>' if self.token else None}"]
        if self.tls:
            parts.append(f"tls_ca_file={_shown(self.tls_ca_file)}")
            for role in ROLES:
                cert, _ = self._pair(role)
                if cert is not None:
                    parts.append(f"tls_{role}_cert={_shown(cert)}")
            if not self.tls_mutual:
                parts.append("tls_mutual=False")
        if self.require_encryption:
            parts.append("require_encryption=True")
        return f"Security({', '.join(parts)})"


def _pem(value: str, name: str) -> bytes:
    """PEM text given as itself or by a file's path."""
    if "-----BEGIN" in value:
        return value.encode()
    try:
        with open(value, "rb") as f:
            return f.read()
    except OSError as e:
        raise ValueError(f"could not read {name} {value!r}: {e.strerror}") from None


def _shown(value: str | None) -> str:
    """A TLS option for a repr: its path, never a key's text."""
    if value is None or "-----BEGIN" in value:
        return "<PEM text>" if value else "None"
    return repr(value)


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


def resolve(security: Any, address: str | None = None) -> Security:
    """The credentials to present: the ``security`` given (a
    :class:`Security` or None; its token, if unset, from the environment),
    else the ones of a local cluster of this process at ``address``, else
    the environment's token alone.
    """
    if security is not None and not isinstance(security, Security):
        raise TypeError(f"security must be a shoal.Security, not {type(security).__name__}")
    if security is not None:
        return security if security.token else security.with_token(token_from_environment())
    token = token_from_environment()
    if address is not None:
        with _known_lock:
            known = _known.get(_normal(address))
        if known is not None:
            return known if token is None else known.with_token(token)
    return Security(token=token)


#: Said once by a scheduler that listens beyond this machine without TLS.
PLAIN_TCP_WARNING = (
    "shoal scheduler: no TLS: the token never crosses the network, but anyone on the "
    "path can read the tasks, results and data that do, and take over a connection "
    "to run code; pass --tls-ca-file, --tls-cert and --tls-key to encrypt them"
)


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


def remember(address: str, security: Security) -> None:
    """Note the credentials of a local cluster of this process."""
    with _known_lock:
        _known[_normal(address)] = security


def hosted_here(address: str) -> bool:
    """Whether a cluster started by this process runs its scheduler at
    ``address`` (it noted its credentials with :func:`remember`).
    """
    with _known_lock:
        return _normal(address) in _known


def forget(address: str) -> None:
    """Drop what :func:`remember` noted for ``address``."""
    with _known_lock:
        _known.pop(_normal(address), None)


def add_tls_options(parser: Any) -> None:
    """Add Dask's ``--tls-ca-file``, ``--tls-cert``, ``--tls-key`` and
    ``--no-tls-mutual`` to a command's ``parser`` (read back with
    :func:`given_tls`).
    """
    parser.add_argument(
        "--tls-ca-file",
        default=None,
        help=f"speak TLS: the CA every peer's certificate must chain to (or {TLS_ENV['ca']})",
    )
    parser.add_argument(
        "--tls-cert",
        default=None,
        help=f"this process's TLS certificate (or {TLS_ENV['cert']})",
    )
    parser.add_argument(
        "--tls-key",
        default=None,
        help=f"the private key of --tls-cert (or {TLS_ENV['key']})",
    )
    parser.add_argument(
        "--no-tls-mutual",
        action="store_true",
        help="let callers connect without a certificate (the token still checks them)",
    )


def given_tls(args: Any, role: str, token: str | None) -> Security:
    """The credentials of a command line for ``role`` (``"scheduler"`` or
    ``"worker"``): its TLS options, else the ``SHOAL_TLS_*`` environment
    variables (each a path or PEM text), with ``token``. ``ValueError``
    names what is wrong.
    """
    given = {
        "ca": args.tls_ca_file,
        "cert": args.tls_cert,
        "key": args.tls_key,
    }
    for part, value in given.items():
        if value is None:
            given[part] = os.environ.get(TLS_ENV[part]) or None
    if given["ca"] is None and (given["cert"] or given["key"]):
        raise ValueError("--tls-cert and --tls-key need --tls-ca-file")
    if given["ca"] is None and args.no_tls_mutual:
        raise ValueError("--no-tls-mutual needs TLS (--tls-ca-file)")
    if given["ca"] is not None and given["cert"] is None:
        raise ValueError(f"a {role} speaking TLS needs --tls-cert and --tls-key")
    pair = {f"tls_{role}_cert": given["cert"], f"tls_{role}_key": given["key"]}
    if role == "worker":
        # Clients a task makes (get_client) present the worker's certificate.
        pair.update(tls_client_cert=given["cert"], tls_client_key=given["key"])
    return Security(
        token=token,
        tls_ca_file=given["ca"],
        tls_mutual=not args.no_tls_mutual,
        **pair,
    )


def cluster_credentials(security: Any) -> Security:
    """A new cluster's credentials from its ``security=`` argument: the
    :class:`Security` given (with a new token if it has none), new TLS ones
    for ``True`` (``Security.temporary()``), else a new token.
    """
    if security is True:
        return Security.temporary()
    if security is None or security is False:
        return Security(token=new_token())
    if isinstance(security, Security):
        return security if security.token else security.with_token(new_token())
    raise TypeError(f"security must be a shoal.Security, not {type(security).__name__}")


def add_stdin_option(parser: Any) -> None:
    """Add ``--credentials-stdin`` to a command's ``parser`` (applied by
    :func:`apply_stdin_credentials`).
    """
    parser.add_argument(
        "--credentials-stdin",
        action="store_true",
        help="read the token and TLS PEM texts as one JSON line from standard input "
        "(how SSHCluster and LocalCluster pass them, off every command line and "
        "environment)",
    )
    # The same line from an inherited pipe: a worker that restarts by exec
    # keeps stdin as its lifeline.
    parser.add_argument("--credentials-fd", type=int, default=None, help=argparse.SUPPRESS)


def credentials_line(security: Security, role: str) -> str:
    """The line :func:`apply_stdin_credentials` reads: ``security``'s token
    and its TLS for ``role`` as PEM text, in one JSON object.
    """
    data: dict[str, str] = {}
    if security.token:
        data["token"] = security.token
    tls = security.tls_for(role)
    if tls is not None:
        ca, cert, key, mutual = tls
        data["tls_ca"] = ca.decode()
        if cert is not None and key is not None:
            data["tls_cert"] = cert.decode()
            data["tls_key"] = key.decode()
        if not mutual:
            data["tls_mutual"] = "no"
    return json.dumps(data)


def apply_stdin_credentials(args: Any) -> None:
    """With ``--credentials-stdin``, read the line :func:`credentials_line`
    wrote and set ``args``' token and TLS options from it (nothing else is
    read: standard input may stay open as a lifeline).
    """
    fd = getattr(args, "credentials_fd", None)
    if fd is not None:
        with os.fdopen(fd, "rb") as f:
            line = f.readline()
    elif getattr(args, "credentials_stdin", False):
        line = sys.stdin.buffer.readline()
    else:
        return
    if not line:
        raise ValueError("--credentials-stdin: standard input closed before the credentials")
    try:
        data = json.loads(line)
    except ValueError:
        raise ValueError("--credentials-stdin: the first line of stdin is not JSON") from None
    if not isinstance(data, dict) or not all(isinstance(v, str) for v in data.values()):
        raise ValueError("--credentials-stdin: expected a JSON object of strings")
    if "token" in data:
        args.token, args.token_file = data["token"], None
    for part in ("ca", "cert", "key"):
        if f"tls_{part}" in data:
            setattr(args, "tls_ca_file" if part == "ca" else f"tls_{part}", data[f"tls_{part}"])
    if data.get("tls_mutual") == "no":
        args.no_tls_mutual = True


def worker_stdin(security: Security) -> tuple[str, list[str]]:
    """How a worker process this one starts gets the credentials: the line
    to write first to its standard input, and the options that make it read
    it. Neither its command line nor its environment (``/proc/PID/environ``
    stays readable after ``os.environ`` is cleaned) holds a secret.
    """
    tls = security.tls_for("worker")
    if tls is not None and (tls[1] is None or tls[2] is None):
        raise ValueError("workers speaking TLS need tls_worker_cert and tls_worker_key")
    return credentials_line(security, "worker"), ["--credentials-stdin"]


def pipe_with(line: str) -> int:
    """A pipe's read end, inherited across ``exec``, holding ``line``
    (``--credentials-fd``).
    """
    read, write = os.pipe()
    with os.fdopen(write, "wb") as f:
        f.write(line.encode() + b"\n")
    os.set_inheritable(read, True)
    return read


def pop_tls_environment() -> None:
    """Remove the ``SHOAL_TLS_*`` variables from this process's environment
    (read already), so tasks and the processes they start do not see them.
    """
    for name in TLS_ENV.values():
        os.environ.pop(name, None)


def _normal(address: str) -> str:
    """An address as the credentials of a local cluster are noted by: no
    scheme, and ``localhost`` as ``127.0.0.1`` (the one host a local
    cluster's loopback address has two names for).
    """
    bare = _engine.strip_scheme(address)
    host, sep, port = bare.rpartition(":")
    if sep and host == "localhost":
        return f"127.0.0.1:{port}"
    return bare
