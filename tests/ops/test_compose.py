"""The docker deployment's files, validated by Debian's docker-compose (tests/docker runs them)."""

import os
import socket
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from producer.algorithms.builtins import BUILTINS
from tests.docs import snippet
from tests.helpers import REPO

COMPOSE = REPO / "docker" / "docker-compose.yml"
CLUSTER = REPO / "docker" / "docker-compose.cluster.yml"
PLUGINS = REPO / "docker" / "docker-compose.plugins.yml"
GPU = REPO / "docker" / "docker-compose.gpu.yml"
TLS = REPO / "docker" / "docker-compose.tls.yml"
CLUSTER_CONF = REPO / "docker" / "rabbitmq-cluster.conf"
ENV_EXAMPLE = REPO / "docker" / ".env.example"
INFRA = {"rabbitmq", "flower", "gateway", "bridge", "postgres"}
SERVERS = {"flower", "gateway", "bridge"}  # the server image
NODES = ("rabbitmq", "rabbitmq2", "rabbitmq3")
# The algorithms docker-compose.yml serves: the built-ins (plugins come in an override).
BUILTIN_QUEUES = tuple(a.name for a in BUILTINS)


def _config(env_file: Path, *overrides: Path) -> subprocess.CompletedProcess[str]:
    # Only the env file may provide the deployment's variables.
    prefixes = (
        "RABBITMQ_", "FLOWER_", "BROKER_", "AMQP_", "SPEECH_", "POSTGRES_", "BASE_IMAGE",
        "GPU_BASE_IMAGE",
    )  # fmt: skip
    env = {k: v for k, v in os.environ.items() if not k.startswith(prefixes)}
    files = [arg for path in (COMPOSE, *overrides) for arg in ("-f", str(path))]
    return subprocess.run(
        ["docker-compose", *files, "--env-file", str(env_file), "config"],
        capture_output=True, text=True, timeout=60, env=env,
    )  # fmt: skip


def _load(env_file: Path, *overrides: Path) -> dict[str, Any]:
    done = _config(env_file, *overrides)
    assert done.returncode == 0, done.stderr
    return yaml.safe_load(done.stdout)


def _volume_source(volume: str | dict[str, Any]) -> str:
    # docker-compose 1.29 renders "name:/path:rw"; newer versions render a mapping.
    return volume["source"] if isinstance(volume, dict) else volume.split(":", 1)[0]


@pytest.fixture(scope="module")
def config() -> dict[str, Any]:
    done = _config(ENV_EXAMPLE)
    assert done.returncode == 0, done.stderr
    return yaml.safe_load(done.stdout)


@pytest.fixture(scope="module")
def cluster_config() -> dict[str, Any]:
    """docker-compose.yml with the three-node override, as `docker compose` would run it."""
    done = _config(ENV_EXAMPLE, CLUSTER)
    assert done.returncode == 0, done.stderr
    return yaml.safe_load(done.stdout)


def test_every_builtin_algorithm_has_a_worker_service(config: dict[str, Any]) -> None:
    services = config["services"]
    assert set(services) == INFRA | set(BUILTIN_QUEUES)
    for algorithm in BUILTIN_QUEUES:
        assert algorithm in services, f"docker-compose.yml has no service for {algorithm!r}"
        command = services[algorithm]["command"]
        assert command[:4] == ["celery", "-A", "tasks", "worker"]
        assert command[command.index("-Q") + 1] == algorithm
        assert command[command.index("-n") + 1] == f"{algorithm}@%h"


def _seconds(duration: str) -> float:
    """A compose duration (`160s`, `8m10s`, or `docker-compose config`'s seconds) in seconds."""
    units = {"h": 3600, "m": 60, "s": 1}
    total, number = 0.0, ""
    for char in str(duration):
        if char.isdigit() or char == ".":
            number += char
        else:
            total, number = total + float(number) * units[char], ""
    return total + (float(number) if number else 0)


def test_a_stopping_worker_lets_its_longest_request_finish(config: dict[str, Any]) -> None:
    # A warm shutdown waits for the running task; a grace shorter than the algorithm's hard
    # time limit kills it midway (redelivered, but the work so far is lost)
    for algorithm in BUILTINS:
        limit = max(op.time_limit for op in algorithm.operations)
        grace = _seconds(config["services"][algorithm.name]["stop_grace_period"])
        assert grace > limit, (algorithm.name, grace, limit)


