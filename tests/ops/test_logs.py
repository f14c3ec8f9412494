"""The per-task log line, read from real workers' output."""

import json
import re
from typing import Any

import pytest

from producer import Client, InvalidAudio
from tests.helpers import DATA, Vhost, Worker, wait_for

KEYVALUE = re.compile(r'(\w+)=("(?:[^"\\]|\\.)*"|\S*)')


def _parse_keyvalue(line: str) -> dict[str, str]:
    return {k: json.loads(v) if v.startswith('"') else v for k, v in KEYVALUE.findall(line)}


def _task_lines(
    worker: Worker, parse: Any, count: int, task: str | None = None
) -> list[dict[str, Any]]:
    """The worker's task lines, once `count` of them (of `task`, if named) are written."""

    def records() -> list[dict[str, Any]]:
        lines = [parse(line) for line in worker.log().splitlines() if "task_id" in line]
        return [r for r in lines if r.get("event") == "task"]

    # The line is written after the reply is sent: give it a moment to reach the file.
    wait_for(
        lambda: sum(task in (None, r["task"]) for r in records()) >= count,
        10,
        lambda: f"{count} task lines of {task or 'any task'} in {records()}",
        0.2,
    )
    return records()


def test_keyvalue_lines_name_task_queue_outcome_and_duration(
    ops_worker: Worker, ops_client: Client
) -> None:
    # Given a success and a failure on the module's worker (keyvalue, the default)
    ops_client.asr(DATA / "numbers_kal16.wav")
    with pytest.raises(InvalidAudio):
        ops_client.asr(b"\x00" * 300)
    # When its output is read line by line
    asr = [
        r
        for r in _task_lines(ops_worker, _parse_keyvalue, 2, "speech.asr")
        if r["task"] == "speech.asr"
    ]
    records = asr[-2:]
    # Then each task is one parseable line
    ok, failed = records
    assert ok["outcome"] == "success" and ok["queue"] == "asr"
    assert float(ok["duration_ms"]) > 0 and len(ok["task_id"]) == 36
    assert ok["worker"].startswith("ops@") and "error" not in ok
    assert failed["outcome"] == "failure" and failed["error"] == "InvalidAudio"
    assert failed["task_id"] != ok["task_id"]


def test_an_expired_request_gets_its_line_too(ops_worker: Worker, ops_client: Client) -> None:
    # Given a request that expired before any worker could take it
    from datetime import UTC, datetime, timedelta

    result = ops_client.app.signature("speech.ping").apply_async(
        queue="asr", expires=datetime.now(UTC) - timedelta(seconds=1), reply_to="nobody"
    )

    # When the worker drops it unrun
    def mine() -> list[dict[str, str]]:
        lines = [_parse_keyvalue(line) for line in ops_worker.log().splitlines()]
        return [r for r in lines if r.get("task_id") == result.id]

    wait_for(mine, 10, f"a line for {result.id}", 0.2)
    # Then it still gets one line, saying so
    assert [(r["task"], r["queue"], r["outcome"]) for r in mine()] == [
        ("speech.ping", "asr", "expired")
    ]


def test_json_lines_when_the_setting_says_json(own_vhost: Vhost) -> None:
    worker = Worker(
        own_vhost.url, "asr", name="jsonlog", env={"SPEECH_TASK_LOG_FORMAT": "json"}
    ).start()
    try:
        with Client(own_vhost.url) as client:
            client.asr(DATA / "fox_awb.wav")
            client.ping("asr")
        records = _task_lines(worker, _json_or_empty, 2)
        assert [(r["task"], r["queue"], r["outcome"]) for r in records] == [
            ("speech.asr", "asr", "success"),
            ("speech.ping", "asr", "success"),
        ]
        assert all(isinstance(r["duration_ms"], float) for r in records)
        assert records[0]["ts"].endswith("Z")
    finally:
        worker.stop()


def _json_or_empty(line: str) -> dict[str, Any]:
    try:
        return json.loads(line)
    except json.JSONDecodeError:
        return {}


def test_an_unknown_format_stops_the_worker_with_a_clear_message(own_vhost: Vhost) -> None:
    worker = Worker(own_vhost.url, "asr", name="badlog", env={"SPEECH_TASK_LOG_FORMAT": "xml"})
    try:
        try:
            worker.start(timeout=60)
            raise AssertionError("the worker started with SPEECH_TASK_LOG_FORMAT=xml")
        except RuntimeError:
            pass
        assert "SPEECH_TASK_LOG_FORMAT='xml': expected one of keyvalue, json, off" in worker.log()
    finally:
        worker.kill()


def test_a_callers_bad_clip_is_one_warning_line_without_traceback(
    ops_worker: Worker, ops_client: Client
) -> None:
    # Given a request whose audio cannot be decoded
    with pytest.raises(InvalidAudio):
        ops_client.asr(b"RIFF" + b"\x01" * 400)
    failed = [r for r in _task_lines(ops_worker, _parse_keyvalue, 1) if r.get("error")][-1]
    # When the worker's log is read
    log = ops_worker.log()
    lines = [line for line in log.splitlines() if failed["task_id"] in line]
    # Then the refusal is one WARNING line naming the task, the error type and message
    (refusal,) = [line for line in lines if "refused" in line]
    assert "WARNING" in refusal and "speech.asr" in refusal
    assert "InvalidAudio: cannot decode audio" in refusal, refusal
    # And neither a traceback nor Celery's "raised unexpected" comes with it
    assert "raised unexpected" not in log and "Traceback" not in log
