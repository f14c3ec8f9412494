"""The worker with Celery's own strategy and request (no queue guard, no header filter)."""

import tasks.guard
from tasks import app

tasks.guard.SpeechTask.Strategy = "celery.worker.strategy:default"
tasks.guard.SpeechTask.Request = "celery.worker.request:Request"
__all__ = ["app"]
