"""Files sent with ``Client.upload_file``, saved where this worker can import
them.

Each worker process keeps its files in a directory of its own under one
per-user root (``<tmp>/shoal-<uid>/worker-<pid>-<suffix>``, or under the
worker's local directory), removed when the worker exits; the engine keeps
spilled results the same way (``worker-<pid>-spill<n>``). Directories of
workers that died without removing theirs (SIGKILL) are removed by the next
worker that starts under the root.
"""

from __future__ import annotations

import atexit
import hashlib
import importlib
import os
import shutil
import stat
import sys
import tempfile
import threading
from pathlib import Path

#: Suffixes put on ``sys.path`` themselves (zip imports).
ARCHIVES = (".egg", ".zip")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def temp_dir() -> str:
    """The system's temporary directory, found as ``tempfile.gettempdir()``
    finds it but without its probe: that writes and deletes a file in each
    candidate, and a process stopped at that moment (a worker being
    killed) leaves the file behind. Whether it is writable shows when
    something is made in it.
    """
    if tempfile.tempdir is not None:
        return tempfile.tempdir
    for name in ("TMPDIR", "TEMP", "TMP"):
        found = os.environ.get(name)
        if found and os.path.isdir(found):
            return found
    for found in ("/tmp", "/var/tmp", "/usr/tmp"):
        if os.path.isdir(found):
            return found
    return os.getcwd()


def user_root(local_directory: str | None = None) -> Path:
    """The per-user directory worker directories live under, in
    ``local_directory`` (default: the system's temporary directory).
    """
    base = Path(local_directory) if local_directory else Path(temp_dir())
    return base / f"shoal-{os.getuid()}"


def private_root(local_directory: str | None = None) -> Path:
    """:func:`user_root`, checked with :func:`ensure_private` if it exists
    (it is made when first needed).

    Raises
    ------
    PermissionError
        If the directory is someone else's, a link, or open to others.

    """
    return ensure_private(user_root(local_directory), create=False)


def ensure_private(root: Path, create: bool) -> Path:
    """``root``, once sure it is this user's alone: a directory (not a link)
    owned by this user that no one else may enter. Workers import uploaded
    files from under it, so a directory someone else planted there first
    would let them run code as this user. ``create`` makes it (mode 0700)
    if missing; otherwise a missing one is fine.

    Raises
    ------
    PermissionError
        If the directory is someone else's, a link, or open to others.

    """
    if create:
        root.mkdir(mode=0o700, parents=True, exist_ok=True)
    try:
        st = os.lstat(root)
    except FileNotFoundError:
        return root
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.geteuid() or st.st_mode & 0o077:
        what = "a link" if stat.S_ISLNK(st.st_mode) else "a directory"
        raise PermissionError(
            f"{root} is {what} owned by uid {st.st_uid} with mode "
            f"{stat.S_IMODE(st.st_mode):o}, not a private directory of uid {os.geteuid()}: "
            "whoever controls it could run code in shoal's workers. Remove it, or give "
            "the workers a local directory of their own (local_directory=...)"
        )
    return root


def remove_stale(root: Path) -> None:
    """Remove directories of workers whose process is gone."""
    for d in root.glob("worker-*-*"):
        try:
            pid = int(d.name.split("-")[1])
        except (IndexError, ValueError):
            continue
        if pid != os.getpid() and not _pid_alive(pid):
            shutil.rmtree(d, ignore_errors=True)


def remove_directories_of(pids: list[int], root: Path) -> None:
    """Remove the directories of these worker processes under ``root``, once
    they exited (a worker ended by its lifeline exits without removing its
    own).
    """
    for pid in pids:
        for d in root.glob(f"worker-{pid}-*"):
            shutil.rmtree(d, ignore_errors=True)


class Uploads:
    """The files this worker was sent, and who waits for them."""

    def __init__(self, root: Path | None = None) -> None:
        self._root = private_root() if root is None else root
        self._dir: Path | None = None
        self._digests: dict[str, str] = {}
        self._changed = threading.Condition()

    @property
    def directory(self) -> Path:
        """This worker's directory (made on first use)."""
        if self._dir is None:
            ensure_private(self._root, create=True)
            remove_stale(self._root)
            self._dir = Path(tempfile.mkdtemp(prefix=f"worker-{os.getpid()}-", dir=self._root))
            atexit.register(self.remove)
        return self._dir

    def save(self, name: str, data: bytes) -> None:
        """Save file ``name`` and make it importable; a module of that name
        imported before is reloaded.
        """
        name = os.path.basename(name)
        path = self.directory / name
        stem = name.rsplit(".", 1)[0]
        # A new version of the same size written within the same second
        # would otherwise be shadowed by the bytecode cached for the old one.
        for cached in (self.directory / "__pycache__").glob(f"{stem}.*.pyc"):
            cached.unlink(missing_ok=True)
        path.write_bytes(data)
        entry = str(path) if name.endswith(ARCHIVES) else str(self.directory)
        if entry not in sys.path:
            sys.path.insert(0, entry)
        importlib.invalidate_caches()
        try:
            if name.endswith(".py") and stem in sys.modules:
                importlib.reload(sys.modules[stem])
        finally:
            with self._changed:
                self._digests[name] = hashlib.sha256(data).hexdigest()
                self._changed.notify_all()

    def wait_for(self, name: str, digest: str, timeout: float) -> bool:
        """Wait until this version of ``name`` is saved; False on timeout."""
        with self._changed:
            return self._changed.wait_for(lambda: self._digests.get(name) == digest, timeout)

    def remove(self) -> None:
        """Remove the directory and what is in it."""
        d, self._dir = self._dir, None
        if d is not None:
            shutil.rmtree(d, ignore_errors=True)


def wait_uploaded(name: str, digest: str, load: bool, timeout: float, dask_worker: object) -> str:
    """Runs on each worker after an upload: waits for the file, then imports
    it (a ``.py`` module, or the packages at the top of an archive) if
    ``load``, so an error in it reaches the uploader.

    Raises
    ------
    TimeoutError
        If the file did not arrive within ``timeout`` seconds.

    """
    uploads: Uploads = dask_worker.executors.uploads  # type: ignore[attr-defined]
    if not uploads.wait_for(name, digest, timeout):
        raise TimeoutError(f"{name} did not reach this worker within {timeout} s")
    if load and name.endswith(".py"):
        importlib.import_module(name[: -len(".py")])
    elif load and name.endswith(ARCHIVES):
        import zipfile

        with zipfile.ZipFile(uploads.directory / name) as z:
            names = set(z.namelist())
        for top in sorted({n.split("/")[0] for n in names}):
            mod = top[: -len(".py")] if top.endswith(".py") else top
            if mod.isidentifier() and (top.endswith(".py") or f"{top}/__init__.py" in names):
                importlib.import_module(mod)
    return name
