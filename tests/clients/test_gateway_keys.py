"""Named API keys on a real gateway process: a rotation with both keys, then only the new
one; unknown and missing keys refused; each key held to its own rate."""

import httpx

from tests.clients.servers import Gateway


def _algorithms(gateway: Gateway, key: str | None) -> httpx.Response:
    headers = {"X-API-Key": key} if key else {}
    return httpx.get(f"{gateway.url}/v1/algorithms", headers=headers, timeout=30)


def test_keys_rotate_without_downtime_and_unknown_ones_are_refused(broker_url: str) -> None:
    # Given a gateway during a rotation: the old key and the new one
    both = Gateway(broker_url, env={"SPEECH_API_KEYS": "old=k-old,new=k-new"}).start()
    try:
        assert _algorithms(both, "k-old").status_code == 200
        assert _algorithms(both, "k-new").status_code == 200
        # And any other key, or none, is refused
        for key in ("k-nope", "k-ol", None):
            res = _algorithms(both, key)
            assert res.status_code == 401 and res.json()["error"]["type"] == "Unauthorized"
    finally:
        both.stop()
    # When the old key is removed, Then only the new one opens the gateway
    after = Gateway(broker_url, env={"SPEECH_API_KEYS": "new=k-new"}).start()
    try:
        assert _algorithms(after, "k-new").status_code == 200
        assert _algorithms(after, "k-old").status_code == 401
    finally:
        after.stop()


def test_each_key_has_its_own_rate_and_hears_when_to_come_back(broker_url: str) -> None:
    # Given one request per 5 s for each key, in bursts of two
    env = {"SPEECH_API_KEYS": "a=k-a,b=k-b", "SPEECH_RATE_LIMIT": "0.2", "SPEECH_RATE_BURST": "2"}
    gateway = Gateway(broker_url, env=env).start()
    try:
        # When key a makes three requests at once
        statuses = [_algorithms(gateway, "k-a").status_code for _ in range(2)]
        third = _algorithms(gateway, "k-a")
        # Then the third is refused with 429 and told when to come back
        assert statuses == [200, 200] and third.status_code == 429, third.text
        assert third.json()["error"]["type"] == "TooManyRequests"
        assert 1 <= int(third.headers["Retry-After"]) <= 5
        # And key b is not held back by a
        assert _algorithms(gateway, "k-b").status_code == 200
    finally:
        gateway.stop()
