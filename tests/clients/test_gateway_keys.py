"""Named API keys on a real gateway process: a rotation with both keys, then only the new
one; unknown and missing keys refused; each key held to its own rate; each key's name,
never the key, in the access log and the metrics."""

import re

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


def test_the_access_log_and_the_metrics_name_the_key_never_the_key(broker_url: str) -> None:
    # Given a gateway with two keys, logging its requests
    env = {"SPEECH_API_KEYS": "backend=k-secret-1,batch=k-secret-2"}
    gateway = Gateway(broker_url, env=env, access_log=True).start()
    try:
        # When backend asks twice, batch once, and a caller with a wrong key once
        for key in ("k-secret-1", "k-secret-1", "k-secret-2", "k-wrong"):
            _algorithms(gateway, key)
        metrics = httpx.get(f"{gateway.url}/metrics", timeout=10)
        # Then the metrics count each key's requests by name, and the refused one under no key
        assert metrics.status_code == 200, metrics.text
        counted = {
            (m["key"], m["status"]): int(m["n"])
            for m in re.finditer(
                r'speech_gateway_requests_total\{key="(?P<key>[^"]*)",route="/v1/algorithms",'
                r'operation="",status="(?P<status>\d+)"\} (?P<n>\d+)',
                metrics.text,
            )
        }
        assert counted == {("backend", "200"): 2, ("batch", "200"): 1, ("", "401"): 1}, metrics.text
        # And every request has a line in the log with its key's name, and no key appears
        gateway.wait_until(lambda: gateway.log().count('"GET /v1/algorithms"') == 4)
        lines = [line for line in gateway.log().splitlines() if '"GET /v1/algorithms"' in line]
        assert [line.split("key=")[1].split()[0] for line in lines] == [
            "backend", "backend", "batch", "-",
        ], lines  # fmt: skip
        assert all(re.search(r'" (200|401) \d+\.\d{3}s$', line) for line in lines), lines
        assert "k-secret" not in gateway.log() + metrics.text
    finally:
        gateway.stop()
