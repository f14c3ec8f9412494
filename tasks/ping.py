"""`speech.ping`: answers on whichever algorithm queue it is sent to."""

import os
import socket
import time
from typing import Any

from tasks.base import app


@app.task(name="speech.ping", typing=False)
def ping() -> dict[str, Any]:
    """Who answered and when: proves a queue is served end to end."""
    return {
        "host": socket.gethostname(),
        "worker": ping.request.hostname,
        "pid": os.getpid(),
        "time": time.time(),
    }
