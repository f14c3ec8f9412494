"""Asking the workers which algorithms they serve, once or every few seconds.

One-shot doors (`call`, `status`) ask once; long-running ones (gateway, bridge) keep a
`Learner` thread asking every SPEECH_LEARN_SECONDS. The answers go to
producer.algorithms.learnt, which decides what is learnt. A broadcast waits for answers
until none has come for LEARN_REPLY_SECONDS (kombu's pidbox reads replies with that
timeout each), so a round costs about that long however many workers answer.
"""

import logging
import threading
from typing import Any

from producer.algorithms.learnt import COMMAND, Learnt, learnt
from producer.settings import settings

log = logging.getLogger("speech.learn")
# Seconds a round waits after the last answer: workers answer a broadcast in milliseconds.
LEARN_REPLY_SECONDS = 1.0


def ask_workers(app: Any, timeout: float = LEARN_REPLY_SECONDS) -> dict[str, Any]:
    """{worker: {algorithm: declaration}} from every worker that answered within `timeout`."""
    replies = app.control.broadcast(COMMAND, reply=True, timeout=timeout) or []
    answers: dict[str, Any] = {}
    for reply in replies:
        if isinstance(reply, dict):
            answers.update(reply)
    return answers


def learn_once(client: Any, registry: Learnt | None = None) -> Learnt:
    """Ask the workers once (a one-shot door); a broker that does not answer leaves the
    registry as it was, the local declarations still in force."""
    registry = registry or learnt()
    try:
        registry.update(ask_workers(client.app))
    except Exception as exc:  # noqa: BLE001  (no broker, no answer: the local catalog stands)
        # the door's next step meets the same broker and says what is wrong with it
        log.info("could not ask the workers for their algorithms: %s", exc)
    return registry


class Learner:
    """A daemon thread asking the workers every `seconds` (SPEECH_LEARN_SECONDS)."""

    def __init__(self, client: Any, registry: Learnt | None = None, seconds: float | None = None):
        self.client = client
        self.registry = registry or learnt()
        self.seconds = settings().learn_seconds if seconds is None else seconds
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, name="speech-learner", daemon=True)

    def start(self) -> "Learner":
        if self.seconds > 0:
            self.thread.start()
        return self

    def stop(self) -> None:
        self.stopping.set()

    def _run(self) -> None:
        failing = False
        while not self.stopping.is_set():
            before = set(self.registry.learnt)
            try:
                self.registry.update(ask_workers(self.client.app))
                failing = False
            except Exception as exc:  # noqa: BLE001  (asked again next round)
                if not failing:  # once per outage, not every round
                    log.warning("could not ask the workers for their algorithms: %s", exc)
                failing = True
            for name in sorted(set(self.registry.learnt) - before):
                log.info("learnt %r from its workers", name)
            self.stopping.wait(self.seconds)
