"""The reply path's pure parts: which broker address is tried first after a loss."""

from producer import Client, SpeechError
from producer.client.replies import ReplyBackend, ReplyPathLost, _rotate


def test_rotation_starts_the_list_at_the_next_address() -> None:
    urls = "amqp://a//;amqp://b//;amqp://c//"
    assert _rotate(urls, 0) == urls
    assert _rotate(urls, 1) == "amqp://b//;amqp://c//;amqp://a//"
    assert _rotate(urls, 5) == "amqp://c//;amqp://a//;amqp://b//"
    assert _rotate("amqp://only//", 3) == "amqp://only//"


def test_a_lost_reply_path_is_a_platform_error() -> None:
    assert issubclass(ReplyPathLost, SpeechError)


def test_a_client_keeps_one_thread_safe_reply_backend_and_keeps_a_url_list() -> None:
    # Given a Client given three broker addresses (nothing is connected yet)
    urls = "amqp://guest:guest@127.0.0.1:1/%2F;amqp://guest:guest@127.0.0.1:2/%2F"
    client = Client(urls)
    # Then every thread shares one ReplyBackend, and the whole list reaches Celery
    assert isinstance(client.app.backend, ReplyBackend)
    assert client.app.backend is client.replies
    assert client.app.conf.broker_read_url == client.app.conf.broker_write_url == urls
    client.close()
