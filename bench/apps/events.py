"""The worker sending task events all the time (as it does while Flower watches)."""

from tasks import app

app.conf.worker_send_task_events = True
__all__ = ["app"]
