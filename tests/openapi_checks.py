"""What the gateway's OpenAPI document must say, checked against the declarations that
GET /v1/algorithms answers (producer.algorithms.declare.Algorithm.describe). Structural checks:
openapi-spec-validator is not among the test tools (requirements/dev.in)."""

import json
from typing import Any

TYPES = {
    "number": "number",
    "integer": "integer",
    "flag": "boolean",
    "choice": "string",
    "text": "string",
    "choices": "array",
    "texts": "array",
}


# POST routes of the gateway's own beside the catalog's operations (producer/servers/jobs/routes.py)
OWN_POSTS = {"transcribe", "jobs"}


def check_document(doc: dict[str, Any], declarations: dict[str, Any]) -> None:
    """Fail unless `doc` is a sound OpenAPI 3 document with one POST path per declared
    operation, its options typed as query parameters and its clips as the body."""
    assert doc["openapi"].startswith("3."), doc["openapi"]
    assert doc["info"]["title"] and doc["info"]["version"]
    _check_refs(doc)
    assert "/v1/{algorithm}" not in doc["paths"], "the generic route is documented per operation"
    ids = [op["operationId"] for path in doc["paths"].values() for op in path.values()]
    assert len(ids) == len(set(ids)), ids
    keys = {key for a in declarations.values() for key in a["operations"]}
    posts = {path[len("/v1/") :] for path, item in doc["paths"].items() if "post" in item}
    keys |= OWN_POSTS
    assert posts == keys, posts ^ keys
    for algorithm in declarations.values():
        for key, operation in algorithm["operations"].items():
            check_operation(doc["paths"][f"/v1/{key}"]["post"], algorithm, operation)


def check_operation(post: dict[str, Any], algorithm: dict[str, Any], operation: dict) -> None:
    assert post["summary"] == operation["help"]
    assert algorithm["summary"] in post["description"]
    assert {"200", "400", "401", "404", "413", "415", "502", "503", "504"} <= set(post["responses"])
    params = {p["name"]: p for p in post["parameters"]}
    assert list(params) == [*operation["options"], "timeout"]
    for name, option in operation["options"].items():
        param = params[name]
        assert param["in"] == "query" and param["required"] is False
        assert option["help"] in param["description"]
        schema = param.get("schema") or param["content"]["application/json"]["schema"]
        check_schema(schema, option)
    body = post["requestBody"]["content"]
    multipart = body["multipart/form-data"]["schema"]
    audio = multipart["properties"]["audio"]
    if operation["clips"] == 1:
        assert audio["format"] == "binary"
        assert {"audio/*", "application/octet-stream"} <= set(body)
    else:  # several clips travel only as several 'audio' fields
        assert (
            audio["type"] == "array"
            and audio["minItems"] == audio["maxItems"] == operation["clips"]
        )
        assert set(body) == {"multipart/form-data"}
    for name, option in operation["options"].items():
        check_schema(multipart["properties"][name], option)


def check_schema(schema: dict[str, Any], option: dict[str, Any]) -> None:
    kind = option["kind"]
    assert schema["type"] == TYPES[kind], (schema, option)
    assert schema["default"] == option["default"]
    if kind in ("number", "integer"):
        assert (schema["minimum"], schema["maximum"]) == (option["low"], option["high"])
    if kind == "choice":
        assert schema["enum"] == option["choices"]
    if kind == "choices":
        assert schema["items"]["enum"] == option["choices"]
    if kind in ("text", "texts"):
        text = schema if kind == "text" else schema["items"]
        assert text["type"] == "string" and text["maxLength"] == option["max_chars"]


def _check_refs(doc: dict[str, Any]) -> None:
    """Every $ref points at something in the document."""
    text = json.dumps(doc)
    for ref in {part.split('"')[0] for part in text.split('"$ref": "')[1:]}:
        node: Any = doc
        for step in ref.removeprefix("#/").split("/"):
            assert step in node, f"dangling $ref {ref}"
            node = node[step]
