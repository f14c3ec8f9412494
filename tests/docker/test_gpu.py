"""The documented GPU workers (docker-compose.plugins.yml, `--profile gpu`): their
configuration is valid for the compose that runs the stack, with the project's env."""

from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.docker.stack import Stack

pytestmark = [pytest.mark.docker]


def test_the_gpu_workers_configuration_is_valid(tmp_path: Path) -> None:
    stack = Stack(tmp_path, "gpu")
    files = ("-f", "docker/docker-compose.plugins.yml", "--profile", "gpu")
    services: dict[str, Any] = yaml.safe_load(stack.compose(*files, "config"))["services"]
    gpu = {name: s for name, s in services.items() if "gpu" in s.get("profiles", [])}
    assert set(gpu) == {"enhance-gpu0", "enhance-gpu1"}
    for name, service in gpu.items():
        (device,) = service["deploy"]["resources"]["reservations"]["devices"]
        assert device["driver"] == "nvidia" and device["capabilities"] == ["gpu"], name
        assert service["environment"]["CUDA_VISIBLE_DEVICES"] == "0", name  # its one card
        command = service["command"]
        assert command[command.index("-c") + 1] == "1", name  # one model per GPU
        assert service["image"] == services["asr"]["image"]  # the worker image
    ids = [gpu[n]["deploy"]["resources"]["reservations"]["devices"][0]["device_ids"] for n in gpu]
    assert sorted(ids) == [["0"], ["1"]]
