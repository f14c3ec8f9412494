"""A Java backend calling the AMQP bridge: tests/clients/java/SpeechClient.java, a small
reusable client (RabbitMQ's Java client and msgpack-java from Debian's packages, JDK 17)."""

import os
import subprocess
import wave
from pathlib import Path

import pytest

from tests.clients.servers import Bridge
from tests.helpers import DATA, REPO, TRANSCRIPTS, word_errors

SOURCE = REPO / "tests" / "clients" / "java" / "SpeechClient.java"
JARS = [
    Path(f"/usr/share/java/{jar}.jar")
    for jar in ("amqp-client", "msgpack-core", "slf4j-api", "slf4j-nop")
]
# Eight different clips: three sentences in three voices, less one. Not the weather clips:
# the asr model makes 4 word errors in each of them ("sunday", "like one"), whoever calls.
CLIPS = [
    "fox_kal16.wav", "meeting_rms.wav", "numbers_kal16.wav", "fox_awb.wav",
    "meeting_kal16.wav", "numbers_awb.wav", "fox_rms.wav", "meeting_awb.wav",
]  # fmt: skip


@pytest.fixture(scope="module")
def classes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """SpeechClient.java compiled once (javac, no build tool) for the module's runs."""
    missing = [str(jar) for jar in JARS if not jar.exists()]
    assert not missing, f"{missing} missing: `make test-clients` installs Debian's jars"
    out = tmp_path_factory.mktemp("java-classes")
    classpath = ":".join(map(str, JARS))
    done = subprocess.run(
        ["javac", "-Xlint:all", "-Werror", "-d", str(out), "-cp", classpath, str(SOURCE)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return out


def run_java(classes: Path, broker_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    classpath = ":".join([str(classes), *map(str, JARS)])
    return subprocess.run(
        ["java", "-cp", classpath, "SpeechClient", *args],
        capture_output=True, text=True, timeout=240, env={**os.environ, "AMQP_URL": broker_url},
    )  # fmt: skip


def seconds(clip: str) -> float:
    with wave.open(str(DATA / clip)) as w:
        return w.getnframes() / w.getframerate()


def test_java_client_transcribes_a_clip(classes: Path, bridge: Bridge, broker_url: str) -> None:
    # When the Java client calls asr through the bridge with a clip
    done = run_java(classes, broker_url, "asr", str(DATA / "meeting_rms.wav"))
    # Then it prints the clip's transcript
    assert done.returncode == 0, done.stderr
    assert word_errors(TRANSCRIPTS["meeting_rms.wav"], done.stdout.strip()) <= 2, done.stdout


def test_java_client_raises_a_typed_error_for_bad_audio(
    classes: Path, bridge: Bridge, broker_url: str, tmp_path: Path
) -> None:
    # Given bytes that are no audio at all, under a .wav name
    junk = tmp_path / "junk.wav"
    junk.write_bytes(b"RIFF" + b"this is not a wave file " * 40)
    # When the Java client sends them to asr
    done = run_java(classes, broker_url, "bad", str(junk))
    # Then the bridge's error reply reaches the caller as a SpeechException of type InvalidAudio
    assert done.returncode == 0, (done.stdout, done.stderr)
    kind, error_type, message = done.stdout.strip().split("\t", 2)
    assert (kind, error_type) == ("SpeechException", "InvalidAudio"), done.stdout
    assert message, done.stdout


def test_java_client_eight_threads_at_once_each_get_their_own_transcript(
    classes: Path, bridge: Bridge, broker_url: str
) -> None:
    # Given one Java client shared by 8 threads, each with a different clip, released together
    paths = [str(DATA / clip) for clip in CLIPS]
    # When they all call asr at once
    done = run_java(classes, broker_url, "parallel", "8", *paths)
    assert done.returncode == 0, (done.stdout, done.stderr)
    lines = [line.split("\t") for line in done.stdout.strip().splitlines()]
    stats = {row[0]: int(row[1]) for row in lines if len(row) == 2}
    results = [row for row in lines if len(row) == 3]
    # Then the 8 requests were in flight together, no reply went astray
    assert stats == {"peak": 8, "stray": 0}, done.stdout
    # And each thread got its own clip's answer: its transcript, and its duration (the eight
    # clips' durations all differ, by 14 ms or more, so a reply handed to the wrong thread shows
    # even between two voices of one sentence)
    assert [Path(path).name for path, _, _ in results] == CLIPS, done.stdout
    for path, duration, text in results:
        clip = Path(path).name
        assert word_errors(TRANSCRIPTS[clip], text) <= 2, (clip, text)
        assert abs(float(duration) - seconds(clip)) < 0.005, (clip, duration, seconds(clip))
