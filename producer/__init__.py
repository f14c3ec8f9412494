"""Call the speech platform's algorithms over RabbitMQ.

Needs only celery, kombu and msgpack: no algorithm stack is imported here. The Client is
loaded when first named, so that workers and plugins importing the declarations
(`producer.algorithms`) never load it.
"""

import typing as _typing

from producer.errors import (
    AccessDenied,
    BrokerBlocked,
    BrokerUnavailable,
    CallTimeout,
    InvalidAudio,
    InvalidInput,
    InvalidOptions,
    InvalidSetting,
    Overloaded,
    PayloadTooLarge,
    RemoteError,
    ResultTooLarge,
    SpeechError,
)

if _typing.TYPE_CHECKING:
    from producer.client import Client


def __getattr__(name: str) -> _typing.Any:
    if name == "Client":
        from producer.client import Client

        return Client
    raise AttributeError(f"module 'producer' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), "Client"])


__all__ = [
    "AccessDenied",
    "BrokerBlocked",
    "BrokerUnavailable",
    "CallTimeout",
    "Client",
    "InvalidAudio",
    "InvalidInput",
    "InvalidOptions",
    "InvalidSetting",
    "Overloaded",
    "PayloadTooLarge",
    "RemoteError",
    "ResultTooLarge",
    "SpeechError",
]
