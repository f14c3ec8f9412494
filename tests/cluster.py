"""RabbitMQ nodes and clusters of the project's own, beside the machine's node on 5672.

Each node has its own name, AMQP and distribution ports, config, data, log and pid files
under `.cluster/<tag>/`, and the cluster its own Erlang cookie. Nodes are driven with the
tools in /usr/lib/rabbitmq/bin, never Debian's /usr/sbin wrappers: those switch to the
rabbitmq user and so use the machine node's cookie. With a cookie of our own, no command
here can reach `rabbit@localhost`.

    python -m tests.cluster up      # three nodes on 127.0.0.1:5801-5803, joined
    python -m tests.cluster down

The nodes form the cluster by themselves on first boot (classic config peer discovery), so
all three start at once; a restarted node rejoins from its own data. They run with the
settings shipped in docker/rabbitmq-cluster.conf (partition handling, net_ticktime), read
from that file, so the fault tests prove what is shipped. tests/netcluster.py puts each node
in a network namespace of its own, for real partitions.
"""

import argparse
import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path
from urllib.parse import quote

from tests.helpers import wait_for

REPO = Path(__file__).resolve().parents[1]
BIN = Path("/usr/lib/rabbitmq/bin")
BASE = REPO / ".cluster"
# The settings the project ships for clusters (docker-compose.cluster.yml mounts this file):
# the test nodes run with the same ones, so what the tests prove is what is shipped.
SHIPPED_CONF = REPO / "docker" / "rabbitmq-cluster.conf"
# ...and its Erlang settings (net_setuptime), which the new-style file cannot hold.
SHIPPED_ADVANCED = REPO / "docker" / "rabbitmq-cluster-advanced.config"


def shipped_settings(path: Path = SHIPPED_CONF) -> dict[str, str]:
    """The `key = value` settings of the shipped cluster config, less peer discovery (its
    node names are the compose services'; each test cluster lists its own nodes)."""
    settings: dict[str, str] = {}
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line and not line.startswith("cluster_formation."):
            key, _, value = line.partition("=")
            settings[key.strip()] = value.strip()
    return settings


def _port_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as s:
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


