"""Call the speech platform's algorithms over RabbitMQ.

Needs only celery, kombu and msgpack: no algorithm stack is imported here.
"""

from producer.client import Client
from producer.errors import (
    BrokerBlocked,
    BrokerUnavailable,
    CallTimeout,
    InvalidAudio,
    InvalidInput,
    InvalidOptions,
    Overloaded,
    PayloadTooLarge,
    RemoteError,
    ResultTooLarge,
    SpeechError,
)

__all__ = [
    "BrokerBlocked",
    "BrokerUnavailable",
    "CallTimeout",
    "Client",
    "InvalidAudio",
    "InvalidInput",
    "InvalidOptions",
    "Overloaded",
    "PayloadTooLarge",
    "RemoteError",
    "ResultTooLarge",
    "SpeechError",
]
