"""One request through each door, as the fault tests ask after a fault: True if answered."""

import httpx

from tests.clients.servers import Gateway
from tests.helpers import DATA

FOX = (DATA / "fox_kal16.wav").read_bytes()


def gateway_answers(gateway: Gateway) -> bool:
    res = httpx.post(
        f"{gateway.url}/v1/asr", content=FOX, headers={"Content-Type": "audio/wav"}, timeout=30
    )
    return res.status_code == 200 and bool(res.json()["result"]["text"])


def bridge_answers(url: str) -> bool:
    """One request through the bridge, written the way any AMQP backend would."""
    from tests.clients.test_bridge import RpcClient

    rpc = RpcClient(url)
    try:
        return rpc.call({"audio": FOX, "timeout": 30}, timeout=45)["ok"] is True
    finally:
        rpc.close()
