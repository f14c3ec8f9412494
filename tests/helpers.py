"""Test helpers: real `celery worker` processes, a private vhost, word error rate."""

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "tests" / "data"
ARTIFACTS = REPO / "tests" / "artifacts"
TRANSCRIPTS: dict[str, str] = json.loads((DATA / "transcripts.json").read_text())
# The RabbitMQ the tests use, without a vhost: each test run makes vhosts of its own there
# (with rabbitmqctl, so it must be a node rabbitmqctl on this machine can manage).
TEST_BROKER = os.environ.get("SPEECH_TEST_BROKER", "amqp://guest:guest@127.0.0.1:5672").rstrip("/")


def rabbitmqctl(*args: str) -> str:
    done = subprocess.run(["rabbitmqctl", "-q", *args], capture_output=True, text=True, timeout=60)
    if done.returncode != 0:
        raise RuntimeError(f"rabbitmqctl {' '.join(args)} failed: {done.stderr.strip()}")
    return done.stdout


class Vhost:
    """A throwaway RabbitMQ vhost, so test runs never see each other's queues."""

    def __init__(self, prefix: str = "speech-test") -> None:
        self.name = f"{prefix}-{uuid.uuid4().hex[:10]}"
        self.url = f"{TEST_BROKER}/{self.name}"

    def create(self) -> "Vhost":
        rabbitmqctl("add_vhost", self.name)
        rabbitmqctl("set_permissions", "-p", self.name, "guest", ".*", ".*", ".*")
        return self

    def delete(self) -> None:
        rabbitmqctl("delete_vhost", self.name)

    def queues(self) -> dict[str, int]:
        """Queue name -> ready messages, as the broker sees them now."""
        out = rabbitmqctl("list_queues", "-p", self.name, "name", "messages_ready")
        rows = (line.split("\t") for line in out.splitlines() if "\t" in line)
        return {name: int(count) for name, count in rows if count.isdigit()}


def options(key: str, **given: Any) -> dict[str, Any]:
    """`given` checked against operation `key`'s declaration, with its defaults: the
    keyword arguments the worker passes to the algorithm's function."""
    from producer.algorithms.catalog import catalog

    declared = catalog().operation(key)
    assert declared is not None, key
    return declared.validate(key, given)


def wait_for(
    check: Callable[[], object],
    timeout: float,
    what: str | Callable[[], str],
    every: float = 0.1,
    *,
    tolerate: tuple[type[Exception], ...] = (),
) -> float:
    """Poll `check` until it returns something true (an error in `tolerate` counts as not
    yet); after `timeout` seconds fail naming `what` (a callable is asked only then, for
    details such as a log) and the last thing `check` gave. Returns the seconds it took.

    The one way tests wait for a condition: named waits elsewhere are thin wrappers of it.
    """
    start = time.monotonic()
    last: object = None
    while True:
        try:
            last = check()
            if last:
                return time.monotonic() - start
        except tolerate as error:
            last = error
        if time.monotonic() - start > timeout:
            named = what() if callable(what) else what
            raise AssertionError(f"waited {timeout:g} s for {named} (last seen: {last!r})")
        time.sleep(every)


