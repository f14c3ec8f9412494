"""A caller's mistake at a door is one WARNING line in that door's log, without traceback."""

import httpx
import msgpack

from tests.clients.servers import Bridge, Gateway
from tests.clients.test_bridge import RpcClient
from tests.helpers import DATA, wait_for

NOT_AUDIO = b"RIFF" + b"\x01" * 400


def _refusals(log: str) -> list[str]:
    return [line for line in log.splitlines() if "refused: InvalidAudio" in line]


def test_the_gateway_logs_a_bad_clip_as_one_line(gateway: Gateway) -> None:
    truncated = (DATA / "fox_kal16.wav").read_bytes()[:3000]  # a WAV header, then too little
    res = httpx.post(
        f"{gateway.url}/v1/asr", content=truncated, headers={"Content-Type": "audio/wav"}
    )
    assert res.json()["error"]["type"] == "InvalidAudio", res.text
    wait_for(lambda: _refusals(gateway.log()), 10, "the gateway's refusal line")
    line = _refusals(gateway.log())[-1]
    assert "WARNING speech.gateway: POST /v1/asr refused: InvalidAudio: " in line, line
    assert "Traceback" not in gateway.log()


def test_the_bridge_logs_a_bad_clip_as_one_line(broker_url: str, bridge: Bridge) -> None:
    rpc = RpcClient(broker_url)
    try:
        cid = rpc.send(msgpack.packb({"audio": NOT_AUDIO, "timeout": 30}), queue="rpc.asr")
        (reply,) = rpc.wait(cid, timeout=60)
    finally:
        rpc.close()
    assert reply["ok"] is False and reply["error"]["type"] == "InvalidAudio"
    wait_for(lambda: _refusals(bridge.log()), 10, "the bridge's refusal line")
    line = _refusals(bridge.log())[-1]
    assert "asr request from anonymous refused: InvalidAudio: cannot decode" in line, line
    assert "Traceback" not in bridge.log()
