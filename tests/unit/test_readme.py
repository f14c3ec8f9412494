"""The README's configuration table lists every setting celeryconfig.py reads."""

import re

from tests.helpers import REPO


def test_every_environment_variable_is_documented() -> None:
    source = (REPO / "celeryconfig.py").read_text()
    names = set(re.findall(r'_env(?:_int|_float|_bool)?\(\s*"([A-Z0-9_]+)"', source))
    assert "CELERY_BROKER_URL" in names
    table = (REPO / "README.md").read_text().split("## Operations", 1)[1]
    missing = sorted(n for n in names if f"| `{n}` |" not in table)
    assert not missing, f"add these to README.md's configuration table: {missing}"
