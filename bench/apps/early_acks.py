"""The worker acking each request when it starts, not after its answer (no late acks)."""

from tasks import app

app.conf.task_acks_late = False
app.conf.task_reject_on_worker_lost = False
__all__ = ["app"]
