"""The rules `producer permissions` prints, and RabbitMQ's refusals read as AccessDenied."""

import re

import pytest
from amqp.exceptions import AccessRefused

from producer.cli.permissions import names
from producer.errors import AccessDenied, InvalidInput, access_denied
from producer.permissions import ROLES, rules


def _matches(regex: str, name: str) -> bool:
    return re.fullmatch(regex, name) is not None


def test_a_worker_of_vad_reaches_its_queue_and_no_other() -> None:
    (worker,) = rules(names(), ["worker"], ["vad"])
    assert worker.user == "speech-worker-vad"
    for right in (worker.configure, worker.read):
        assert _matches(right, "vad") and not _matches(right, "asr")
    assert _matches(worker.write, "amq.default")  # results go to the callers' reply queues
    assert _matches(worker.read, "vad@host.celery.pidbox")


def test_callers_publish_to_the_exchange_and_read_only_their_reply_queues() -> None:
    found = {r.role: r for r in rules(names())}
    assert set(found) == set(ROLES)
    for role in ("producer", "gateway", "bridge"):
        rule = found[role]
        assert _matches(rule.write, "speech") and _matches(rule.read, "speech.reply.1234")
        for queue in ("vad", "asr", "speech.dead"):
            assert not _matches(rule.read, queue) and not _matches(rule.configure, queue)
    assert not _matches(found["producer"].write, "amq.default")
    assert _matches(found["bridge"].read, "rpc.speaker.verify")
    assert not _matches(found["monitoring"].write, "speech")
    assert found["monitoring"].tags == "management"


def test_the_doors_that_learn_may_ask_the_workers_and_a_producer_may_not() -> None:
    found = {r.role: r for r in rules(names())}
    # the gateway and the bridge broadcast the question and read the answers on their own
    # reply queue; the bridge serves the rpc queue of any operation, learnt ones included
    for role in ("gateway", "bridge"):
        rule = found[role]
        assert _matches(rule.write, "celery.pidbox")
        assert _matches(rule.configure, "0d1f.reply.celery.pidbox")
        assert _matches(rule.read, "reply.celery.pidbox")
    assert _matches(found["bridge"].read, "rpc.echo") and _matches(
        found["bridge"].configure, "rpc.echo"
    )
    assert not _matches(found["gateway"].read, "rpc.echo")
    # a producer sends no control command
    assert not _matches(found["producer"].write, "celery.pidbox")


def test_unknown_roles_and_algorithms_are_refused() -> None:
    with pytest.raises(InvalidInput, match="unknown algorithm"):
        rules(names(), ["worker"], ["nope"])
    with pytest.raises(InvalidInput, match="unknown role"):
        rules(names(), ["admin"])


def test_a_403_names_the_user_the_resource_and_the_right() -> None:
    text = "ACCESS_REFUSED - access to exchange 'speech' in vhost 'v' refused for user 'u'"
    denied = access_denied(AccessRefused(text, (60, 40)))  # Basic.publish
    assert isinstance(denied, AccessDenied)
    assert str(denied).startswith("user 'u' may not write exchange 'speech' in vhost 'v'")
    bind = "ACCESS_REFUSED - access to queue 'asr' in vhost 'v' refused for user 'w'"
    assert str(access_denied(AccessRefused(bind, (50, 20)))).startswith(  # Queue.bind
        "user 'w' may not write queue 'asr'"
    )
    assert access_denied(ValueError("nothing to do with rights")) is None
