"""Celery's settings for workers and producers, built from `producer.settings`.

Workers load them through `celeryconfig.py` (`celery -A tasks worker -Q asr`), the Client
directly, so queue names, routes, serializers and limits are the same on both sides.
Lowercase names are Celery's own settings or the platform's (read as `app.conf.<name>`).
"""

from producer.algorithms.catalog import catalog as _catalog_of_installed
from producer.algorithms.declare import task_name as _task_name
from producer.settings import settings as _settings
from producer.tls import broker_use_ssl as _broker_use_ssl
from producer.topology import algorithm_queue as _queue

_s = _settings()

# --- Topology -------------------------------------------------------------------------
# Every algorithm has its own durable queue, bound to one durable direct exchange with
# routing key = queue name. The algorithms are declared in producer/algorithms/builtins.py
# (built-ins) and by installed plugins (entry points "speech.algorithms"): see
# producer/algorithms/declare.py.
# An operation is a task, `speech.<algorithm>` or `speech.<algorithm>.<operation>`.
_catalog = _catalog_of_installed()
ALGORITHMS = _catalog.names
EXCHANGE_NAME = _s.exchange
DEAD_LETTER_NAME = _s.dead_letter
max_backlog = _s.max_backlog
max_redeliveries = _s.max_redeliveries
task_queues = tuple(_queue(name) for name in ALGORITHMS)
# Task name -> queue. `speech.ping` has no fixed queue: callers pick the queue to probe.
task_routes = {_task_name(key): {"queue": a.name} for key, (a, _) in _catalog.operations.items()}
task_default_queue = ALGORITHMS[0]
task_default_exchange = EXCHANGE_NAME
task_default_routing_key = ALGORITHMS[0]
# A typo in a queue name must fail loudly, not create a queue nobody consumes.
task_create_missing_queues = False

# --- Broker and results -----------------------------------------------------------------
broker_url = _s.broker_url
# TLS when every URL is amqps://: the broker's certificate verified against SPEECH_TLS_CA
# (or the system's trust store) and its host name checked; SPEECH_TLS_CERT/KEY add a client
# certificate (producer/tls.py). False for amqp:// URLs.
broker_use_ssl = _broker_use_ssl(_s, _s.broker_url)
# Replies travel back on the caller's own reply queue, correlated by task id.
result_backend = "rpc://"
# Results are only ever read by the caller that is waiting for them.
result_persistent = False
broker_connection_timeout = _s.connect_timeout
# AMQP heartbeats for workers, the bridge and the Client's reply connection: a dead or
# hung node, or a silently dropped link, is noticed after ~2 heartbeats (10 s) instead of
# when TCP gives up, minutes later. RabbitMQ advises no less than 5 s. 0 = off.
broker_heartbeat = _s.heartbeat
broker_connection_retry_on_startup = True
# A worker waits for its broker however long it is away (Celery's default gives up after
# 100 attempts, about 100 s at the worker's one attempt per second: tasks/consumer.py).
broker_connection_max_retries = None
# The remote-control queue (`<worker>.celery.pidbox`: inspect, ping from Flower) is not
# exclusive: an exclusive one belongs to the connection that declared it, and a worker
# that reconnects to another cluster node while the broker still counts its old connection
# gets RESOURCE_LOCKED, which Celery treats as unrecoverable (the worker exits). Unused,
# it still expires after control_queue_expires (10 s).
control_queue_exclusive = False
# Publisher confirms: a publish returns only once the broker has the message (or refused
# it: full queue), so nothing is dropped silently under memory or disk alarms.
broker_transport_options = {"confirm_publish": True}
# A producer that cannot publish must say so within seconds, not retry forever.
task_publish_retry_policy = {
    "max_retries": 2,
    "interval_start": 0,
    "interval_step": 0.5,
    "interval_max": 1,
}

# --- Serialization: msgpack only; audio travels as raw bytes, pickle is never accepted -----
task_serializer = "msgpack"
result_serializer = "msgpack"
event_serializer = "json"  # events carry no audio; Flower reads them as json
accept_content = ["msgpack"]
result_accept_content = ["msgpack"]

# --- Delivery and worker behaviour ------------------------------------------------------
# Ack after the task ran, so a worker that dies mid-task leaves the request queued; the
# queue's delivery limit stops a request that kills its worker every time.
task_acks_late = True
task_reject_on_worker_lost = True
# When a worker's broker connection breaks (its node died), tasks already running finish
# and publish their results through a new connection; the broker redelivers their
# unacked requests, which may then run twice (safe: the algorithms are pure functions).
# Cancelling them instead would only delay the caller's answer.
worker_cancel_long_running_tasks_on_connection_loss = False
# Undecodable and refused messages are dead-lettered rather than acked away.
worker_consumer = "tasks.consumer:DeadLetteringConsumer"
# Each process reserves one task beyond the one it runs; with the prefork pool this keeps a
# backlog draining at full speed (the solo pool + multiplier 1 collapses: see bench/).
worker_prefetch_multiplier = _s.prefetch_multiplier
task_track_started = False
worker_send_task_events = False
# Hard limits stay well below RabbitMQ's consumer_timeout (30 min) for late-acked tasks.
task_soft_time_limit = _s.soft_time_limit
task_time_limit = _s.hard_time_limit
# A leak cannot grow a worker without bound: a child is replaced after this many tasks or
# once its resident memory passes this many KiB (checked after each task).
worker_max_tasks_per_child = _s.max_tasks_per_child
worker_max_memory_per_child = _s.max_memory_per_child_kb
worker_hijack_root_logger = False
# Each pool process loads and warms its models before it reports "up"; loading torch and a
# speaker encoder takes several seconds on a busy machine, beyond Celery's 4 s default,
# after which the parent SIGKILLs the child and forks another, forever.
worker_proc_alive_timeout = _s.proc_alive_timeout

# --- Batched inference (operations declared with `batch=`, producer/algorithms/declare.py) -------
batch_size = _s.batch_size
batch_wait_ms = _s.batch_wait_ms
batch_max_bytes = _s.batch_max_bytes

# --- Limits the workers check again -------------------------------------------------------
max_payload_bytes = _s.max_payload_bytes
max_audio_seconds = _s.max_audio_seconds
# The largest answer a worker sends: below RabbitMQ's max_message_size (128 MiB by
# default), which would refuse a bigger one at publish time (406 PRECONDITION_FAILED).
max_result_bytes = _s.max_result_bytes

# --- Operations: events and task logs ---------------------------------------------------
# The producer announces each task (task-sent event) with its queue and routing key, so
# Flower can show which queue a task went to; workers only add their own events while
# Flower (or `celery events`) asks for them.
task_send_sent_event = _s.sent_events
# One line per finished task: "keyvalue" (task_id=... queue=asr ...) or "json".
task_log_format = _s.task_log_format
