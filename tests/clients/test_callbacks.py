"""Job callbacks cannot reach inside the gateway's network: refused at submission unless
SPEECH_CALLBACK_ALLOW lists them, and never sent on by a redirect."""

import time
from pathlib import Path

import httpx
import pytest

from tests.clients.jobs_helpers import Receiver, job_gateway, sqlite_rows, submit, wait_state
from tests.helpers import DATA, wait_for

pytestmark = pytest.mark.usefixtures("asr_worker")
FOX = (DATA / "fox_kal16.wav").read_bytes()


def test_inside_addresses_are_refused_at_submission(broker_url: str, tmp_path: Path) -> None:
    # Given a gateway that allows no inside address (the default)
    gateway = job_gateway(broker_url, tmp_path / "data", SPEECH_CALLBACK_ALLOW="")
    try:
        for callback, kind in [
            ("http://169.254.169.254/latest/meta-data/", "link-local"),
            ("http://127.0.0.1:15672/api/users", "loopback"),
            ("http://localhost:8000/hook", "loopback"),  # a name that resolves inside
        ]:
            # When a job names such a callback
            res = httpx.post(
                f"{gateway.url}/v1/jobs",
                data={"algorithm": "asr", "callback": callback},
                files={"audio": FOX},
                timeout=30,
            )
            # Then it is refused with 400, saying why, and nothing is stored
            assert res.status_code == 400, res.text
            error = res.json()["error"]
            assert error["type"] == "CallbackRefused" and f"a {kind} address" in error["message"]
        assert sqlite_rows(tmp_path / "data") == (0, 0)
    finally:
        gateway.stop()


def test_an_allowed_receiver_is_called_and_a_redirect_is_not_followed(
    broker_url: str, tmp_path: Path
) -> None:
    # Given a receiver on an allowed loopback address that redirects to another one
    inner = Receiver()
    outer = Receiver(redirect_to=inner.url)
    gateway = job_gateway(broker_url, tmp_path / "data", SPEECH_CALLBACK_ATTEMPTS="1")
    try:
        # When a job's callback goes to it
        job_id = submit(gateway.url, "asr", FOX, callback=outer.url)
        wait_state(gateway.url, job_id, ("done",), timeout=60)
        wait_for(lambda: outer.for_job(job_id), 30, "the callback POST")
        # Then it got the POST, answered 302, and the redirect's target got nothing
        assert [p["status"] for p in outer.for_job(job_id)] == [302]
        time.sleep(1)  # "never" has no event to wait for: a redirect followed would be here by now
        assert inner.posts == []
    finally:
        gateway.stop()
        outer.close()
        inner.close()
