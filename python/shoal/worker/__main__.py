"""``python -m shoal.worker`` starts a worker (see :mod:`shoal.worker.main`)."""

from .main import main

main()
