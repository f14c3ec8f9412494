"""The AMQP bridge (`python -m producer bridge`): `server` consumes the `rpc.<algorithm>`
queues and answers through the Client; `links` holds its pika connections (parameters,
the reply connection); `request` says what a request may be (pure functions, fuzzed
directly)."""

from producer.servers.bridge.links import pika_parameters
from producer.servers.bridge.server import Bridge, run_bridge

__all__ = ["Bridge", "pika_parameters", "run_bridge"]
