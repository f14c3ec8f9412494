"""An explicit broker URL must beat the CELERY_BROKER_URL environment variable."""

import pytest

from producer import Client


def test_explicit_broker_url_beats_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    # Given the environment `make test` exports
    monkeypatch.setenv("CELERY_BROKER_URL", "amqp://guest:guest@localhost:5672//")
    # When a Client is given its own URL (a test vhost, a --broker flag)
    with Client("amqp://guest:guest@127.0.0.1:5672/private") as client:
        # Then both directions use it
        for conn in (client.app.connection_for_write(), client.app.connection_for_read()):
            assert conn.as_uri() == "amqp://guest:**@127.0.0.1:5672/private"
