"""Where callbacks may go: inside addresses refused unless allowed (jobs/callbacks.py)."""

import pytest

from producer.servers.jobs.callbacks import CallbackRefused, Policy


@pytest.mark.parametrize(
    ("url", "kind"),
    [
        ("http://169.254.169.254/latest/meta-data/", "link-local"),  # cloud metadata
        ("http://127.0.0.1:15672/api/", "loopback"),  # e.g. the broker's management port
        ("http://localhost:8000/hook", "loopback"),  # a name that resolves inside
        ("http://[::1]/hook", "loopback"),
        ("http://0.0.0.0/hook", "unspecified"),
        ("http://224.0.0.1/hook", "multicast"),
        ("http://[::ffff:127.0.0.1]/hook", "loopback"),  # IPv4 dressed as IPv6
    ],
)
def test_inside_addresses_are_refused_by_default(url: str, kind: str) -> None:
    with pytest.raises(CallbackRefused, match=f"a {kind} address; callbacks go there only if"):
        Policy().check(url)


def test_a_backend_subnet_is_reachable_and_allowed_networks_and_names_open_the_rest() -> None:
    assert Policy().check("http://10.1.2.3:9000/hook") == ("10.1.2.3", 9000, "10.1.2.3")
    allowed = Policy.parse("127.0.0.1/32, fd00::/8")
    assert allowed.check("http://127.0.0.1:8080/x")[2] == "127.0.0.1"
    with pytest.raises(CallbackRefused):
        allowed.check("http://169.254.169.254/")  # only what is listed
    assert Policy.parse("localhost").check("https://localhost/hook")[:2] == ("localhost", 443)


def test_a_name_that_does_not_resolve_is_refused() -> None:
    with pytest.raises(CallbackRefused, match="does not resolve"):
        Policy().check("http://no-such-host.invalid/hook")
