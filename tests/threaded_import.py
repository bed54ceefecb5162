"""A package that starts a thread when imported (as some clients of
services do): a process holding it cannot fork safely."""

import threading

_stop = threading.Event()
threading.Thread(target=_stop.wait, name="threaded-import", daemon=True).start()
