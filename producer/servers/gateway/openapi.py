"""The gateway's OpenAPI document, one path per operation, made from the catalog.

Every request is served by the gateway's one route, `POST /v1/{algorithm}`, which reads
the body as it arrives and types the options itself (producer.servers.forms,
producer.algorithms.options). The document describes what that route accepts for each operation of
the catalog, built-ins and plugins alike: `POST /v1/vad`, `POST /v1/speaker.verify`,
`POST /v1/kws`, each with its options as typed query parameters and its clips as the
request body. It is made when the app is created, from the declarations, and again when
an algorithm is learnt from its workers.

Query values are read as JSON literals (`?threshold=0.6`, `?stationary=true`); a list
option is sent as one JSON array (`?include=["mfcc","f0"]`), so it is described as a
parameter with `application/json` content rather than as a repeated parameter.
"""

import json
from collections.abc import Callable
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from producer.algorithms.catalog import Catalog
from producer.algorithms.declare import MAX_LIST_ITEMS, Algorithm, Operation, Option
from producer.settings import settings

# The generic route: its generated operation lends each operation path its errors and
# security, then leaves the document.
GENERIC_PATH = "/v1/{algorithm}"
BINARY = {"type": "string", "format": "binary"}
RESULT = {
    "description": "the algorithm's result",
    "content": {
        "application/json": {
            "schema": {
                "type": "object",
                "required": ["algorithm", "result", "seconds"],
                "properties": {
                    "algorithm": {"type": "string"},
                    "result": {
                        "type": "object",
                        "description": 'numeric arrays as {"dtype", "shape", "data": <base64>}',
                    },
                    "seconds": {"type": "number", "description": "time the call took"},
                },
            }
        }
    },
}


def install(app: FastAPI, current: Callable[[], Catalog]) -> None:
    """Make `app.openapi()` answer the document with one path per operation of the catalog
    `current()` gives, made again only when that catalog changes (an algorithm learnt from
    its workers, producer.algorithms.learnt)."""
    made: dict[int, dict[str, Any]] = {}

    def openapi() -> dict[str, Any]:
        catalog = current()
        if id(catalog) not in made:  # a learnt algorithm replaces the catalog object
            made.clear()
            made[id(catalog)] = build(app, catalog, list(catalog.operations))
        return made[id(catalog)]

    openapi()  # the local declarations' document, made now
    app.openapi = openapi  # type: ignore[method-assign]


def build(app: FastAPI, catalog: Catalog, operations: list[str]) -> dict[str, Any]:
    document = get_openapi(
        title=app.title,
        version=app.version,
        summary=app.summary,
        description=app.description,
        routes=app.routes,
    )
    generic = document["paths"].pop(GENERIC_PATH)["post"]
    declared = catalog.operations
    for key in operations:
        if key in declared:
            algorithm, operation = declared[key]
            document["paths"][f"/v1/{key}"] = {
                "post": path_operation(key, algorithm, operation, generic)
            }
    _drop_unused_schemas(document)
    return document


def _drop_unused_schemas(document: dict[str, Any]) -> None:
    """Remove component schemas nothing refers to any more (FastAPI's validation error,
    used by the generic route's path parameter only)."""
    schemas = document.get("components", {}).get("schemas", {})
    for _ in range(len(schemas)):  # a schema may be used only by another unused one
        text = json.dumps({k: v for k, v in document.items() if k != "components"})
        text += json.dumps(schemas)
        unused = [name for name in schemas if f'"#/components/schemas/{name}"' not in text]
        if not unused:
            break
        for name in unused:
            del schemas[name]
    if "schemas" in document.get("components", {}) and not schemas:
        del document["components"]["schemas"]


