"""``python -m shoal.worker.template``: a pool's worker template (see
:mod:`shoal.worker.template`).
"""

from . import main

main()
