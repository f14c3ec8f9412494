"""Fresh Python environments with plugins installed, as a user would install them.

A venv made by `python -m venv` sees none of the project's packages; one .pth file gives
it the site-packages of the environment running the tests (found from sys.prefix, so the
same wherever the project's venv lives) and the platform's checkout, nothing else. A
plugin is then installed with that environment's own pip, editable and offline
(`--no-deps --no-build-isolation --no-index`: setuptools comes from the .pth too), so its
entry point is known to that environment alone: the test run's own interpreter never sees
it.
"""

import subprocess
import sys
import sysconfig
from pathlib import Path

from tests.helpers import REPO

EXAMPLES = REPO / "examples"


class FreshEnv:
    """A venv in `root` that sees the test run's packages and the platform, no plugin."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.python = str(root / "bin" / "python")

    def create(self) -> "FreshEnv":
        subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(self.root)], check=True)
        paths = sysconfig.get_paths(vars={"base": sys.prefix, "platbase": sys.prefix})
        shared = dict.fromkeys(str(Path(paths[k]).resolve()) for k in ("purelib", "platlib"))
        lines = [*shared, str(REPO)]
        (self.site_packages() / "speech-platform.pth").write_text("\n".join(lines) + "\n")
        return self

    def site_packages(self) -> Path:
        code = "import sysconfig; print(sysconfig.get_paths()['purelib'])"
        out = subprocess.run([self.python, "-c", code], capture_output=True, text=True, check=True)
        return Path(out.stdout.strip())

    def install(self, project: Path) -> None:
        """`pip install -e project` in this environment, offline."""
        cmd = [self.python, "-m", "pip", "install", "--quiet", "--no-deps"]
        cmd += ["--no-build-isolation", "--no-index", "--editable", str(project)]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stdout + done.stderr

    def run(self, *args: str, env: dict[str, str] | None = None, cwd: Path | None = None,
            timeout: float = 120) -> subprocess.CompletedProcess[str]:  # fmt: skip
        return subprocess.run(
            [self.python, *args], capture_output=True, text=True, timeout=timeout,
            env=env, cwd=cwd or self.root,
        )  # fmt: skip