def client_fixture(
    broker: str,
    *,
    scope: str = "session",
    timeout: float | None = 60,
    after: tuple[str, ...] = (),
) -> Any:
    """A pytest fixture: one open `producer.Client` for `scope`, on the broker the fixture
    named `broker` gives (a Vhost, or a URL). `after` names fixtures to set up first (the
    workers it needs). Assign it to the fixture's name: `client = client_fixture("vhost")`.
    """
    import pytest

    from producer import Client

    @pytest.fixture(scope=scope)
    def connected(request: pytest.FixtureRequest) -> Iterator[Client]:
        for name in after:
            request.getfixturevalue(name)
        given = request.getfixturevalue(broker)
        with Client(given if isinstance(given, str) else given.url, timeout=timeout) as client:
            yield client

    return connected


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def loaded_modules(candidates: tuple[str, ...]) -> list[str]:
    """Which of `candidates` a fresh interpreter has loaded after `import producer.cli.main`."""
    code = (
        "import sys, producer, producer.cli.main; "
        f"print(','.join(sorted(m for m in {candidates!r} if m in sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    return [m for m in out.stdout.strip().split(",") if m]


class Service:
    """A real process of the project (worker, Flower, gateway, bridge) in its own process
    group, logging to tests/artifacts."""

    def __init__(
        self,
        cmd: list[str],
        env: dict[str, str],
        log_name: str,
        host: Any = None,
        cwd: Path = REPO,
    ) -> None:
        ARTIFACTS.mkdir(exist_ok=True)
        self.cmd, self.env, self.host, self.cwd = cmd, env, host, cwd
        self.log_path: Path = ARTIFACTS / log_name
        self.proc: subprocess.Popen[bytes] | None = None

    def launch(self) -> None:
        """Start the process here, or inside `host` (a tests.hosts.Host) if one was given."""
        with self.log_path.open("wb") as log:
            if self.host is not None:
                self.proc = self.host.run(self.cmd, env=self.env, stdout=log)
                return
            self.proc = subprocess.Popen(
                self.cmd, cwd=self.cwd, env=self.env, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip

    def wait_until(self, ready: Callable[[], bool], timeout: float = 30.0) -> None:
        """Poll `ready` until it holds; fail with the log if the process dies or times out."""

        def alive_and_ready() -> bool:
            if ready():
                return True
            if not self.alive():
                raise RuntimeError(f"{self.cmd} exited early:\n{self.log()}")
            return False

        try:
            wait_for(alive_and_ready, timeout, f"{self.cmd} to be ready")
        except AssertionError as late:
            self.kill()
            raise RuntimeError(f"{late}:\n{self.log()}") from None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def signal(self, sig: int) -> None:
        assert self.proc is not None
        os.killpg(self.proc.pid, sig)

    def stop(self, timeout: float = 30.0) -> int | None:
        """Graceful shutdown (SIGTERM to the main process); SIGKILL what is left after
        `timeout`."""
        if not self.alive():
            return self.proc.returncode if self.proc else None
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            return None

    def kill(self) -> None:
        if self.proc is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)


class Worker(Service):
    """A real `celery -A tasks worker` process; given `host` (tests.hosts.Host), it runs on
    that host, another machine as far as the network is concerned."""

    def __init__(
        self,
        broker_url: str,
        queues: str = "asr",
        *,
        concurrency: int = 1,
        name: str | None = None,
        pool: str = "prefork",
        env: dict[str, str] | None = None,
        host: Any = None,
        python: str = sys.executable,
        cwd: Path = REPO,
        app: str = "tasks",
        loglevel: str = "info",
    ) -> None:
        """`python`: the interpreter of another environment (tests/plugins: a fresh venv)."""
        self.name = name or f"w{uuid.uuid4().hex[:6]}"
        self.loglevel = loglevel
        cmd = [
            python, "-m", "celery", "-A", app, "worker",
            "-Q", queues, "-c", str(concurrency), "-P", pool,
            "-n", f"{self.name}@%h", "--without-gossip", "--without-mingle",
            "-l", loglevel,
        ]  # fmt: skip
        env = {**os.environ, "CELERY_BROKER_URL": broker_url, **(env or {})}
        super().__init__(cmd, env, f"worker-{self.name}.log", host, cwd)

    def start(self, timeout: float = 90.0) -> "Worker":
        self.launch()
        # " ready." is an info line; below info only the banner says the worker started
        # (callers then ping it to know it consumes)
        mark = b" ready." if self.loglevel in ("info", "debug") else b"[queues]"
        self.wait_until(lambda: mark in self.log_path.read_bytes(), timeout)
        return self

    def wait_warm(self, queue: str, processes: int = 1, timeout: float = 180.0) -> "Worker":
        """Wait until `processes` pool processes logged that `queue`'s models are warm.

        " ready." comes from the parent as soon as it consumes; its children may still be
        loading models, and a request that arrives then waits for them.
        """
        self.wait_until(lambda: self.log().count(f"warmed {queue} in") >= processes, timeout)
        return self


def run_cli(
    broker_url: str,
    *args: str,
    timeout: float = 120,
    python: str = sys.executable,
    cwd: Path = REPO,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "CELERY_BROKER_URL": broker_url, **(env or {})}
    return subprocess.run(
        [python, "-m", "producer", *args],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout,
    )  # fmt: skip


def word_errors(reference: str, hypothesis: str) -> int:
    """Word-level edit distance (substitutions + insertions + deletions)."""
    ref, hyp = reference.split(), hypothesis.split()
    row = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        prev, row[0] = row[0], i
        for j, h in enumerate(hyp, 1):
            prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (r != h))
    return row[-1]


def wer(reference: str, hypothesis: str) -> float:
    return word_errors(reference, hypothesis) / max(1, len(reference.split()))
