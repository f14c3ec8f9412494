"""The settings object: the one reader of the environment (producer/settings.py)."""

import pytest

import celeryconfig
from producer import InvalidSetting, SpeechError
from producer.settings import Settings


def test_the_defaults_need_no_environment() -> None:
    s = Settings.from_env({})
    assert s.broker_url == "amqp://guest:guest@localhost:5672//"
    assert (s.max_backlog, s.heartbeat, s.sent_events) == (1000, 5.0, True)
    # the gateway's budgets follow the payload limit unless set
    assert s.gateway_upload_budget == 8 * s.max_payload_bytes
    assert s.gateway_client_uploads == 4 * s.max_payload_bytes


def test_values_are_read_by_their_type() -> None:
    s = Settings.from_env(
        {
            "SPEECH_MAX_BACKLOG": "50",
            "SPEECH_HEARTBEAT": "0",
            "SPEECH_SENT_EVENTS": "off",
            "SPEECH_FLOWER_LOCAL_TRIAL": "Yes",
            "SPEECH_MAX_PAYLOAD_BYTES": "1000",
            "SPEECH_GATEWAY_CLIENT_UPLOADS": "300",
            "SPEECH_TASK_LOG_FORMAT": "json",
        }
    )
    assert (s.max_backlog, s.heartbeat, s.sent_events, s.flower_local_trial) == (
        50, 0.0, False, True,
    )  # fmt: skip
    assert (s.gateway_upload_budget, s.gateway_client_uploads) == (8000, 300)
    assert s.task_log_format == "json"
    # an empty number or switch is unset (an .env line `SPEECH_TIMEOUT=`); a string is kept
    blank = Settings.from_env(
        {"SPEECH_TIMEOUT": "", "SPEECH_SENT_EVENTS": " ", "SPEECH_API_KEY": ""}
    )
    assert (blank.default_timeout, blank.sent_events, blank.api_key) == (60.0, True, "")


@pytest.mark.parametrize(
    ("name", "value", "says"),
    [
        ("SPEECH_MAX_BACKLOG", "lots", "a whole number"),
        ("SPEECH_MAX_BACKLOG", "2.5", "a whole number"),
        ("SPEECH_HEARTBEAT", "soon", "a number"),
        ("SPEECH_TIMEOUT", "-1", ">= 0"),
        ("SPEECH_SENT_EVENTS", "maybe", "true"),
        ("SPEECH_TASK_LOG_FORMAT", "xml", "keyvalue, json, off"),
    ],
)
def test_a_bad_value_names_its_variable_and_what_it_accepts(
    name: str, value: str, says: str
) -> None:
    with pytest.raises(InvalidSetting) as caught:
        Settings.from_env({name: value})
    assert isinstance(caught.value, SpeechError)
    assert f"{name}={value!r}" in str(caught.value) and says in str(caught.value)


def test_secrets_stay_out_of_the_settings_repr() -> None:
    s = Settings.from_env({"SPEECH_API_KEY": "k3y-s3cret", "SPEECH_CALLBACK_SECRET": "cb-s3cret"})
    assert "s3cret" not in repr(s)


def test_celery_is_configured_from_the_settings() -> None:
    assert celeryconfig.broker_heartbeat == Settings.from_env().heartbeat
    assert celeryconfig.max_backlog == Settings.from_env().max_backlog
    arguments = celeryconfig.task_queues[0].queue_arguments
    assert arguments["x-max-length"] == celeryconfig.max_backlog - 1
    assert len(set(Settings.variables())) == len(Settings.variables())
