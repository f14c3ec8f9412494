"""Celery settings for the speech platform: the one place that reads the environment.

Workers (`celery -A tasks worker -Q asr`) and producers (`producer.Client`) both load
this module, so queue names, routes and serializers are declared once for both sides.
"""

import os

from kombu import Exchange, Queue

from producer.algorithms import task_name
from producer.catalog import catalog


def _env(name: str, default: str) -> str:
    return os.environ.get(name, default)


def _env_int(name: str, default: int) -> int:
    return int(_env(name, str(default)))


def _env_float(name: str, default: float) -> float:
    return float(_env(name, str(default)))


# --- Topology -------------------------------------------------------------------------
# Every algorithm has its own durable queue, bound to one durable direct exchange with
# routing key = queue name. The algorithms are declared in producer/builtins.py (built-ins)
# and by installed plugins (entry points "speech.algorithms"): see producer/algorithms.py.
# An operation is a task, `speech.<algorithm>` or `speech.<algorithm>.<operation>`.
_catalog = catalog()
ALGORITHMS = _catalog.names
EXCHANGE_NAME = _env("SPEECH_EXCHANGE", "speech")
speech_exchange = Exchange(EXCHANGE_NAME, type="direct", durable=True)

# What the queues reject or give up on goes to one dead-letter queue, for an operator to
# inspect: refused or undecodable messages, unknown tasks, requests over the redelivery cap,
# requests that expired unrun. Nothing vanishes silently.
DEAD_LETTER_NAME = _env("SPEECH_DEAD_LETTER", "speech.dead")
dead_letter_exchange = Exchange(DEAD_LETTER_NAME, type="fanout", durable=True)
dead_letter_queue = Queue(
    DEAD_LETTER_NAME,
    dead_letter_exchange,
    durable=True,
    queue_arguments={"x-queue-type": "quorum"},
)
# Peak shaving with a known bound: past this many waiting requests the broker refuses new
# ones and the producer raises Overloaded at once (publisher confirms carry the refusal).
max_backlog = _env_int("SPEECH_MAX_BACKLOG", 1000)
# A request that kills its worker is redelivered at most this many times, then dead-lettered.
max_redeliveries = _env_int("SPEECH_MAX_REDELIVERIES", 3)


def algorithm_queue(name: str) -> Queue:
    # Quorum queues: replicated when the broker is a cluster, and they count deliveries
    # (x-delivery-limit), which classic queues cannot.
    return Queue(
        name,
        speech_exchange,
        routing_key=name,
        durable=True,
        queue_arguments={
            "x-queue-type": "quorum",
            "x-dead-letter-exchange": DEAD_LETTER_NAME,
            "x-delivery-limit": max_redeliveries,
            # Quorum queues admit one message past x-max-length before refusing
            # (measured on 3.10), so this bounds the backlog at exactly max_backlog.
            "x-max-length": max(0, max_backlog - 1),
            "x-overflow": "reject-publish",
        },
    )


task_queues = tuple(algorithm_queue(name) for name in ALGORITHMS)
# Task name -> queue. `speech.ping` has no fixed queue: callers pick the queue to probe.
task_routes = {task_name(key): {"queue": a.name} for key, (a, _) in _catalog.operations.items()}
task_default_queue = ALGORITHMS[0]
task_default_exchange = EXCHANGE_NAME
task_default_routing_key = ALGORITHMS[0]
# A typo in a queue name must fail loudly, not create a queue nobody consumes.
task_create_missing_queues = False

