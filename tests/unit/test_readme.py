"""The configuration page (docs/operations/configuration.md) lists every setting
celeryconfig.py reads."""

import re

from tests.docs import page
from tests.helpers import REPO


def test_every_environment_variable_is_documented() -> None:
    source = (REPO / "celeryconfig.py").read_text()
    names = set(re.findall(r'_env(?:_int|_float|_bool)?\(\s*"([A-Z0-9_]+)"', source))
    assert "CELERY_BROKER_URL" in names
    table = page("operations/configuration.md")
    missing = sorted(n for n in names if f"| `{n}` |" not in table)
    assert not missing, f"add these to docs/operations/configuration.md's table: {missing}"
