"""The configuration page (docs/operations/configuration.md) lists every setting
producer/settings.py reads."""

from producer.settings import Settings
from tests.docs import page


def test_every_environment_variable_is_documented() -> None:
    names = set(Settings.variables())
    assert "CELERY_BROKER_URL" in names
    table = page("operations/configuration.md")
    missing = sorted(n for n in names if f"| `{n}` |" not in table)
    assert not missing, f"add these to docs/operations/configuration.md's table: {missing}"
