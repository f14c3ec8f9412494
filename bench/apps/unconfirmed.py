"""The worker publishing answers without waiting for publisher confirms."""

from tasks import app

app.conf.broker_transport_options = {}
__all__ = ["app"]
