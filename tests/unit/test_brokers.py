"""Broker URL lists and the pika parameters built from them (no broker needed)."""

from dataclasses import replace

import pytest

import producer.settings
from producer.brokers import broker_urls, management_url, safe_url, virtual_host
from producer.servers.bridge.links import pika_parameters

H1 = "amqp://guest:guest@h1:5672/v"
H2 = "amqp://guest:guest@h2:5673/v"


def _heartbeat(monkeypatch: pytest.MonkeyPatch, seconds: float) -> None:
    changed = replace(producer.settings.settings(), heartbeat=seconds)
    monkeypatch.setattr(producer.settings, "_current", changed)


def test_a_semicolon_list_splits_into_urls_and_blanks_are_dropped() -> None:
    assert broker_urls(f" {H1} ; {H2};;") == [H1, H2]
    assert broker_urls(H1) == [H1]
    assert broker_urls([f"{H1};{H2}", H2]) == [H1, H2, H2]
    assert broker_urls("") == []


@pytest.mark.parametrize(
    ("url", "vhost"),
    [
        ("amqp://guest:guest@localhost:5672//", "/"),  # how kombu renders the default
        ("amqp://guest:guest@localhost:5672/", "/"),
        ("amqp://guest:guest@localhost:5672", "/"),
        ("amqp://guest:guest@localhost:5672/%2F", "/"),
        ("amqp://guest:guest@localhost:5672/speech", "speech"),
        ("amqp://guest:guest@localhost:5672/a%2Fb", "a/b"),
    ],
)
def test_the_vhost_is_read_as_kombu_reads_it(url: str, vhost: str) -> None:
    assert virtual_host(url) == vhost
    assert pika_parameters(url).virtual_host == vhost


def test_pika_parameters_carry_credentials_heartbeat_and_one_attempt(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _heartbeat(monkeypatch, 10.0)
    params = pika_parameters("amqp://user:p%40ss@h1:5673/v")
    assert (params.host, params.port) == ("h1", 5673)
    assert (params.credentials.username, params.credentials.password) == ("user", "p@ss")
    assert params.heartbeat == 10
    assert params.connection_attempts == 1
    assert params.blocked_connection_timeout > 0
    assert params.socket_timeout == producer.settings.settings().connect_timeout


def test_heartbeat_zero_is_off_and_the_url_query_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    _heartbeat(monkeypatch, 0.0)
    assert pika_parameters(H1).heartbeat == 0
    _heartbeat(monkeypatch, 0.4)  # under a second: still on
    assert pika_parameters(H1).heartbeat == 1
    assert pika_parameters(f"{H1}?heartbeat=30").heartbeat == 30


def test_safe_url_hides_the_password_only() -> None:
    assert safe_url("amqp://guest:s3cret@h1:5672//") == "amqp://guest:***@h1:5672//"
    assert "s3cret" not in safe_url("amqp://u:s3cret@h1/v?heartbeat=5")
    assert safe_url("amqp://h1:5672/v") == "amqp://h1:5672/v"


def test_management_url_is_the_nodes_host_on_15672_with_its_credentials() -> None:
    assert management_url("amqp://u:p%40ss@h2:5673/v") == "http://u:p%40ss@h2:15672"
    assert management_url("amqp://localhost//") == "http://guest:guest@localhost:15672"
