"""The doors made from the catalog, in-process: the gateway's OpenAPI document and
GET /v1/algorithms for the built-ins and a plugin declared beside them, and the bridge's
queues (real servers: tests/clients/test_gateway.py and test_plugin_doors.py)."""

from typing import Any

from starlette.testclient import TestClient

from producer.algorithms.builtins import BUILTINS
from producer.algorithms.catalog import Catalog, build_catalog
from producer.servers.gateway import create_app
from producer.servers.gateway.openapi import option_schema
from tests.openapi_checks import check_document
from tests.plugin.speech_echo_demo import ALGORITHM as ECHO


class CatalogClient:
    """Looks like producer.Client to the gateway, with a catalog of its own; no call is
    made in these tests."""

    max_payload_bytes = 1000
    timeout = 5.0

    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog
        self.algorithms = catalog.names
        self.operations = {key: a.name for key, (a, _) in catalog.operations.items()}


def _app(catalog: Catalog) -> TestClient:
    return TestClient(create_app(CatalogClient(catalog), api_key="", threads=1))  # type: ignore[arg-type]


def test_every_operation_of_the_catalog_is_a_documented_path() -> None:
    # Given the built-ins and a plugin, as the catalog gathers them
    catalog = build_catalog(list(BUILTINS), [ECHO], {})
    with _app(catalog) as http:
        # When a caller reads the algorithms and the OpenAPI document
        listing = http.get("/v1/algorithms").json()
        doc = http.get("/openapi.json").json()
    # Then the listing keeps its keys and adds each declaration
    assert listing["algorithms"] == [*[a.name for a in BUILTINS], "echo"]
    assert "speaker.verify" in listing["operations"] and "echo" in listing["operations"]
    assert listing["declarations"] == catalog.describe()
    # And the document has one typed path per operation, the plugin's too
    check_document(doc, listing["declarations"])
    echo = doc["paths"]["/v1/echo"]["post"]
    assert [p["name"] for p in echo["parameters"]] == ["keywords", "sensitivity", "mode", "timeout"]
    assert echo["tags"] == ["echo"]


def test_only_the_catalog_decides_the_paths() -> None:
    # Given a gateway whose catalog has only the built-ins
    with _app(build_catalog(list(BUILTINS), [], {})) as http:
        doc = http.get("/openapi.json").json()
    # Then no plugin path appears, and two clips are asked of speaker.verify only
    assert "/v1/echo" not in doc["paths"]
    verify = doc["paths"]["/v1/speaker.verify"]["post"]["requestBody"]["content"]
    assert set(verify) == {"multipart/form-data"}
    audio = verify["multipart/form-data"]["schema"]["properties"]["audio"]
    assert audio["minItems"] == audio["maxItems"] == 2
    assert "422" not in doc["paths"]["/v1/vad"]["post"]["responses"]  # never answered


def test_option_kinds_map_to_json_schema() -> None:
    options = {name: o for a in BUILTINS for op in a.operations for name, o in op.options.items()}
    features = next(a for a in BUILTINS if a.name == "features").operations[0].options
    denoise = next(a for a in BUILTINS if a.name == "denoise").operations[0].options
    assert option_schema(options["threshold"])["type"] == "number"
    assert option_schema(features["hop"]) == {
        "type": "integer", "minimum": 32, "maximum": 4096, "default": 160,
    }  # fmt: skip
    include: dict[str, Any] = option_schema(features["include"])
    assert include["type"] == "array"
    assert include["items"]["enum"] == ["mfcc", "logmel", "f0", "rms"]
    assert option_schema(denoise["stationary"]) == {"type": "boolean", "default": False}
    assert option_schema(denoise["format"])["enum"] == ["wav", "flac"]
    keywords = option_schema(ECHO.operations[0].options["keywords"])
    assert keywords["type"] == "array" and keywords["items"]["type"] == "string"


def test_the_bridge_consumes_one_queue_per_catalog_operation() -> None:
    from producer import Client
    from producer.algorithms.catalog import catalog
    from producer.servers.bridge.server import Bridge

    with Client("amqp://guest:guest@127.0.0.1:1//") as client:  # never connected here
        bridge = Bridge(client, 1)
        bridge.pool.shutdown()
    expected = {f"rpc.{key}": key for key in catalog().operations}
    assert bridge.queues == {**expected, "rpc.transcribe": "transcribe"}  # + long recordings
    assert "rpc.speaker.verify" in bridge.queues and "rpc.speaker" not in bridge.queues
