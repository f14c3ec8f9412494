"""Speech algorithms served as Celery tasks: `celery -A tasks worker -Q asr` (one queue per
algorithm: the built-ins asr, vad, speaker, features, denoise, and every installed plugin's).
"""

import tasks.logs  # noqa: F401  (one log line per task)
from producer.algorithms.catalog import catalog
from tasks import declarations, ping, plugins  # noqa: F401  (commands, speech.ping, checks)
from tasks.base import app, register

for _algorithm in catalog().algorithms.values():
    register(_algorithm)

__all__ = ["app"]
