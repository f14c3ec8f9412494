"""`make demo` (tests/demo.py) on this machine: it proves its own worker answered."""

import subprocess
import sys

from tests.helpers import REPO, rabbitmqctl


def test_the_demo_transcribes_with_its_own_worker_and_leaves_nothing_behind() -> None:
    before = set(rabbitmqctl("list_vhosts").split())
    done = subprocess.run(
        [sys.executable, "-m", "tests.demo"], cwd=REPO, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.count("--- ") == 3 and "quick brown fox" in done.stdout
    assert "all 3 answers came from demo-" in done.stdout
    # its vhost is gone again
    assert {v for v in rabbitmqctl("list_vhosts").split() if v.startswith("speech-demo")} <= before
