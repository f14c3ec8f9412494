"""The documentation's code for other languages (docs/calling/) runs as written: a backend
developer copies it."""

import json
import os
import subprocess
from pathlib import Path

from tests.clients.servers import Bridge, Gateway
from tests.docs import page, snippet
from tests.helpers import DATA, REPO, TRANSCRIPTS, word_errors


def test_the_node_snippet_transcribes_and_exits(
    bridge: Bridge, broker_url: str, tmp_path: Path
) -> None:
    # Given the Node.js page's snippet as written, the broker named by AMQP_URL
    script = REPO / "tests" / "node" / "readme_snippet.mjs"  # beside node_modules
    script.write_text(snippet("calling/node.md", "# Node.js", "js"))
    not_audio = tmp_path / "notes.wav"
    not_audio.write_bytes(b"these are not the sounds you are looking for")

    def node(clip: Path) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "AMQP_URL": broker_url}
        return subprocess.run(
            ["node", str(script), str(clip)], cwd=script.parent, capture_output=True,
            text=True, timeout=120, env=env,
        )  # fmt: skip

    try:
        # When it runs on a clip, Then it prints the transcript and exits by itself
        done = node(DATA / "fox_rms.wav")
        # And on a file that is not audio it says why and exits non-zero
        failed = node(not_audio)
    finally:
        script.unlink()
    assert done.returncode == 0, done.stderr
    assert word_errors(TRANSCRIPTS["fox_rms.wav"], done.stdout.strip()) <= 2, done.stdout
    assert failed.returncode == 1 and failed.stderr.startswith("InvalidAudio: "), failed


def test_the_java_http_snippet_runs_without_an_api_key(gateway: Gateway, tmp_path: Path) -> None:
    # Given the Java page's JDK HttpClient snippet in a class of its own (java's source
    # launcher runs it without a build), pointed at the test gateway, no SPEECH_API_KEY set
    code = snippet("calling/java.md", "Over HTTP with the JDK's client:", "java")
    code = code.replace("http://speech:8000", gateway.url)
    code = code.replace('"hello.wav"', '"' + str(DATA / "fox_rms.wav") + '"')
    source = tmp_path / "Snippet.java"
    source.write_text(
        "import java.net.URI;\nimport java.net.http.*;\nimport java.nio.file.Path;\n"
        "import java.time.Duration;\n\npublic class Snippet {\n"
        "  public static void main(String[] args) throws Exception {\n"
        f'{code}\n    System.out.println(res.statusCode() + " " + res.body());\n  }}\n}}\n'
    )
    env = {k: v for k, v in os.environ.items() if k != "SPEECH_API_KEY"}
    # When it runs, Then the gateway answers 200 with the transcript
    done = subprocess.run(
        ["java", str(source)], capture_output=True, text=True, timeout=120, env=env
    )
    assert done.returncode == 0, done.stderr
    status, _, body = done.stdout.strip().partition(" ")
    assert status == "200", done.stdout
    assert word_errors(TRANSCRIPTS["fox_rms.wav"], json.loads(body)["result"]["text"]) <= 2


JARS = ("amqp-client", "msgpack-core", "slf4j-api", "slf4j-nop")


def test_the_plain_java_amqp_client_transcribes(
    bridge: Bridge, broker_url: str, tmp_path: Path
) -> None:
    # Given the Java page's program (RabbitMQ's Java client, msgpack-java, direct reply-to)
    # and its command line, whose class path names every jar (slf4j-nop: no SLF4J warning)
    classpath = ":".join(f"/usr/share/java/{jar}.jar" for jar in JARS)
    assert f"java -cp {classpath} SpeechCall.java" in page("calling/java.md")
    source = tmp_path / "SpeechCall.java"
    source.write_text(snippet("calling/java.md", "# Java", "java"))
    # When it runs against the test broker, Then it prints the transcript and nothing else
    done = subprocess.run(
        ["java", "-cp", classpath, str(source), str(DATA / "fox_rms.wav")],
        capture_output=True, text=True, timeout=120, env={**os.environ, "AMQP_URL": broker_url},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert word_errors(TRANSCRIPTS["fox_rms.wav"], done.stdout.strip()) <= 2, done.stdout
    assert "SLF4J" not in done.stderr, done.stderr
