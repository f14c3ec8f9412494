"""`speech.ping`: answers on whichever algorithm queue it is sent to."""

import os
import socket
import time
from typing import Any

from tasks.base import app


@app.task(name="speech.ping", typing=False)
def ping(echo: str | int | None = None) -> dict[str, Any]:
    """Who answered and when: proves a queue is served end to end. `echo` comes back as
    given, so a caller can match each answer to its own request."""
    return {
        "echo": echo,
        "host": socket.gethostname(),
        "worker": ping.request.hostname,
        "pid": os.getpid(),
        "time": time.time(),
    }
