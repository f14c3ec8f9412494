"""Speech algorithms served as Celery tasks: `celery -A tasks worker -Q asr` (or vad,
speaker, features, denoise: one queue per algorithm)."""

import tasks.logs  # noqa: F401  (one log line per task)
from tasks import asr, denoise, features, ping, speaker, vad  # noqa: F401  (registers the tasks)
from tasks.base import app

__all__ = ["app"]
