"""The test clusters run with the cluster settings the project ships (docker/)."""

import re
from pathlib import Path

from tests.cluster import REPO, SHIPPED_CONF, Cluster, shipped_settings

PEERS = REPO / "docker" / "rabbitmq-cluster-peers"
PEER_KEY = "cluster_partition_handling.pause_if_all_down.nodes"


def _settings(text: str) -> dict[str, str]:
    pairs = (line.split("=", 1) for line in text.splitlines() if "=" in line and "#" not in line)
    return {key.strip(): value.strip() for key, value in pairs}


def test_the_shipped_settings_are_read_without_the_compose_node_names() -> None:
    settings = shipped_settings()
    assert settings["cluster_partition_handling"] == "pause_if_all_down"
    assert settings["cluster_partition_handling.pause_if_all_down.recover"] == "autoheal"
    assert settings["net_ticktime"] == "5"
    assert not any(key.startswith("cluster_formation.") for key in settings)


def test_each_compose_node_lists_every_other_node_as_its_peers() -> None:
    formation = set(re.findall(r"classic_config\.nodes\.\d+ = (\S+)", SHIPPED_CONF.read_text()))
    assert len(formation) == 3
    for node in formation:
        peers = _settings((PEERS / f"{node.split('@')[1]}.conf").read_text())
        assert set(peers) <= {f"{PEER_KEY}.{i}" for i in range(1, 4)}
        assert set(peers.values()) == formation - {node}, node


def test_a_test_node_config_holds_the_shipped_settings_and_its_peers(tmp_path: Path) -> None:
    cluster = Cluster(3, tag="unit")
    cluster.dir = tmp_path
    cluster._make_nodes(5801)  # picks ports only: nothing is started
    node = cluster.nodes[2]
    node.write_config()
    written = _settings((node.dir / "rabbitmq.conf").read_text())
    for key, value in shipped_settings().items():
        assert written[key] == value, key
    peers = {v for k, v in written.items() if k.startswith(PEER_KEY)}
    assert peers == {cluster.nodes[0].name, cluster.nodes[1].name}
