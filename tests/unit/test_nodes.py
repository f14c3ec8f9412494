"""The order in which the Client tries the broker's nodes (producer.client.links.Nodes)."""

import pytest

from producer.client import links
from producer.client.links import Nodes

A, B, C = (f"amqp://guest:guest@10.0.0.{i}:5672//" for i in (1, 2, 3))


def test_a_node_found_silent_stays_behind_nodes_that_only_nacked() -> None:
    # Given three nodes, the first found silent (a node cut off from the others)
    nodes = Nodes([A, B, C])
    nodes.leave(A, "no confirm")
    assert nodes.preferred() == [B, C, A]
    # When both others nack while their quorum queue elects a leader
    nodes.leave(B, "nacked", soft=True)
    nodes.leave(C, "nacked", soft=True)
    # Then the silent node is still tried last, not first again
    assert nodes.preferred() == [B, C, A]
    assert nodes.left == 3


def test_a_node_left_hard_comes_back_in_turn_once_its_time_away_is_over(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clock = [100.0]
    monkeypatch.setattr(links.time, "monotonic", lambda: clock[0])
    nodes = Nodes([A, B, C])
    nodes.leave(A, "refused")
    clock[0] += links.AWAY_SECONDS / 2
    nodes.leave(B, "hung")
    # Of two nodes away, the one away longest is tried first
    assert nodes.preferred() == [C, A, B]
    clock[0] += links.AWAY_SECONDS / 2 + 0.1
    assert nodes.preferred() == [C, A, B]  # A is back, behind C as left
    nodes.leave(C, "nacked", soft=True)
    assert nodes.preferred() == [A, C, B]


def test_every_listener_hears_of_a_node_left_once_per_leave() -> None:
    heard: list[tuple[str, bool]] = []
    nodes = Nodes(f"{A};{B}")
    nodes.subscribe(lambda url, soft: heard.append((url, soft)))
    nodes.leave(B, "nacked", soft=True)
    nodes.leave(A, "no confirm")
    nodes.leave("amqp://elsewhere//", "not one of ours")
    assert heard == [(B, True), (A, False)]
