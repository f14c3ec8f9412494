"""Messages no Celery producer would send, published raw: never run, dead-lettered."""

import pickle
import uuid

import msgpack
import pika

import celeryconfig
from producer import Client
from tests.helpers import Vhost, Worker, wait_for
from tests.reliability.conftest import record


def _headers(task: str, task_id: str) -> dict:
    return {"lang": "py", "task": task, "id": task_id, "root_id": task_id, "retries": 0,
            "argsrepr": "()", "kwargsrepr": "{}", "origin": "poison-test"}  # fmt: skip


POISON = {
    # name: (content type, headers, body)
    "pickle": ("application/x-python-serialize", "speech.ping",
               pickle.dumps(([], {}, {"callbacks": None}))),
    "garbage": ("application/x-msgpack", "speech.asr", b"\xc1\xc1 not msgpack \xff"),
    "json": ("application/json", "speech.ping", b'[[], {}, {}]'),
    "unknown task": ("application/x-msgpack", "speech.format_disk",
                     msgpack.packb([[], {}, {}])),
    "body not a list": ("application/x-msgpack", "speech.asr", msgpack.packb(42)),
    "no task header": ("application/x-msgpack", None, msgpack.packb([[], {}, {}])),
}  # fmt: skip


def test_poison_messages_are_dead_lettered_and_never_run(own_vhost: Vhost) -> None:
    # Given a worker on the asr queue (its start declares the dead-letter queue)
    worker = Worker(own_vhost.url, "asr", name="poisoned").start()
    conn = pika.BlockingConnection(pika.URLParameters(own_vhost.url))
    channel = conn.channel()
    try:
        # When each kind of poison is published straight to the queue
        ids = {}
        for name, (content_type, task, body) in POISON.items():
            ids[name] = task_id = str(uuid.uuid4())
            headers = _headers(task, task_id) if task else {}
            props = pika.BasicProperties(
                content_type=content_type, content_encoding="binary",
                headers=headers, delivery_mode=2, correlation_id=task_id,
            )  # fmt: skip
            channel.basic_publish(celeryconfig.EXCHANGE_NAME, "asr", body, props)
        # Then every one of them reaches the dead-letter queue
        dead = celeryconfig.DEAD_LETTER_NAME
        wait_for(
            lambda: own_vhost.queues().get(dead, 0) >= len(POISON),
            30,
            lambda: f"{len(POISON)} dead letters (the queues: {own_vhost.queues()})",
            0.5,
        )
        assert own_vhost.queues().get(dead) == len(POISON)
        # And none ran, and the worker still serves
        log = worker.log()
        for task_id in ids.values():
            assert f"{task_id}] succeeded" not in log
        assert worker.alive()
        with Client(own_vhost.url) as client:
            assert client.ping("asr")["worker"].startswith("poisoned@")
        # And the operator can see why each was dead-lettered
        reasons = []
        for _ in POISON:
            method, props, _ = channel.basic_get(dead, auto_ack=True)
            assert method is not None
            reasons.append(props.headers["x-first-death-reason"])
        assert set(reasons) == {"rejected"}
        record("poison", kinds=len(POISON), dead_lettered=len(POISON), executed=0)
    finally:
        conn.close()
        worker.stop()


def test_a_request_that_kills_its_worker_every_time_stops_at_the_delivery_limit(
    own_vhost: Vhost,
) -> None:
    # Given a worker whose every child is killed while it holds the request
    # (simulated: kill the worker while a long request runs, each time it is redelivered)
    import numpy as np
    import soundfile as sf

    from tests.helpers import DATA

    long = np.concatenate([sf.read(DATA / "fox_kal16.wav", dtype="float32")[0]] * 12)
    import io

    buf = io.BytesIO()
    sf.write(buf, long, 16000, format="WAV")
    with Client(own_vhost.url) as client:
        client._declare_topology()
        sig = client.app.signature("speech.asr", args=[buf.getvalue()])
        result = sig.apply_async(queue="asr", expires=600)
        deliveries = 0
        dead = celeryconfig.DEAD_LETTER_NAME
        received = f"{result.id}] received"
        for attempt in range(celeryconfig.max_redeliveries + 3):
            if own_vhost.queues().get(dead, 0):
                break
            worker = Worker(own_vhost.url, "asr", name=f"doomed{attempt}").start()
            # it gets the request, unless the broker dead-letters it instead of delivering
            wait_for(
                lambda w=worker: received in w.log() or own_vhost.queues().get(dead, 0),
                15,
                f"{worker.name}: {received}",
                0.2,
            )
            deliveries += received in worker.log()
            worker.kill()
            # The broker takes the request back: ready again, or dead-lettered at the limit
            wait_for(lambda: _back(own_vhost, dead), 15, "the request back in a queue")
        # Then after the first delivery and max_redeliveries more it is dead-lettered
        # instead of looping for ever
        assert own_vhost.queues().get(dead) == 1
        assert own_vhost.queues()["asr"] == 0
        assert deliveries == celeryconfig.max_redeliveries + 1
        record("redelivery_cap", deliveries=deliveries, dead_lettered=1)


def _back(vhost: Vhost, dead: str) -> bool:
    queues = vhost.queues()
    return queues.get("asr", 0) + queues.get(dead, 0) == 1
