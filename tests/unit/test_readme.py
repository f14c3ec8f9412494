"""The README's configuration table lists every setting producer/settings.py reads."""

from producer.settings import Settings
from tests.helpers import REPO


def test_every_environment_variable_is_documented() -> None:
    names = set(Settings.variables())
    assert "CELERY_BROKER_URL" in names
    table = (REPO / "README.md").read_text().split("## Operations", 1)[1]
    missing = sorted(n for n in names if f"| `{n}` |" not in table)
    assert not missing, f"add these to README.md's configuration table: {missing}"
