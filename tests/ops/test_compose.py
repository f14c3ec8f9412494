"""The docker deployment, validated by Debian's docker-compose (no Docker engine runs here)."""

import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

import celeryconfig
from tests.helpers import REPO

COMPOSE = REPO / "docker" / "docker-compose.yml"
ENV_EXAMPLE = REPO / "docker" / ".env.example"
INFRA = {"rabbitmq", "flower"}


def _config(env_file: Path) -> subprocess.CompletedProcess[str]:
    # Only the env file may provide the deployment's variables.
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RABBITMQ_", "FLOWER_"))}
    return subprocess.run(
        ["docker-compose", "-f", str(COMPOSE), "--env-file", str(env_file), "config"],
        capture_output=True, text=True, timeout=60, env=env,
    )  # fmt: skip


def _volume_source(volume: str | dict[str, Any]) -> str:
    # docker-compose 1.29 renders "name:/path:rw"; newer versions render a mapping.
    return volume["source"] if isinstance(volume, dict) else volume.split(":", 1)[0]


@pytest.fixture(scope="module")
def config() -> dict[str, Any]:
    done = _config(ENV_EXAMPLE)
    assert done.returncode == 0, done.stderr
    return yaml.safe_load(done.stdout)


def test_every_algorithm_queue_has_a_worker_service(config: dict[str, Any]) -> None:
    services = config["services"]
    for algorithm in celeryconfig.ALGORITHMS:
        assert algorithm in services, f"docker-compose.yml has no service for {algorithm!r}"
        command = services[algorithm]["command"]
        assert command[:4] == ["celery", "-A", "tasks", "worker"]
        assert command[command.index("-Q") + 1] == algorithm
        assert command[command.index("-n") + 1] == f"{algorithm}@%h"


def test_workers_scale_health_check_and_restart(config: dict[str, Any]) -> None:
    for name, service in config["services"].items():
        assert service.get("restart") == "unless-stopped", name
        assert service.get("healthcheck", {}).get("test"), name
        if name not in INFRA:
            # `--scale asr=4` needs services without fixed names or host ports
            assert "container_name" not in service and "ports" not in service, name
            assert service["depends_on"]["rabbitmq"]["condition"] == "service_healthy"
            assert service["build"]["dockerfile"] == "docker/Dockerfile"


def test_rabbitmq_uses_the_env_file_account_and_a_named_volume(config: dict[str, Any]) -> None:
    rabbit = config["services"]["rabbitmq"]
    assert rabbit["image"].startswith("rabbitmq:") and rabbit["image"].endswith("-management")
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


def test_the_image_is_built_from_what_the_repository_ships() -> None:
    dockerfile = (REPO / "docker" / "Dockerfile").read_text()
    for path in ("requirements.txt", "celeryconfig.py", "flowerconfig.py", "tasks/", "producer/"):
        assert f"COPY {path}" in dockerfile or f" {path} " in dockerfile, path
        assert (REPO / path).exists(), path
    assert "warm_models(list(celeryconfig.ALGORITHMS))" in dockerfile  # models baked in
    assert "download.pytorch.org/whl/cpu" in dockerfile  # never the CUDA build
    assert "docker/.env\n" in (REPO / ".dockerignore").read_text()
