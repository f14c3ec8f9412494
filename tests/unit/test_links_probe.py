"""How a publishing link tells a hung node from one whose channel waits for its queue
(producer.client.links.Link.probe), without a broker: the link's connection is a stand-in."""

import time
from typing import Any

import pytest

from producer.client.links import Link, NodeSilent, PublishLate

URL = "amqp://guest:guest@10.0.0.1:5672//"


class _Sock:
    def settimeout(self, timeout: float) -> None:
        pass


class _Channel:
    def __init__(self, answers: bool) -> None:
        self.answers = answers
        self.closed = False

    def basic_qos(self, *args: Any) -> None:
        if not self.answers:
            raise TimeoutError("timed out")

    def close(self) -> None:
        self.closed = True


class _Conn:
    """A node that answers on a fresh channel (`node_answers`) or not; `confirm_after`:
    seconds until the publish is confirmed (None: never)."""

    def __init__(self, node_answers: bool, link: "Link", confirm_after: float | None) -> None:
        self.node_answers, self.link = node_answers, link
        self.confirm_at = None if confirm_after is None else time.monotonic() + confirm_after
        self.transport = type("T", (), {"sock": _Sock()})()
        self.fresh: list[_Channel] = []

    def channel(self) -> _Channel:
        if not self.node_answers:
            raise TimeoutError("timed out")
        self.fresh.append(_Channel(True))
        return self.fresh[-1]

    def drain_events(self, timeout: float | None = None) -> None:
        if self.confirm_at is not None and time.monotonic() >= self.confirm_at:
            self.link._on_ack(self.link._sent, False)
            return
        time.sleep(min(timeout or 0.01, 0.01))
        raise TimeoutError()


def _link(*, node_answers: bool, channel_answers: bool, confirm_after: float | None) -> Link:
    link = Link.__new__(Link)
    link.url, link.blocked = URL, None
    link._confirmed = link._nacked = 0
    link._sent = 1
    link.conn = _Conn(node_answers, link, confirm_after)  # type: ignore[assignment]
    link.channel = _Channel(channel_answers)  # type: ignore[assignment]
    return link


def test_a_node_that_answers_nothing_is_silent() -> None:
    link = _link(node_answers=False, channel_answers=False, confirm_after=None)
    with pytest.raises(NodeSilent):
        link.probe(time.monotonic() + 0.1)


def test_a_node_whose_channel_waits_for_its_queue_is_alive() -> None:
    # (RabbitMQ's quorum-queue client holds a channel's first publish while the queue
    # elects a leader: the channel answers nothing, a fresh channel does)
    link = _link(node_answers=True, channel_answers=False, confirm_after=None)
    assert link.probe(time.monotonic() + 0.1) is False
    assert [c.closed for c in link.conn.fresh] == [True]  # type: ignore[attr-defined]
    link = _link(node_answers=True, channel_answers=True, confirm_after=None)
    assert link.probe(time.monotonic() + 0.1) is True


def test_a_held_channel_is_waited_for_until_it_confirms() -> None:
    # Given a link whose channel is held, then confirms after 4 patiences
    patience = 0.05
    link = _link(node_answers=True, channel_answers=False, confirm_after=4 * patience)
    # Then the publish is confirmed on it, the node not left
    link._await(1, time.monotonic() + 1.0, patience)
    assert link._confirmed == 1


def test_a_held_channel_is_waited_for_no_longer_than_the_deadline() -> None:
    patience = 0.05
    link = _link(node_answers=True, channel_answers=False, confirm_after=None)
    start = time.monotonic()
    with pytest.raises(PublishLate):
        link._await(1, start + 0.3, patience)
    assert time.monotonic() - start < 0.5


def test_a_node_that_answers_but_never_confirms_is_left_after_two_patiences() -> None:
    # (a node cut off from its queue's majority: its channel answers, no confirm comes)
    patience = 0.05
    link = _link(node_answers=True, channel_answers=True, confirm_after=None)
    start = time.monotonic()
    with pytest.raises(NodeSilent, match="cut off"):
        link._await(1, start + 5.0, patience)
    assert time.monotonic() - start < 1.0