def test_workers_scale_health_check_and_restart(config: dict[str, Any]) -> None:
    for name, service in config["services"].items():
        assert service.get("restart") == "unless-stopped", name
        assert service.get("healthcheck", {}).get("test"), name
        if name not in INFRA:
            # `--scale asr=4` needs services without fixed names or host ports
            assert "container_name" not in service and "ports" not in service, name
            assert service["depends_on"]["rabbitmq"]["condition"] == "service_healthy"
            assert service["build"]["dockerfile"] == "docker/Dockerfile"
            assert service["build"]["target"] == "worker", name
    for name in SERVERS:
        assert config["services"][name]["build"]["target"] == "server", name
        assert config["services"][name]["depends_on"]["rabbitmq"]["condition"] == "service_healthy"


def test_every_service_has_its_own_health_check(config: dict[str, Any]) -> None:
    services = config["services"]
    checks = {name: " ".join(s["healthcheck"]["test"]) for name, s in services.items()}
    assert "rabbitmq-diagnostics" in checks["rabbitmq"]
    assert "/healthcheck" in checks["flower"]
    assert "healthcheck.py gateway" in checks["gateway"]  # GET /v1/health of the process
    assert "healthcheck.py bridge" in checks["bridge"]
    assert "pg_isready" in checks["postgres"]
    for queue in BUILTIN_QUEUES:  # a worker pings its own node
        assert 'inspect ping -d "$${QUEUE}@$${HOSTNAME}"' in checks[queue], queue
        assert services[queue]["environment"]["QUEUE"] == queue


def test_the_doors_run_with_their_state_on_volumes(config: dict[str, Any]) -> None:
    services = config["services"]
    gateway, bridge = services["gateway"], services["bridge"]
    assert gateway["command"][:4] == ["python", "-m", "producer", "serve"]
    assert bridge["command"] == ["python", "-m", "producer", "bridge"]
    env = gateway["environment"]
    assert env["SPEECH_API_KEY"] == _env_example()["SPEECH_API_KEY"]
    assert env["SPEECH_DATA_DIR"] == "/data"  # absolute: the image's user owns only /data
    assert _volume_source(gateway["volumes"][0]) == "gateway-data"
    assert services["postgres"]["profiles"] == ["postgres"]  # optional: shared job store
    assert bridge["environment"]["CELERY_BROKER_URL"] == env["CELERY_BROKER_URL"]


def test_host_ports_come_from_the_env_file(tmp_path: Path) -> None:
    # Given other host ports in docker/.env (the stack beside another RabbitMQ)
    ports = {"SPEECH_AMQP_PORT": 35001, "SPEECH_MANAGEMENT_PORT": 35002,
             "SPEECH_FLOWER_PORT": 35003, "SPEECH_GATEWAY_PORT": 35004}  # fmt: skip
    env = tmp_path / "ports.env"
    lines = [x for x in ENV_EXAMPLE.read_text().splitlines() if x.split("=")[0] not in ports]
    env.write_text("\n".join([*lines, *(f"{k}={v}" for k, v in ports.items())]) + "\n")
    services = _load(env)["services"]
    published = {
        int(str(p).split(":")[-2]) if isinstance(p, str) else int(p["published"])
        for name in ("rabbitmq", "flower", "gateway")
        for p in services[name]["ports"]
    }
    # Then those are the ports published, and only those
    assert published == set(ports.values())


def test_rabbitmq_uses_the_env_file_account_and_a_named_volume(config: dict[str, Any]) -> None:
    rabbit = config["services"]["rabbitmq"]
    # the official management image unless RABBITMQ_IMAGE names another (make images)
    assert rabbit["image"] == "rabbitmq:3.13-management"
    user = rabbit["environment"]["RABBITMQ_DEFAULT_USER"]
    assert user and user != "guest"
    assert _volume_source(rabbit["volumes"][0]) == "rabbitmq-data"
    assert "rabbitmq-data" in config["volumes"]
    broker = config["services"]["asr"]["environment"]["CELERY_BROKER_URL"]
    assert broker.startswith(f"amqp://{user}:") and "@rabbitmq:5672/" in broker


def test_flower_requires_auth_and_keeps_its_state(config: dict[str, Any]) -> None:
    flower = config["services"]["flower"]
    assert flower["command"][:4] == ["celery", "-A", "tasks", "flower"]
    user, _, password = flower["environment"]["FLOWER_BASIC_AUTH"].partition(":")
    assert user and password
    assert flower["environment"]["FLOWER_DB"].startswith("/data/")
    assert _volume_source(flower["volumes"][0]) == "flower-data"


