"""A joblib backend: ``with joblib.parallel_config(backend="shoal"):`` runs
``Parallel`` calls (scikit-learn's ``n_jobs=`` too) on the default client.

joblib is optional and slow to import, so ``import shoal`` does not import
it: the backend is registered when joblib is imported (now, if it already
was).
"""

from __future__ import annotations

import importlib.abc
import importlib.util
import sys
import threading
from typing import Any


def register() -> None:
    """Register the ``"shoal"`` backend with joblib (imports joblib)."""
    from joblib import register_parallel_backend

    register_parallel_backend("shoal", _backend_class())


_cls: Any = None


def _backend_class() -> Any:
    """The backend class, made on first use (it subclasses joblib's)."""
    global _cls
    if _cls is not None:
        return _cls
    from joblib._parallel_backends import AutoBatchingMixin, ParallelBackendBase

    from .core import context

    class ShoalBackend(AutoBatchingMixin, ParallelBackendBase):
        """Runs joblib's batches as shoal tasks on a client.

        Parameters
        ----------
        client
            The client to use (default: the default client, found when a
            ``Parallel`` call starts).
        **submit_kwargs
            Options for every task, as ``Client.submit`` takes them.

        """

        supports_retrieve_callback = True
        supports_timeout = True
        default_n_jobs = -1

        def __init__(self, client: Any = None, **submit_kwargs: Any):
            super().__init__()
            self._client = client
            self._submit_kwargs = {"pure": False, **submit_kwargs}
            self._futures: set[Any] = set()
            self._lock = threading.Lock()

        @property
        def client(self) -> Any:
            return context.default_client(self._client)

        def effective_n_jobs(self, n_jobs: int | None) -> int:
            threads = sum(self.client.nthreads().values())
            if n_jobs is None or n_jobs < 0:
                return max(threads, 1)
            if n_jobs == 0:
                raise ValueError("n_jobs == 0 in Parallel has no meaning")
            return n_jobs

        def configure(self, n_jobs: int = 1, parallel: Any = None, **backend_args: Any) -> int:
            self.parallel = parallel
            return self.effective_n_jobs(n_jobs)

        def submit(self, func: Any, callback: Any = None) -> Any:
            future = self.client.submit(func, **self._submit_kwargs)
            with self._lock:
                self._futures.add(future)

            def done(f: Any) -> None:
                with self._lock:
                    self._futures.discard(f)
                if callback is not None:
                    callback(f)

            future.add_done_callback(done)
            return future

        apply_async = submit  # joblib before 1.3

        def retrieve_result_callback(self, out: Any) -> Any:
            return out.result()

        def retrieve_result(self, out: Any, timeout: float | None = None) -> Any:
            return out.result(timeout)

        def abort_everything(self, ensure_ready: bool = True) -> None:
            with self._lock:
                futures, self._futures = list(self._futures), set()
            if futures:
                self.client.cancel(futures)

        def get_nested_backend(self) -> tuple[Any, int]:
            return ShoalBackend(), -1

        def __reduce__(self) -> Any:
            return (ShoalBackend, ())

    _cls = ShoalBackend
    return _cls


class _Finder(importlib.abc.MetaPathFinder):
    """Registers the backend right after joblib is imported."""

    def find_spec(self, fullname: str, path: Any, target: Any = None) -> Any:
        if fullname != "joblib":
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(fullname)
        if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return spec
        loader = spec.loader
        original = loader.exec_module

        def exec_module(module: Any) -> None:
            original(module)
            try:
                register()
            except Exception:  # never break the user's import of joblib
                pass

        loader.exec_module = exec_module  # type: ignore[method-assign]
        return spec


def install() -> None:
    """Register now if joblib is imported, else when it is."""
    if "joblib" in sys.modules:
        register()
    elif not any(isinstance(f, _Finder) for f in sys.meta_path):
        sys.meta_path.insert(0, _Finder())
