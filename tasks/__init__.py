"""Speech algorithms served as Celery tasks: `celery -A tasks worker -Q asr`."""

import tasks.logs  # noqa: F401  (one log line per task)
from tasks import asr, ping  # noqa: F401  (registers the tasks)
from tasks.base import app

__all__ = ["app"]
