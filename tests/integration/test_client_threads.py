"""A Client shared by short-lived threads: each thread's replies reach that thread."""

import threading

import pytest

from producer import Client

pytestmark = pytest.mark.usefixtures("vad_worker")


def test_threads_that_reuse_a_finished_threads_ident_get_their_replies(client: Client) -> None:
    # Given threads started one after another: Python reuses the idents of finished ones,
    # and Celery named the reply queue after the ident (a new thread met the old one's
    # consumer: lost replies, or NOT_FOUND on consume)
    idents, answers, errors = [], [], []

    def call() -> None:
        idents.append(threading.get_ident())
        try:
            answers.append(client.ping("vad", timeout=10)["worker"])
        except Exception as exc:  # noqa: BLE001  (collected, reported by the assert below)
            errors.append(exc)

    for _ in range(6):
        thread = threading.Thread(target=call)
        thread.start()
        thread.join(30)
    # Then every call got its answer
    assert errors == [] and len(answers) == 6
    assert len(set(idents)) < 6, "no ident was reused: the test proved nothing"