def test_without_credentials_the_deployment_does_not_render(tmp_path: Path) -> None:
    empty = tmp_path / "empty.env"
    empty.write_text("")
    done = _config(empty)
    assert done.returncode != 0
    assert "set RABBITMQ_USER in docker/.env" in done.stderr


def _stages(dockerfile: str) -> dict[str, str]:
    """Build stage name -> its instructions."""
    parts = dockerfile.split("\nFROM ")[1:]
    return {part.split("\n", 1)[0].split(" AS ")[-1]: part for part in parts}


def test_the_image_is_built_from_what_the_repository_ships() -> None:
    dockerfile = (REPO / "docker" / "Dockerfile").read_text()
    stages = _stages(dockerfile)
    for role in ("worker", "server"):
        stage = stages[role]
        lock = f"requirements/{role}.txt"
        deps = stages[f"{role}-deps"]
        assert f"COPY {lock}" in deps and f"-r {lock}" in deps, role  # its role's set only
        assert "requirements.txt" not in deps.replace(lock, ""), role
        assert "requirements.txt" not in stage.replace(lock, ""), role
        for path in ("celeryconfig.py", "flowerconfig.py", "tasks/", "producer/", lock):
            assert f"COPY {path}" in stage or f" {path} " in stage, (role, path)
            assert (REPO / path).exists(), path
    assert "warm_models" in stages["worker"] and "warm_models" not in stages["server"]
    assert "warm_models(list(celeryconfig.ALGORITHMS))" in dockerfile  # models baked in
    # Locked sets only from the wheelhouse (`make wheelhouse`), no index: behind a firewall
    for role in ("worker", "server"):
        deps = stages[f"{role}-deps"]
        assert "COPY docker/wheelhouse/ /wheels/" in deps, role
        assert f"pip install --no-index --find-links /wheels -r requirements/{role}.txt" in deps
        assert f"COPY --from={role}-deps /opt/venv /opt/venv" in stages[role], role
    assert "torch==2.13.0+cpu" in (REPO / "requirements" / "worker.txt").read_text()  # not CUDA
    assert "\nARG BASE_IMAGE=python:3.11-slim-bookworm\n" in dockerfile
    assert "USER speech" in stages["worker"] and "USER speech" in stages["server"]  # non-root
    assert "SPEECH_DATA_DIR=/data" in stages["server"]  # never relative to /app
    assert "docker/.env\n" in (REPO / ".dockerignore").read_text()


@pytest.fixture(scope="module")
def plugins_config() -> dict[str, Any]:
    """docker-compose.yml with the plugins' override, as `docker compose` would run it."""
    return _load(ENV_EXAMPLE, PLUGINS)


def _option(command: list[str], flag: str) -> str:
    return command[command.index(flag) + 1]


def test_plugin_workers_come_from_an_override_on_the_same_image(
    config: dict[str, Any], plugins_config: dict[str, Any]
) -> None:
    services = plugins_config["services"]
    # The deployment's own services are untouched by the override
    assert {name: services[name] for name in config["services"]} == config["services"]
    asr = services["asr"]
    # The example plugin's worker serves its queue under its name, like a built-in's
    kws = services["kws"]
    assert kws["command"][:4] == ["celery", "-A", "tasks", "worker"]
    assert _option(kws["command"], "-Q") == "kws" and _option(kws["command"], "-n") == "kws@%h"
    assert kws["environment"]["QUEUE"] == "kws"
    for name in set(services) - set(config["services"]):
        service = services[name]
        # the built-in workers' image (with the plugins in it), health check and broker
        assert service["image"] == asr["image"] and service["build"] == asr["build"], name
        assert service["healthcheck"] == asr["healthcheck"], name
        assert service["depends_on"] == asr["depends_on"], name
        assert service["restart"] == "unless-stopped", name
        assert "container_name" not in service and "ports" not in service, name
        broker = service["environment"]["CELERY_BROKER_URL"]
        assert broker == asr["environment"]["CELERY_BROKER_URL"], name