class Node:
    """One rabbitmq-server process of a cluster."""

    def __init__(self, cluster: "Cluster", index: int, port: int, dist_port: int) -> None:
        self.cluster, self.index = cluster, index
        self.port, self.dist_port = port, dist_port
        self.host = cluster.host  # where clients reach its AMQP listener
        self.name = f"speech-{cluster.tag}-{index}@localhost"
        # what the server and CLI commands are run through (a network namespace's `ip netns exec`)
        self.exec_prefix: list[str] = []
        self.dir = cluster.dir / f"node{index}"
        self.pid_file = self.dir / "rabbit.pid"
        # the management API's port, when the cluster enables rabbitmq_management
        self.management_port = port + 10000
        self._proc: subprocess.Popen[bytes] | None = None

    # -- addresses --------------------------------------------------------------------------
    def url(self, vhost: str = "/") -> str:
        scheme = "amqps" if self.cluster.tls else "amqp"
        return f"{scheme}://guest:guest@{self.host}:{self.port}/{quote(vhost, safe='')}"

    # -- process ----------------------------------------------------------------------------
    def env(self) -> dict[str, str]:
        """The environment of the server and of every CLI call aimed at this node."""
        d = self.dir
        return {
            **self.cluster.cli_env(),
            "RABBITMQ_NODENAME": self.name,
            "RABBITMQ_CONF_ENV_FILE": str(d / "rabbitmq-env.conf"),
            "RABBITMQ_CONFIG_FILE": str(d / "rabbitmq.conf"),
            "RABBITMQ_ADVANCED_CONFIG_FILE": str(d / "advanced.config"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(d / "enabled_plugins"),
            "RABBITMQ_MNESIA_BASE": str(d / "mnesia"),
            "RABBITMQ_LOG_BASE": str(d / "log"),
            "RABBITMQ_PID_FILE": str(self.pid_file),
            "RABBITMQ_DIST_PORT": str(self.dist_port),
            # one scheduler per node: three nodes share the machine's two cores
            "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS": "+S 1:1",
        }

    def write_config(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        peers = "\n".join(
            f"cluster_formation.classic_config.nodes.{n.index} = {n.name}"
            for n in self.cluster.nodes
        )
        (self.dir / "rabbitmq-env.conf").write_text("")
        (self.dir / "enabled_plugins").write_text(f"[{','.join(self.cluster.plugins)}].\n")
        advanced = SHIPPED_ADVANCED.read_text() if self.cluster.size > 1 else "[].\n"
        (self.dir / "advanced.config").write_text(advanced)
        settings = {**shipped_settings(), **self.cluster.settings}
        if self.cluster.size == 1:
            # a broker of one node has no peers to lose: partition handling is for clusters
            settings = {k: v for k, v in settings.items() if not k.startswith("cluster_partition")}
        elif settings.get("cluster_partition_handling") == "pause_if_all_down":
            # "pause when no peer answers": each node lists the others, as the shipped
            # docker/rabbitmq-cluster-peers/<node>.conf do for the compose nodes
            peer_key = "cluster_partition_handling.pause_if_all_down.nodes"
            for n in self.cluster.nodes:
                if n is not self:
                    settings[f"{peer_key}.{n.index}"] = n.name
        # a TLS node listens with TLS only; its ssl_options come with the cluster's settings
        tls = self.cluster.tls
        listener = "listeners.tcp = none\nlisteners.ssl.1" if tls else "listeners.tcp.1"
        (self.dir / "rabbitmq.conf").write_text(
            f"{listener} = {self.host}:{self.port}\n"
            # guest may connect from other (namespace) hosts: these nodes are test-only
            "loopback_users = none\n"
            + "".join(f"{key} = {value}\n" for key, value in settings.items())
            + (
                f"management.tcp.ip = 127.0.0.1\nmanagement.tcp.port = {self.management_port}\n"
                if "rabbitmq_management" in self.cluster.plugins
                else ""
            )
            + "cluster_formation.peer_discovery_backend = classic_config\n"
            f"{peers}\n"
        )

    def start(self) -> "Node":
        """Launch the server (returns at once; `wait_running` waits for it)."""
        self.write_config()
        log = (self.dir / "server.out").open("ab")
        self._proc = subprocess.Popen(
            [*self.exec_prefix, str(BIN / "rabbitmq-server")],
            env=self.env(), stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
        log.close()
        return self

    def pid(self) -> int | None:
        try:
            return int(self.pid_file.read_text().strip())
        except (OSError, ValueError):
            return None

    def alive(self) -> bool:
        pid = self.pid()
        if pid is None:
            return False
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        return True

    def kill(self) -> None:
        """kill -9: the node vanishes as in a machine crash."""
        pid = self.pid()
        if pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            wait_for(lambda: not self.alive(), 30, f"{self.name} to die", 0.3)
        self._reap()

    def hang(self) -> None:
        """SIGSTOP the VM: a frozen node (stalled disk, VM pause). Its sockets stay open and
        nothing answers; peers notice only by their own timeouts."""
        pid = self.pid()
        if pid is None:
            raise RuntimeError(f"{self.name} is not running")
        os.kill(pid, signal.SIGSTOP)

    def resume(self) -> None:
        """SIGCONT: the frozen VM runs on from where it stopped."""
        pid = self.pid()
        if pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)

    def stop(self) -> None:
        """A clean shutdown (what an operator's restart does)."""
        if self.alive():
            self.ctl("stop", timeout=90, check=False)
            wait_for(lambda: not self.alive(), 60, f"{self.name} to stop", 0.3)
        self._reap()

    def _reap(self) -> None:
        if self._proc is not None:
            try:
                self._proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self._proc.pid, signal.SIGKILL)
                self._proc.wait()
            self._proc = None
        self.pid_file.unlink(missing_ok=True)

    def ctl(
        self, *args: str, timeout: float = 60, check: bool = True, tool: str = "rabbitmqctl"
    ) -> str:
        done = subprocess.run(
            [*self.exec_prefix, str(BIN / tool), "-q", "-n", self.name, *args],
            env=self.env(), capture_output=True, text=True, timeout=timeout,
        )  # fmt: skip
        if check and done.returncode != 0:
            raise RuntimeError(f"{tool} {' '.join(args)} on {self.name}: {done.stderr.strip()}")
        return done.stdout

    def running(self) -> bool:
        if not self.alive():
            return False
        try:
            self.ctl("await_startup", "--timeout", "1", timeout=15)
        except (RuntimeError, subprocess.TimeoutExpired):
            return False
        return True

    def __repr__(self) -> str:
        return f"Node({self.name}, {self.host}:{self.port})"


class Cluster:
    """`size` nodes joined into one cluster (size 1: a single broker of the test's own).

    `host` is the address the nodes listen on for AMQP (a network namespace test gives its
    bridge's address); Erlang distribution stays on localhost."""

    def __init__(
        self,
        size: int = 3,
        *,
        tag: str | None = None,
        host: str = "127.0.0.1",
        settings: dict[str, str] | None = None,
        tls: bool = False,
        plugins: tuple[str, ...] = (),
    ) -> None:
        """`plugins`: RabbitMQ plugins each node enables (rabbitmq_management listens on
        the node's AMQP port + 10000)."""
        self.size, self.host = size, host
        # overrides of the shipped settings, for experiments (and a TLS node's ssl_options)
        self.settings = settings or {}
        # tls: the AMQP listener speaks TLS only (amqps:// URLs); plugins: enabled at boot
        self.tls, self.plugins = tls, plugins
        self.tag = tag or f"c{size}-{secrets.token_hex(2)}"
        self.dir = BASE / self.tag
        self.nodes: list[Node] = []

    def _make_nodes(self, start: int) -> None:
        """Pick 2*size free ports (AMQP and distribution) at or above `start`."""
        port = start
        for index in range(1, self.size + 1):
            while not (
                _port_free(port, self.host)
                and _port_free(port + 20000)
                and _port_free(port + 10000)
            ):
                port += 1
            self.nodes.append(Node(self, index, port, port + 20000))
            port += 1

    def cli_env(self) -> dict[str, str]:
        home = self.dir / "home"
        return {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(home),
            "LANG": "C.UTF-8",
            "LC_ALL": "C.UTF-8",
            # CLI calls need distribution ports of their own, away from the machine node's
            "RABBITMQ_CTL_DIST_PORT_MIN": str(self.nodes[0].dist_port + 100),
            "RABBITMQ_CTL_DIST_PORT_MAX": str(self.nodes[0].dist_port + 140),
        }

    def start(self, first_port: int = 5801, timeout: float = 120) -> "Cluster":
        if not (BIN / "rabbitmq-server").exists():
            raise RuntimeError(f"RabbitMQ is not installed ({BIN} is missing)")
        shutil.rmtree(self.dir, ignore_errors=True)
        home = self.dir / "home"
        home.mkdir(parents=True)
        cookie = home / ".erlang.cookie"
        cookie.write_text(secrets.token_hex(20))
        cookie.chmod(0o400)
        self._make_nodes(first_port)
        (self.dir / "cluster.json").write_text(
            json.dumps({"host": self.host, "ports": [n.port for n in self.nodes]})
        )
        try:
            for node in self.nodes:
                node.start()
            for node in self.nodes:
                self.wait_running(node, timeout)
        except BaseException:
            self.stop(remove=False)  # no node left behind; its logs stay for the failure
            raise
        return self

    @classmethod
    def attach(cls, tag: str) -> "Cluster":
        """The cluster started earlier under `tag` (e.g. by `python -m tests.cluster up`)."""
        saved = json.loads((BASE / tag / "cluster.json").read_text())
        cluster = cls(len(saved["ports"]), tag=tag, host=saved["host"])
        for index, port in enumerate(saved["ports"], 1):
            cluster.nodes.append(Node(cluster, index, port, port + 20000))
        return cluster

    def stop(self, *, remove: bool = True) -> None:
        for node in reversed(self.nodes):
            node.resume()  # a hung node could not answer `stop`
            try:
                node.stop()
            except (RuntimeError, subprocess.TimeoutExpired):
                node.kill()
        if remove:
            shutil.rmtree(self.dir, ignore_errors=True)

    # -- state ------------------------------------------------------------------------------
    def running(self) -> list[Node]:
        return [n for n in self.nodes if n.running()]

    def any_node(self) -> Node:
        for node in self.nodes:
            if node.running():
                return node
        raise RuntimeError("no node of the cluster is running")

    def members(self) -> set[str]:
        """Names of the nodes the cluster sees running."""
        status = json.loads(self.any_node().ctl("cluster_status", "--formatter", "json"))
        return set(status["running_nodes"])

    def wait_running(self, node: Node, timeout: float = 120) -> None:
        """Until `node` runs and every node that is up sees it in the cluster."""
        wait_for(node.running, timeout, f"{node.name} to start", 0.3)
        if self.size > 1:
            wait_for(lambda: node.name in self.members(), timeout, f"{node.name} to join", 0.3)

    def url(self, vhost: str = "/") -> str:
        """Every node's URL, `;`-separated: what CELERY_BROKER_URL takes."""
        return ";".join(node.url(vhost) for node in self.nodes)

    def add_vhost(self, name: str) -> None:
        node = self.any_node()
        node.ctl("add_vhost", name)
        node.ctl("set_permissions", "-p", name, "guest", ".*", ".*", ".*")

    def delete_vhost(self, name: str) -> None:
        self.any_node().ctl("delete_vhost", name, check=False)

    def leader(self, queue: str, vhost: str = "/") -> Node:
        """The node holding a quorum queue's leader."""
        out = self.any_node().ctl(
            "list_queues", "-p", vhost, "name", "leader", "members", "--formatter", "json"
        )
        for row in json.loads(out):
            if row["name"] == queue:
                return next(n for n in self.nodes if n.name == row["leader"])
        raise RuntimeError(f"no queue {queue!r} in vhost {vhost!r}")

    def replicas(self, queue: str, vhost: str = "/") -> list[str]:
        out = self.any_node().ctl(
            "list_queues", "-p", vhost, "name", "members", "--formatter", "json"
        )
        return next(row["members"] for row in json.loads(out) if row["name"] == queue)


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m tests.cluster", description="RabbitMQ cluster of the project's own"
    )
    parser.add_argument("action", choices=["up", "down"])
    parser.add_argument("--size", type=int, default=3)
    args = parser.parse_args()
    if (BASE / "dev" / "cluster.json").exists():
        Cluster.attach("dev").stop()
    if args.action == "down":
        print("cluster stopped")
        return
    started = time.monotonic()
    cluster = Cluster(args.size, tag="dev").start()
    print(f"{args.size} nodes running in {time.monotonic() - started:.0f} s; connect with")
    print(f"CELERY_BROKER_URL='{cluster.url()}'")


if __name__ == "__main__":
    main()
