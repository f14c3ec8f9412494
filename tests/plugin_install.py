"""Plugins installed for one test's processes only: a distribution's metadata (with its
`speech.algorithms` entry point) and its module written into a folder, and that folder
put on the PYTHONPATH of the workers, gateways and bridges started for the test. This is
what `pip install` leaves in site-packages; the test runner's own catalog is untouched."""

import os
import shutil
from pathlib import Path

PLUGIN = Path(__file__).with_name("plugin") / "speech_echo_demo.py"
DISTRIBUTION = "speech-echo-demo"


def install_echo(folder: Path) -> dict[str, str]:
    """Install the echo test plugin into `folder`; the environment that sees it."""
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy(PLUGIN, folder / PLUGIN.name)
    info = folder / "speech_echo_demo-0.1.dist-info"
    info.mkdir(exist_ok=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {DISTRIBUTION}\nVersion: 0.1\n")
    entry_points = "[speech.algorithms]\necho = speech_echo_demo:ALGORITHM\n"
    (info / "entry_points.txt").write_text(entry_points)
    paths = [str(folder), os.environ.get("PYTHONPATH", "")]
    return {"PYTHONPATH": os.pathsep.join(p for p in paths if p)}
