"""The deployment as an operator runs it: `make images`, `make up`, `make down`, with a
compose project, env file and host ports of the test's own (docker/images.sh).

Every command is bounded; every container, network and volume of the project goes at
`remove()`. Host ports are free ports of 127.0.0.1, never the machine's own RabbitMQ's.
"""

import json
import os
import secrets
import subprocess
from pathlib import Path

from tests.helpers import REPO, free_port, wait_for

# The tag of the images the tier builds (and removes): never an operator's `latest`.
TAG = "docker-test"
IMAGES = ("speech-platform", "speech-platform-server", "speech-platform-rabbitmq")
ENV_EXAMPLE = REPO / "docker" / ".env.example"


def run(cmd: list[str], timeout: float, env: dict[str, str] | None = None) -> str:
    """Run `cmd` from the repository root; its output, or an error that shows it."""
    done = subprocess.run(
        cmd, cwd=REPO, capture_output=True, text=True, timeout=timeout,
        env={**os.environ, **(env or {})},
    )  # fmt: skip
    if done.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} exited {done.returncode}:\n{done.stderr[-4000:]}")
    return done.stdout + done.stderr


def build_images() -> str:
    """`make images` with the test's tag: its log (build times and sizes)."""
    return run(["make", "images"], timeout=1800, env={"SPEECH_IMAGE_TAG": TAG})


def remove_images() -> None:
    for name in IMAGES:
        subprocess.run(["docker", "rmi", f"{name}:{TAG}"], capture_output=True, timeout=120)


class Stack:
    """One compose project: its env file (made here from docker/.env.example, with secrets
    and free ports of its own), `make up` / `make down`, and what the tests need of it."""

    def __init__(self, workdir: Path, name: str, cluster: bool = False) -> None:
        self.project = f"speechtest{name}{os.getpid()}"
        self.cluster = cluster
        self.password = secrets.token_hex(12)
        self.api_key = secrets.token_hex(12)
        self.callback_secret = secrets.token_hex(12)
        self.flower_auth = ("ops", secrets.token_hex(12))
        # docker/.env's host ports -> free ports of this host
        names = ("AMQP_PORT", "MANAGEMENT_PORT", "FLOWER_PORT", "GATEWAY_PORT")
        self.ports = {f"SPEECH_{n}": free_port() for n in (*names, "AMQP_PORT2", "AMQP_PORT3")}
        self.env_file = workdir / f"{self.project}.env"
        self.env_file.write_text(self._env())

    def _env(self) -> str:
        given = {
            "RABBITMQ_PASSWORD": self.password,
            "FLOWER_BASIC_AUTH": ":".join(self.flower_auth),
            "SPEECH_API_KEY": self.api_key,
            "SPEECH_CALLBACK_SECRET": self.callback_secret,
            "POSTGRES_PASSWORD": secrets.token_hex(12),
            "RABBITMQ_CLUSTER_COOKIE": secrets.token_hex(32),
            "SPEECH_PUBLISH_ADDRESS": "127.0.0.1",
            "WORKER_CONCURRENCY": "1",  # five algorithms on two cores
            **{name: str(port) for name, port in self.ports.items()},
        }
        lines = []
        for line in ENV_EXAMPLE.read_text().splitlines():
            key = line.split("=", 1)[0]
            lines.append(f"{key}={given.pop(key)}" if "=" in line and key in given else line)
        # every setting replaces the example's own: never a default port (5672 is the host's)
        assert not given, f"not in docker/.env.example: {sorted(given)}"
        return "\n".join(lines) + "\n"

    # --- URLs on the host -------------------------------------------------------------------
    def broker_url(self, *nodes: str) -> str:
        """The AMQP URL of the published node(s) (AMQP_PORT, AMQP_PORT2...), `;`-separated."""
        ports = [self.ports[f"SPEECH_{n}"] for n in nodes or ("AMQP_PORT",)]
        return ";".join(f"amqp://speech:{self.password}@127.0.0.1:{p}/speech" for p in ports)

    @property
    def gateway_url(self) -> str:
        return f"http://127.0.0.1:{self.ports['SPEECH_GATEWAY_PORT']}"

    @property
    def flower_url(self) -> str:
        return f"http://127.0.0.1:{self.ports['SPEECH_FLOWER_PORT']}"

    @property
    def management_url(self) -> str:
        return f"http://speech:{self.password}@127.0.0.1:{self.ports['SPEECH_MANAGEMENT_PORT']}"

    # --- make and compose -------------------------------------------------------------------
    @property
    def env(self) -> dict[str, str]:
        return {
            "SPEECH_ENV_FILE": str(self.env_file),
            "SPEECH_PROJECT": self.project,
            "SPEECH_IMAGE_TAG": TAG,
            "CLUSTER": "1" if self.cluster else "0",
        }

    def make(self, target: str, *variables: str, timeout: float = 600) -> str:
        return run(["make", target, *variables], timeout, self.env)

    def compose(self, *args: str, timeout: float = 300) -> str:
        return run(["docker/images.sh", "compose", *args], timeout, self.env)

    def remove(self) -> None:
        """Containers, networks and volumes of the project, whatever state it is in."""
        self.compose("down", "--volumes", "--remove-orphans", "--timeout", "20")

    # --- containers -------------------------------------------------------------------------
    def containers(self, service: str | None = None) -> dict[str, str]:
        """Running container name -> status (`Up 3 minutes (healthy)`)."""
        labels = [f"com.docker.compose.project={self.project}"]
        labels += [f"com.docker.compose.service={service}"] if service else []
        filters = [arg for label in labels for arg in ("--filter", f"label={label}")]
        cmd = ["docker", "ps", *filters, "--format", "{{json .}}"]
        rows = [json.loads(x) for x in run(cmd, 30).splitlines() if x.startswith("{")]
        return {r["Names"]: r["Status"] for r in rows}

    def wait_healthy(self, expected: int, timeout: float = 300) -> None:
        """Until `expected` containers run and every one is healthy."""

        def all_healthy() -> bool:
            seen = self.containers()
            return len(seen) >= expected and all("(healthy)" in s for s in seen.values())

        wait_for(
            all_healthy, timeout, lambda: f"all healthy: {self.containers()}\n{self.logs()}", 2
        )

    def kill(self, container: str) -> None:
        run(["docker", "kill", container], 60)

    def network_gateway(self) -> str:
        """The host's address on the project's network (where containers reach the host)."""
        network = f"{self.project}_default"
        fmt = "{{range .IPAM.Config}}{{.Gateway}}{{end}}"
        return run(["docker", "network", "inspect", "-f", fmt, network], 30).strip()

    def logs(self, tail: int = 30) -> str:
        try:
            return self.compose("logs", "--no-color", "--tail", str(tail), timeout=60)[-8000:]
        except (AssertionError, subprocess.TimeoutExpired) as exc:
            return f"(no logs: {exc})"
