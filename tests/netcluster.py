"""A RabbitMQ cluster whose nodes are separate hosts: one network namespace per node.

    with Network() as net:
        cluster = NetCluster(net).start()     # nodes at 10.231.N.2-4, AMQP on 5672 each
        node = cluster.nodes[2]
        node.cut()                  # from the other nodes; clients still reach it
        node.cut(clients=True)      # from everything: a pulled cable
        node.heal()
        cluster.stop()

Each node runs in a `tests.hosts.Host`: its Erlang distribution, its epmd (started by the
node itself, inside the namespace) and its AMQP listener are on the namespace's own address,
so a partition is a real one: packets between the nodes stop, and the nodes find out only
by their own timeouts (net ticks), as across a failed switch. Clients in this machine's own
namespace reach every node through the bridge.

A cut is made with blackhole routes: a packet to a peer is dropped in the sender's own
namespace (both directions, so each side goes silent for the other). Routes, unlike
iptables, need nothing beyond iproute2, and they are scoped to the addresses the test made.
CLI commands run inside the node's namespace, so a cut node can still be asked its state.
"""

import subprocess

from tests.cluster import Cluster, Node
from tests.hosts import Host, Network

AMQP_PORT = 5672  # every namespace has its own port space
DIST_PORT = 25672


def _route(netns: str, action: str, address: str) -> None:
    done = subprocess.run(
        ["ip", "-n", netns, "route", action, "blackhole", f"{address}/32"],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    # deleting a route that is not there is what heal() of an uncut node does: fine
    if done.returncode != 0 and action == "add" and "File exists" not in done.stderr:
        raise RuntimeError(f"ip route {action} blackhole {address}: {done.stderr.strip()}")


class NetNode(Node):
    """A node on a host of its own."""

    def __init__(self, cluster: "NetCluster", index: int) -> None:
        super().__init__(cluster, index, AMQP_PORT, DIST_PORT)
        self.netcluster = cluster
        self.machine = Host(cluster.network, f"{cluster.tag[-4:]}n{index}")
        self.host = self.machine.address
        # long names: the node's host part is its IP address, which every namespace reaches
        self.name = f"speech-{cluster.tag}-{index}@{self.host}"
        self.exec_prefix = ["ip", "netns", "exec", self.machine.netns]
        self.cut_off: list[NetNode] = []

    def env(self) -> dict[str, str]:
        return {**super().env(), "RABBITMQ_USE_LONGNAME": "true"}

    def peers(self) -> list["NetNode"]:
        return [n for n in self.netcluster.nodes if n is not self]

    def cut(self, *, clients: bool = False) -> None:
        """Drop every packet between this node and the other nodes; with `clients`, also
        between it and this machine (the clients' side): its link goes down."""
        for peer in self.peers():
            _route(self.machine.netns, "add", peer.host)
            _route(peer.machine.netns, "add", self.host)
            self.cut_off.append(peer)
        if clients:
            subprocess.run(["ip", "link", "set", self.machine.veth, "down"], check=True, timeout=30)

    def heal(self) -> None:
        """Undo `cut`: packets flow again (the nodes reconnect by themselves)."""
        subprocess.run(["ip", "link", "set", self.machine.veth, "up"], check=True, timeout=30)
        for peer in self.cut_off:
            _route(self.machine.netns, "del", peer.host)
            _route(peer.machine.netns, "del", self.host)
        self.cut_off.clear()


class NetCluster(Cluster):
    """`size` nodes on `network`, one namespace each (see the module's docstring).

    `stop()` stops the nodes; closing the network removes the namespaces and kills whatever
    still runs in them (each node's epmd among them)."""

    nodes: list[NetNode]  # type: ignore[assignment]

    def __init__(
        self,
        network: Network,
        size: int = 3,
        *,
        tag: str | None = None,
        settings: dict[str, str] | None = None,
    ) -> None:
        super().__init__(size, tag=tag, host=network.gateway, settings=settings)
        self.network = network

    def _make_nodes(self, start: int) -> None:
        self.nodes = [NetNode(self, index) for index in range(1, self.size + 1)]

    def heal(self) -> None:
        for node in self.nodes:
            node.heal()

    def stop(self, *, remove: bool = True) -> None:
        self.heal()  # a cut node could not be stopped cleanly (nor leave the cluster's logs)
        super().stop(remove=remove)
        for node in self.nodes:
            node.machine.close()
