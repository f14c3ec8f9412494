"""The gateway and the bridge as real `python -m producer` processes, for client tests."""

import os
import ssl
import sys
import tempfile
import uuid
from pathlib import Path
from typing import Any

import httpx

from tests.helpers import REPO, Service, free_port


class Producer(Service):
    """`python -m producer <command>` in its own process group, logging to tests/artifacts;
    `python` and `cwd` run it from another environment (tests/plugins: a fresh venv)."""

    def __init__(
        self,
        broker_url: str,
        *args: str,
        env: dict[str, str] | None = None,
        python: str = sys.executable,
        cwd: Path = REPO,
    ) -> None:
        super().__init__(
            [python, "-m", "producer", *args],
            {**os.environ, "CELERY_BROKER_URL": broker_url, **(env or {})},
            f"{args[0]}-{uuid.uuid4().hex[:6]}.log",
            cwd=cwd,
        )

    def start(self) -> "Producer":
        self.launch()
        return self


class Gateway(Producer):
    """`verify`: the gateway serves HTTPS (SPEECH_GATEWAY_TLS_* in `env`), its certificate
    checked with this context."""

    def __init__(
        self,
        broker_url: str,
        env: dict[str, str] | None = None,
        access_log: bool = False,
        verify: ssl.SSLContext | None = None,
        **where: Any,
    ) -> None:
        self.port = free_port()
        self.verify: ssl.SSLContext | bool = verify or True
        self.url = f"{'https' if verify else 'http'}://127.0.0.1:{self.port}"
        args = ("serve", "--port", str(self.port), *(() if access_log else ("--no-access-log",)))
        # Its spool and job store in a folder of its own, never in the working tree
        env = {"SPEECH_DATA_DIR": tempfile.mkdtemp(prefix="speech-gateway-"), **(env or {})}
        super().__init__(broker_url, *args, env=env, **where)

    def start(self) -> "Gateway":
        super().start()
        self.wait_until(self._answers)
        return self

    def _answers(self) -> bool:
        try:
            got = httpx.get(f"{self.url}/openapi.json", timeout=1, verify=self.verify)
            return got.status_code == 200
        except httpx.TransportError:
            return False


class Bridge(Producer):
    def __init__(
        self,
        broker_url: str,
        concurrency: int = 8,
        env: dict[str, str] | None = None,
        **where: Any,
    ) -> None:
        args = ("bridge", "--concurrency", str(concurrency))
        super().__init__(broker_url, *args, env=env, **where)

    def start(self) -> "Bridge":
        super().start()
        self.wait_until(lambda: "bridge consuming" in self.log())
        return self

    def start_process(self) -> "Bridge":
        """Start without waiting for it to consume (for bridges expected to fail)."""
        super().start()
        return self