def test_a_gpu_algorithm_gets_one_single_process_worker_per_gpu(
    plugins_config: dict[str, Any],
) -> None:
    services = plugins_config["services"]
    gpu = {n: s for n, s in services.items() if "CUDA_VISIBLE_DEVICES" in s["environment"]}
    assert len(gpu) >= 2, "the example shows two GPUs"
    devices = []
    for name, service in gpu.items():
        assert _option(service["command"], "-c") == "1", name  # one model per GPU
        assert service["profiles"] == ["gpu"], name  # started only with --profile gpu
        (device,) = service["deploy"]["resources"]["reservations"]["devices"]
        assert device["capabilities"] == ["gpu"] and len(device["device_ids"]) == 1, name
        devices += device["device_ids"]
        # the one GPU a container is given is its device 0
        assert service["environment"]["CUDA_VISIBLE_DEVICES"] == "0", name
    assert len(set(devices)) == len(devices), "each GPU has its own worker"
    assert len({_option(s["command"], "-Q") for s in gpu.values()}) == 1  # one queue, N GPUs


def test_plugins_named_in_the_env_file_go_into_every_image(tmp_path: Path) -> None:
    # Given plugins named in docker/.env
    env = tmp_path / "plugins.env"
    specs = "speech-kws==1.2 speech-vc>=0.3"
    env.write_text(
        ENV_EXAMPLE.read_text().replace("\nSPEECH_PLUGINS=\n", f"\nSPEECH_PLUGINS={specs}\n")
    )
    # Then every image built, the server's and the workers', is given them
    services = _load(env, PLUGINS)["services"]
    built = {name: s["build"] for name, s in services.items() if "build" in s}
    assert set(built) == set(services) - {"rabbitmq", "postgres"}
    assert {b["args"]["PLUGINS"] for b in built.values()} == {specs}
    assert {b["target"] for b in built.values()} == {"worker", "server"}


def test_the_images_install_the_plugins_and_check_they_load() -> None:
    stages = _stages((REPO / "docker" / "Dockerfile").read_text())
    for role in ("worker", "server"):
        stage = stages[role]
        assert 'ARG PLUGINS=""' in stage and "$PLUGINS" in stage, role
        assert (
            "COPY docker/plugins/ /tmp/plugins/" in stage and "--find-links /tmp/plugins" in stage
        )
        assert "assert not c.errors" in stage, role  # a plugin that fails to load fails the build
    worker, server = stages["worker"], stages["server"]
    # worker: with their dependencies, held to the lock, before the models are warmed
    assert "-c requirements/worker.txt $PLUGINS" in worker
    assert worker.index("$PLUGINS") < worker.index("warm_models")
    # server: the declarations only
    assert "--no-deps" in server
    assert (REPO / "docker" / "plugins").is_dir()


def _broker_users(config: dict[str, Any]) -> dict[str, str]:
    """Service -> CELERY_BROKER_URL, for every service that talks to the broker."""
    services = config["services"].items()
    return {
        name: env["CELERY_BROKER_URL"]
        for name, service in services
        if "CELERY_BROKER_URL" in (env := service.get("environment") or {})
    }


def test_cluster_override_runs_three_nodes_with_one_cookie(cluster_config: dict[str, Any]) -> None:
    services = cluster_config["services"]
    nodes = [services[name] for name in NODES]
    cookies = {node["environment"]["RABBITMQ_ERLANG_COOKIE"] for node in nodes}
    assert len(cookies) == 1 and "" not in cookies
    assert cookies == {_env_example()["RABBITMQ_CLUSTER_COOKIE"]}
    for name, node in zip(NODES, nodes, strict=True):
        assert node["hostname"] == name  # node name rabbit@<hostname>, as the conf lists it
        assert node["image"] == services["rabbitmq"]["image"]
        assert node["environment"]["RABBITMQ_DEFAULT_USER"] != "guest"
        assert node.get("healthcheck", {}).get("test"), name
        assert node.get("restart") == "unless-stopped", name
        mounts = {_volume_source(v): v for v in node["volumes"]}
        assert str(CLUSTER_CONF) in mounts, name
        assert "/etc/rabbitmq/conf.d/" in str(mounts[str(CLUSTER_CONF)])
    # each node keeps its own data
    data = [_volume_source(v) for n in nodes for v in n["volumes"] if "/var/lib/rabbitmq" in str(v)]
    assert len(set(data)) == 3 and all(d in cluster_config["volumes"] for d in data)


