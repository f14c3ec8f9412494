"""Flower's settings for the speech platform: `celery -A tasks flower` (run from this folder).

Flower executes this file (its default `--conf`) after reading FLOWER_* variables and the
command line once, and before reading the command line again; so an option given on the
command line still wins. Values come from producer/settings.py, the one place that reads
the environment.

Flower has no authentication by default. This file makes it refuse to start without
credentials (FLOWER_BASIC_AUTH, `--basic-auth` or OAuth `--auth`) unless
SPEECH_FLOWER_LOCAL_TRIAL=1 says the instance is a local trial.

TLS to the broker (amqps:// URLs, SPEECH_TLS_*) comes with the Celery app's settings
(`broker_use_ssl`, producer/celeryconf.py), which Flower's own connection uses. Its Broker
page reads the management API through tornado with the system's trust store only.

CELERY_BROKER_URL may list several broker nodes (`;`): Flower's events fail over along the
list like any Celery client; its Broker page asks the management API on the first node,
or SPEECH_MANAGEMENT_URL when set.
"""

import sys

from tornado.options import options

from producer.brokers import broker_urls, management_url
from producer.settings import settings

_s = settings()

# Credentials given on the command line or as FLOWER_BASIC_AUTH are already parsed here.
basic_auth = list(options.basic_auth or []) or [
    c.strip() for c in _s.flower_basic_auth.split(",") if c.strip()
]
if not (basic_auth or options.auth or _s.flower_local_trial):
    sys.exit(
        "flower: refusing to start without credentials: set FLOWER_BASIC_AUTH=user:password"
        " (or pass --basic-auth=user:password); for a local trial without authentication"
        " set SPEECH_FLOWER_LOCAL_TRIAL=1"
    )
for credential in basic_auth:
    user, _, password = credential.partition(":")
    if not user or not password:
        sys.exit(f"flower: FLOWER_BASIC_AUTH entries must be user:password, got {user!r}")

# Keep the task history across restarts, saved on exit and every state_save_interval ms.
persistent = _s.flower_persistent
db = _s.flower_db
state_save_interval = _s.flower_state_save_interval
# The tasks page: which queue (routing key) a task went to, its arguments as described by
# the producer ("<WAV 88 kB>"), state and runtime.
tasks_columns = "name,uuid,state,routing_key,args,kwargs,received,started,runtime,worker"

# The Broker page's management API: FLOWER_BROKER_API or --broker-api win; then
# SPEECH_MANAGEMENT_URL (shared with `producer status`); else the first broker node's.
if not options.broker_api and _s.management_url.strip().lower() != "off":
    _nodes = broker_urls(_s.broker_url)
    _base = _s.management_url.strip().rstrip("/") or management_url(_nodes[0])
    broker_api = f"{_base}/api/"