def path_operation(
    key: str, algorithm: Algorithm, operation: Operation, generic: dict[str, Any]
) -> dict[str, Any]:
    """POST /v1/<key>: its options as query parameters, its clips as the body."""
    parameters = [query_parameter(name, option) for name, option in operation.options.items()]
    parameters.append(timeout_parameter())
    # The route reads the request itself: FastAPI's 422 validation answer never comes.
    responses = {code: r for code, r in generic.get("responses", {}).items() if code != "422"}
    described: dict[str, Any] = {
        "tags": [algorithm.name],
        "summary": operation.help,
        "description": (
            f"{algorithm.summary} ({algorithm.source}). Takes {_clips(operation.clips)}."
            " Options may also come as multipart form fields, JSON literals like the query."
        ),
        "operationId": f"run_{key.replace('.', '_')}",
        "parameters": parameters,
        "requestBody": request_body(operation),
        "responses": {**responses, "200": RESULT},
    }
    if "security" in generic:
        described["security"] = generic["security"]
    return described


def option_schema(option: Option) -> dict[str, Any]:
    """The JSON schema of the values `option` takes (producer.algorithms.declare.Option.check)."""
    kind = option.kind
    schema: dict[str, Any]
    if kind in ("number", "integer"):
        schema = {"type": kind, "minimum": option.low, "maximum": option.high}
    elif kind == "flag":
        schema = {"type": "boolean"}
    elif kind == "choice":
        schema = {"type": "string", "enum": list(option.choices)}
    elif kind == "choices":
        item = {"type": "string", "enum": list(option.choices)}
        schema = {"type": "array", "items": item, "minItems": 1, "maxItems": MAX_LIST_ITEMS}
    else:
        text = {"type": "string", "minLength": 1, "maxLength": option.max_chars}
        schema = (
            text
            if kind == "text"
            else {"type": "array", "items": text, "minItems": 1, "maxItems": MAX_LIST_ITEMS}
        )
    return {**schema, "default": option.default}


def query_parameter(name: str, option: Option) -> dict[str, Any]:
    schema = option_schema(option)
    parameter: dict[str, Any] = {
        "name": name,
        "in": "query",
        "required": False,
        "description": f"{option.help} ({option.kind}; default {_literal(option.default)})",
    }
    if schema["type"] == "array":  # one JSON array: ?include=["mfcc","f0"]
        parameter["content"] = {"application/json": {"schema": schema}}
    else:
        parameter["schema"] = schema
    return parameter


def timeout_parameter() -> dict[str, Any]:
    return {
        "name": "timeout",
        "in": "query",
        "required": False,
        "description": "seconds the caller waits for the answer (SPEECH_TIMEOUT by default)",
        "schema": {"type": "number", "exclusiveMinimum": 0, "maximum": settings().max_timeout},
    }


def request_body(operation: Operation) -> dict[str, Any]:
    """One clip: the body itself, or a multipart `audio` field. Several: multipart only,
    one `audio` field per clip, in order."""
    clips = operation.clips
    audio: dict[str, Any] = (
        {**BINARY, "description": "the clip"}
        if clips == 1
        else {
            "type": "array",
            "items": BINARY,
            "minItems": clips,
            "maxItems": clips,
            "description": f"{clips} clips, as {clips} 'audio' file fields",
        }
    )
    fields = {
        name: {**option_schema(option), "description": option.help}
        for name, option in operation.options.items()
    }
    lists = [name for name, schema in fields.items() if schema["type"] == "array"]
    multipart: dict[str, Any] = {
        "schema": {
            "type": "object",
            "required": ["audio"],
            "properties": {"audio": audio, **fields, "timeout": {"type": "number"}},
            "additionalProperties": False,
        }
    }
    if lists:
        multipart["encoding"] = {name: {"contentType": "application/json"} for name in lists}
    content: dict[str, Any] = {"multipart/form-data": multipart}
    if clips == 1:
        content = {"audio/*": {"schema": BINARY}, "application/octet-stream": {"schema": BINARY}}
        content["multipart/form-data"] = multipart
    return {
        "required": True,
        "description": "audio in any container the workers decode (WAV, FLAC, OGG, MP3)",
        "content": content,
    }


def _clips(count: int) -> str:
    return "one clip" if count == 1 else f"{count} clips"


def _literal(value: Any) -> str:
    return json.dumps(value)