def test_every_broker_user_gets_the_three_node_urls(cluster_config: dict[str, Any]) -> None:
    users = _broker_users(cluster_config)
    # the workers and Flower, and the gateway and the bridge where the deployment has them
    expected = {*BUILTIN_QUEUES, "flower"}
    expected |= {"gateway", "bridge"} & set(cluster_config["services"])
    assert expected <= set(users), expected - set(users)
    for name, url in users.items():
        hosts = [u.split("@", 1)[1].split("/", 1)[0] for u in url.split(";")]
        assert hosts == ["rabbitmq:5672", "rabbitmq2:5672", "rabbitmq3:5672"], (name, url)
        user = _env_example()["RABBITMQ_USER"]
        assert all(u.startswith(f"amqp://{user}:") for u in url.split(";")), name
        depends = cluster_config["services"][name]["depends_on"]
        assert all(depends[node]["condition"] == "service_healthy" for node in NODES), name


def test_cluster_conf_lists_the_three_nodes() -> None:
    conf = dict(
        line.split(" = ", 1)
        for line in CLUSTER_CONF.read_text().splitlines()
        if line and not line.startswith("#")
    )
    assert conf["cluster_formation.peer_discovery_backend"] == "classic_config"
    listed = {v for k, v in conf.items() if k.startswith("cluster_formation.classic_config.nodes.")}
    assert listed == {f"rabbit@{name}" for name in NODES}
    assert conf["cluster_partition_handling"] == "pause_if_all_down"
    assert conf["cluster_partition_handling.pause_if_all_down.recover"] == "autoheal"


def test_without_a_cookie_the_cluster_does_not_render(tmp_path: Path) -> None:
    env = tmp_path / "no-cookie.env"
    lines = ENV_EXAMPLE.read_text().splitlines()
    env.write_text("\n".join(x for x in lines if not x.startswith("RABBITMQ_CLUSTER_COOKIE=")))
    done = _config(env, CLUSTER)
    assert done.returncode != 0
    assert "set RABBITMQ_CLUSTER_COOKIE in docker/.env" in done.stderr


def _env_example() -> dict[str, str]:
    lines = ENV_EXAMPLE.read_text().splitlines()
    return dict(x.split("=", 1) for x in lines if "=" in x and not x.startswith("#"))


