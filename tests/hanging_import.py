"""A package whose import never ends in a pool's template (where
``SHOAL_PARENT_PID`` is set), as one waiting on an unreachable service
would; this test process imports it at once."""

import os
import threading

if os.environ.get("SHOAL_PARENT_PID"):
    threading.Event().wait()
