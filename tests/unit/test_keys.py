"""Named API keys and the per-caller rate limit (producer.servers.keys)."""

import pytest

from producer.errors import InvalidSetting
from producer.servers.keys import Keys, RateLimit, parse_keys


def test_keys_are_named_and_compared_whole() -> None:
    keys = Keys(parse_keys("legacy-key", "old=k-1, new=k-2"))
    assert [keys.name_of(k) for k in ("legacy-key", "k-1", "k-2")] == ["default", "old", "new"]
    assert keys.name_of("k-") is None and keys.name_of("") is None and keys.name_of(None) is None
    assert not Keys(parse_keys("", ""))


@pytest.mark.parametrize("given", ["old", "=k", "old=", "a=1,a=2"])
def test_a_malformed_key_list_names_the_setting(given: str) -> None:
    with pytest.raises(InvalidSetting, match="SPEECH_API_KEYS"):
        parse_keys("", given)


def test_each_caller_has_its_own_bucket() -> None:
    now = [0.0]
    limit = RateLimit(rate=2.0, burst=3, clock=lambda: now[0])
    assert [limit.take("key:a") for _ in range(3)] == [0.0, 0.0, 0.0]  # the burst
    assert limit.take("key:a") == pytest.approx(0.5)  # one token comes every 1/rate s
    assert limit.take("key:b") == 0.0  # another caller is not held back
    now[0] = 0.5
    assert limit.take("key:a") == 0.0