def _made_env(path: Path) -> dict[str, str]:
    """What `make up` writes to docker/.env when there is none (docker/images.sh env)."""
    done = subprocess.run(
        ["docker/images.sh", "env"], cwd=REPO, capture_output=True, text=True, timeout=60,
        env={**os.environ, "SPEECH_ENV_FILE": str(path)},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    lines = path.read_text().splitlines()
    return dict(x.split("=", 1) for x in lines if "=" in x and not x.startswith("#"))


def test_make_up_makes_an_env_file_with_fresh_secrets_and_free_ports(tmp_path: Path) -> None:
    first, second = _made_env(tmp_path / "a.env"), _made_env(tmp_path / "b.env")
    example = _env_example()
    assert set(first) == set(example)
    secrets = {k for k, v in example.items() if v.startswith("change-me")}
    assert secrets >= {"RABBITMQ_PASSWORD", "SPEECH_API_KEY", "RABBITMQ_CLUSTER_COOKIE"}
    for key in secrets:
        assert "change-me" not in first[key] and first[key] != second[key], key
    # a default port this host already uses (its own RabbitMQ on 5672) is replaced
    for key in ("SPEECH_AMQP_PORT", "SPEECH_GATEWAY_PORT"):
        port = int(first[key])
        with socket.socket() as probe:
            assert probe.connect_ex(("127.0.0.1", port)) != 0 or port != int(example[key]), key
    assert _config(tmp_path / "a.env").returncode == 0
    assert (tmp_path / "a.env").stat().st_mode & 0o077 == 0  # secrets: the owner's only


def test_tls_override_mounts_the_certificates_as_secrets_never_into_images(
    tmp_path: Path,
) -> None:
    # Given a host folder of certificates named in the env file
    env_file = tmp_path / ".env"
    env_file.write_text(ENV_EXAMPLE.read_text() + f"SPEECH_TLS_DIR={tmp_path}\n")
    config = _load(env_file, TLS)
    services, secrets = config["services"], config["secrets"]
    # Then every secret is a file of that folder, mounted only, and every broker user
    # connects with amqps:// and the TLS settings pointing at its secrets
    assert {s["file"] for s in secrets.values()} == {str(tmp_path / name) for name in secrets}
    users = _broker_users(config)
    assert {*BUILTIN_QUEUES, "flower", "gateway", "bridge"} <= set(users)
    for name, url in users.items():
        env, mounted = services[name]["environment"], _secret_names(services[name])
        assert url.startswith("amqps://") and ":5671/" in url, (name, url)
        for variable, secret in (("CA", "ca.pem"), ("CERT", "client.pem"), ("KEY", "client.key")):
            assert env[f"SPEECH_TLS_{variable}"] == f"/run/secrets/{secret}", name
            assert secret in mounted, name
    gateway = services["gateway"]["environment"]
    assert gateway["SPEECH_GATEWAY_TLS_CERT"] == "/run/secrets/server.pem"
    assert {"server.pem", "server.key"} <= _secret_names(services["gateway"])
    broker = services["rabbitmq"]
    assert {"ca.pem", "server.pem", "server.key"} == _secret_names(broker)
    assert "check_port_listener" in broker["healthcheck"]["test"]
    # the broker's TLS config holds the lines docs/security.md gives
    conf = (REPO / "docker" / "rabbitmq-tls.conf").read_text().splitlines()
    documented = snippet("security.md", "### Making certificates", "ini").strip().splitlines()
    assert set(documented) <= set(conf)
    # no certificate or key is ever copied into an image
    for line in (REPO / "docker" / "Dockerfile").read_text().splitlines():
        assert not (line.startswith(("COPY", "ADD")) and any(
            part in line for part in (".pem", ".key", "tls")
        )), line  # fmt: skip
    assert "docker/tls/" in (REPO / ".gitignore").read_text().splitlines()
    assert "docker/tls" in (REPO / ".dockerignore").read_text()


def _secret_names(service: dict[str, Any]) -> set[str]:
    # docker-compose 1.29 renders {"source": name}; newer versions may keep the name
    return {s["source"] if isinstance(s, dict) else s for s in service.get("secrets", [])}


def test_whisper_on_a_gpu_is_one_single_process_batched_worker_per_card(
    config: dict[str, Any], tmp_path: Path
) -> None:
    # Without a CUDA base image named, the GPU override refuses to build, saying what to set
    refused = _config(ENV_EXAMPLE, GPU)
    assert refused.returncode != 0 and "set GPU_BASE_IMAGE in docker/.env" in refused.stderr
    # Given one in the env file
    env = tmp_path / "gpu.env"
    env.write_text(ENV_EXAMPLE.read_text() + "\nGPU_BASE_IMAGE=registry.example/cuda12-py311\n")
    services = _load(env, GPU)["services"]
    # Then the deployment's own services are untouched, and whisper-gpu is added
    assert set(services) == set(config["services"]) | {"whisper-gpu"}
    gpu, cpu = services["whisper-gpu"], services["whisper"]
    command = gpu["command"]
    assert command[:4] == ["celery", "-A", "tasks", "worker"]
    assert _option(command, "-Q") == "whisper" and _option(command, "-c") == "1"
    assert _option(command, "-n") == "whisper@%h" and gpu["environment"]["QUEUE"] == "whisper"
    # It reserves one card, which it sees as its device 0, and runs whisper on CUDA
    (device,) = gpu["deploy"]["resources"]["reservations"]["devices"]
    assert device["driver"] == "nvidia" and device["capabilities"] == ["gpu"]
    assert device["device_ids"] == ["0"]
    environment = gpu["environment"]
    assert environment["CUDA_VISIBLE_DEVICES"] == "0"
    assert environment["SPEECH_WHISPER_DEVICE"] == "cuda"
    assert environment["SPEECH_WHISPER_BATCH"] == "auto"  # batched, as on CUDA by default
    # on the worker image built from the CUDA base, with the built-in workers' broker,
    # health check and restart policy
    assert gpu["build"]["target"] == "worker"
    assert gpu["build"]["args"]["BASE_IMAGE"] == "registry.example/cuda12-py311"
    assert gpu["image"] != cpu["image"] and gpu["image"].startswith("speech-platform-gpu:")
    assert environment["CELERY_BROKER_URL"] == cpu["environment"]["CELERY_BROKER_URL"]
    assert gpu["healthcheck"]["test"] == cpu["healthcheck"]["test"]
    assert gpu["depends_on"] == cpu["depends_on"] and gpu["restart"] == "unless-stopped"
    assert "container_name" not in gpu and "ports" not in gpu