# --- Broker and results -----------------------------------------------------------------
broker_url = _env("CELERY_BROKER_URL", "amqp://guest:guest@localhost:5672//")
# Replies travel back on the caller's own reply queue, correlated by task id.
result_backend = "rpc://"
# Results are only ever read by the caller that is waiting for them.
result_persistent = False
broker_connection_timeout = _env_float("SPEECH_CONNECT_TIMEOUT", 4.0)
# AMQP heartbeats for workers, the bridge and the Client's reply connection: a dead or
# hung node, or a silently dropped link, is noticed after ~2 heartbeats (10 s) instead of
# when TCP gives up, minutes later. RabbitMQ advises no less than 5 s. 0 = off.
broker_heartbeat = _env_float("SPEECH_HEARTBEAT", 5.0)
# Seconds the Client waits for a broker node before asking it a question, and again for
# the answer: a publish unconfirmed, or a reply connection silent, that long makes it ask
# (basic.qos); no answer (a hung node), or still no confirm (a node cut off from its
# queues' majority), and the Client leaves that node for the next (producer/links.py).
# Well below any call's timeout, well above a loaded broker's confirm latency.
node_patience = _env_float("SPEECH_NODE_PATIENCE", 2.0)
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
worker_prefetch_multiplier = _env_int("SPEECH_PREFETCH_MULTIPLIER", 1)
task_track_started = False
worker_send_task_events = False
# Hard limits stay well below RabbitMQ's consumer_timeout (30 min) for late-acked tasks.
task_soft_time_limit = _env_int("SPEECH_SOFT_TIME_LIMIT", 120)
task_time_limit = _env_int("SPEECH_HARD_TIME_LIMIT", 150)
# A leak cannot grow a worker without bound: a child is replaced after this many tasks or
# once its resident memory passes this many KiB (checked after each task).
worker_max_tasks_per_child = _env_int("SPEECH_MAX_TASKS_PER_CHILD", 2000)
worker_max_memory_per_child = _env_int("SPEECH_MAX_MEMORY_PER_CHILD_KB", 2_000_000)
worker_hijack_root_logger = False
# Each pool process loads and warms its models before it reports "up"; loading torch and a
# speaker encoder takes several seconds on a busy machine, beyond Celery's 4 s default,
# after which the parent SIGKILLs the child and forks another, forever.
worker_proc_alive_timeout = _env_float("SPEECH_PROC_ALIVE_TIMEOUT", 120.0)

# --- Batched inference (operations declared with `batch=`, producer/algorithms.py) -------
# A worker process runs requests of such an operation that arrive together in one pass:
# at most this many (also capped by the declaration's max_batch); 1 turns batching off.
batch_size = _env_int("SPEECH_BATCH_SIZE", 16)
# Milliseconds a free process waits for more requests before it starts a batch; 0 starts
# at once, and requests arriving while a batch runs make the next one.
batch_wait_ms = _env_float("SPEECH_BATCH_WAIT_MS", 0.0)
# Requests larger than this (bytes of audio) run alone, under their own time limits: a
# batch holds short clips only, so it ends well within one request's limits.
batch_max_bytes = _env_int("SPEECH_BATCH_MAX_BYTES", 2 * 1024 * 1024)

# --- Input limits (checked by the producer before sending, and again by the worker) ----
max_payload_bytes = _env_int("SPEECH_MAX_PAYLOAD_BYTES", 32 * 1024 * 1024)
max_audio_seconds = _env_float("SPEECH_MAX_AUDIO_SECONDS", 600.0)
# The largest answer a worker sends: below RabbitMQ's max_message_size (128 MiB by
# default), which would refuse a bigger one at publish time (406 PRECONDITION_FAILED).
# Requests whose answer would be larger get a ResultTooLarge error instead. Raise it only
# together with the broker's max_message_size.
max_result_bytes = _env_int("SPEECH_MAX_RESULT_BYTES", 64 * 1024 * 1024)
# Default seconds a producer waits for an answer.
default_timeout = _env_float("SPEECH_TIMEOUT", 60.0)
# The longest timeout any call may ask for, through every door: a bridge request stays
# unacked while it runs, and RabbitMQ closes a channel holding one past its
# consumer_timeout (30 min by default); no algorithm's hard time limit comes near it.
max_timeout = _env_float("SPEECH_MAX_TIMEOUT", 900.0)

# --- HTTP gateway (`python -m producer serve`) and AMQP bridge (`python -m producer bridge`)
gateway_host = _env("SPEECH_GATEWAY_HOST", "127.0.0.1")
gateway_port = _env_int("SPEECH_GATEWAY_PORT", 8000)
# Producer calls block a thread each: this many run at once, later requests wait their turn.
gateway_threads = _env_int("SPEECH_GATEWAY_THREADS", 32)
# Bytes of request bodies the gateway holds at once, all uploads together (each is refused
# at the payload limit as it arrives); past it, new bytes get 503 Overloaded + Retry-After.
gateway_upload_budget = _env_int("SPEECH_GATEWAY_UPLOAD_BUDGET", 8 * max_payload_bytes)
# Uploads held at once by one caller (an API key, or a client address without keys), a
# share of the budget above: past it that caller gets 429 + Retry-After, others go on.
gateway_client_upload_share = _env_int(
    "SPEECH_GATEWAY_CLIENT_UPLOADS", max(gateway_upload_budget // 2, max_payload_bytes)
)
# Connections one client address holds open at once; more are answered 429 and closed.
gateway_client_connections = _env_int("SPEECH_GATEWAY_CLIENT_CONNECTIONS", 50)
# Seconds a request's header block may take to arrive (from the connection's first byte,
# or the previous answer); slower ones are answered 408 and closed.
gateway_header_timeout = _env_float("SPEECH_GATEWAY_HEADER_TIMEOUT", 10.0)
# Seconds a request body may take in all; a body that sends less than
# SPEECH_GATEWAY_MIN_RATE bytes/s over any window of SPEECH_GATEWAY_RATE_WINDOW seconds is
# cut sooner (a stalled upload is held at most two windows). Either way the connection closes.
gateway_body_timeout = _env_float("SPEECH_GATEWAY_BODY_TIMEOUT", 600.0)
gateway_min_rate = _env_int("SPEECH_GATEWAY_MIN_RATE", 8192)
gateway_rate_window = _env_float("SPEECH_GATEWAY_RATE_WINDOW", 10.0)
# When set, every /v1 request must carry this key in the X-API-Key header.
gateway_api_key = _env("SPEECH_API_KEY", "")
# Seconds an overloaded gateway asks clients to wait before retrying (Retry-After).
gateway_retry_after = _env_int("SPEECH_RETRY_AFTER", 5)
# Seconds GET /v1/health waits for each queue's ping.
gateway_health_timeout = _env_float("SPEECH_HEALTH_TIMEOUT", 3.0)
# Requests the bridge runs at once (also its prefetch: more wait unacked in RabbitMQ).
bridge_concurrency = _env_int("SPEECH_BRIDGE_CONCURRENCY", 16)
# The bridge consumes `rpc.<algorithm>` on the default exchange; requests it cannot answer
# (no usable reply_to, or over the delivery limit) are dead-lettered through this exchange
# into this queue.
bridge_queue_prefix = "rpc."
bridge_dead_letter_exchange = _env("SPEECH_BRIDGE_DLX", "rpc.dlx")
bridge_dead_letter_queue = _env("SPEECH_BRIDGE_DEAD_QUEUE", "rpc.dead")
# A request whose reply could not be delivered twice (the bridge died with it, or the
# broker closed the bridge's connection over it) is dead-lettered, not taken again forever.
bridge_delivery_limit = _env_int("SPEECH_BRIDGE_DELIVERY_LIMIT", 1)
# Replies larger than this are answered with PayloadTooLarge instead: RabbitMQ's default
# max_message_size (3.10: 128 MiB); set it to the broker's own value if that is lower.
bridge_max_reply_bytes = _env_int("SPEECH_BRIDGE_MAX_REPLY_BYTES", 128 * 1024 * 1024)
# --- Recordings and jobs (the gateway's /v1/transcribe and /v1/jobs) ----------------------
# The largest recording /v1/transcribe and a transcribe job take (an hour of 16 kHz 16-bit
# mono WAV is 115 MB); it is spooled to the data folder while counted, never held in memory.
max_recording_bytes = _env_int("SPEECH_MAX_RECORDING_BYTES", 128 * 1024 * 1024)
# Where the gateway keeps spooled uploads and, by default, its job store (a SQLite file).
data_dir = _env("SPEECH_DATA_DIR", "speech-data")
# The job store: "" = SQLite in the data folder; a postgresql:// URL lets several gateways
# share jobs (each runs any of them; a dead gateway's jobs are taken over).
jobs_db = _env("SPEECH_JOBS_DB", "")
# Jobs one gateway runs at once, in its own threads.
job_threads = _env_int("SPEECH_JOB_THREADS", 2)
# Seconds a gateway's claim on a running job lasts without a heartbeat (a third of it):
# a gateway that dies mid-job leaves it to another gateway after this long.
job_lease = _env_float("SPEECH_JOB_LEASE", 30.0)
# Seconds a finished job (done, failed, cancelled) is kept before it is removed.
job_retention = _env_float("SPEECH_JOB_RETENTION", 86400.0)
# Jobs queued or running at once: per caller (an API key, or a client address when the
# gateway has no key) and all together; past either, POST /v1/jobs answers 429.
jobs_per_caller = _env_int("SPEECH_JOBS_PER_CALLER", 20)
jobs_max = _env_int("SPEECH_JOBS_MAX", 1000)
# Bytes of audio the job store holds for queued and running jobs; past it, POST /v1/jobs
# answers 507 (Insufficient Storage) before anything is stored.
jobs_max_bytes = _env_int("SPEECH_JOBS_MAX_BYTES", 4 * 1024**3)
# Seconds a job may wait queued (never started, or given back to wait for a worker); past
# it, it ends failed with a JobExpired error.
job_max_queued_seconds = _env_float("SPEECH_JOB_MAX_QUEUED_SECONDS", 3600.0)
# Secret for the HMAC-SHA256 signature of job callbacks; jobs with a callback need it.
callback_secret = _env("SPEECH_CALLBACK_SECRET", "")
# Attempts to deliver a job's callback (backing off from 1 s up to 5 min) before giving up.
callback_attempts = _env_int("SPEECH_CALLBACK_ATTEMPTS", 10)
# --- Operations: events, task logs, Flower, status --------------------------------------
# The producer announces each task (task-sent event) with its queue and routing key, so
# Flower can show which queue a task went to; workers only add their own events while
# Flower (or `celery events`) asks for them.
task_send_sent_event = _env("SPEECH_SENT_EVENTS", "1") not in ("0", "false", "no")
# One line per finished task: "keyvalue" (task_id=... queue=asr ...) or "json".
task_log_format = _env("SPEECH_TASK_LOG_FORMAT", "keyvalue")
# Flower (read by flowerconfig.py). Credentials are "user:password[,user2:password2]".
flower_basic_auth = _env("FLOWER_BASIC_AUTH", "")
# Flower refuses to start without credentials unless this says it is a local trial.
flower_local_trial = _env("SPEECH_FLOWER_LOCAL_TRIAL", "0") in ("1", "true", "yes")
flower_db = _env("FLOWER_DB", "flower.db")
flower_persistent = _env("FLOWER_PERSISTENT", "1") not in ("0", "false", "no")
# Save Flower's state every minute too, so a crash loses at most a minute of history.
flower_state_save_interval = _env_int("FLOWER_STATE_SAVE_INTERVAL", 60_000)
# RabbitMQ's management API, for the extra columns of `producer status`: "" derives
# http://<broker host>:15672 with the broker's credentials; "off" never asks it.
management_url = _env("SPEECH_MANAGEMENT_URL", "")
