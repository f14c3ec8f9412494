"""The TLS policy (producer/tls.py): when it applies, what it verifies, how it fails."""

import ssl
import subprocess
from pathlib import Path

import pytest

from producer.brokers import management_url
from producer.errors import InvalidSetting
from producer.settings import Settings
from producer.tls import (
    amqp_options,
    broker_use_ssl,
    context,
    explain,
    gateway_files,
    server_hostname,
    uses_tls,
)


@pytest.fixture(scope="module")
def pem(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A self-signed certificate and its key (cert.pem, key.pem)."""
    folder = tmp_path_factory.mktemp("pem")
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
         "-subj", "/CN=test", "-keyout", "key.pem", "-out", "cert.pem"],
        cwd=folder, check=True, capture_output=True,
    )  # fmt: skip
    return folder


def test_tls_is_on_only_when_every_url_is_amqps() -> None:
    assert uses_tls("amqps://u:p@a:5671/v;amqps://u:p@b:5671/v")
    assert not uses_tls("amqp://u:p@a:5672/v")
    with pytest.raises(InvalidSetting, match="mixes amqps:// and amqp://"):
        uses_tls("amqps://u:p@a:5671/v;amqp://u:p@b:5672/v")
    assert broker_use_ssl(Settings(), "amqp://localhost//") is False


def test_the_context_verifies_the_peer_and_its_host_name(pem: Path) -> None:
    made = context(Settings(tls_ca=str(pem / "cert.pem")))
    assert made.verify_mode == ssl.CERT_REQUIRED and made.check_hostname
    assert made.minimum_version >= ssl.TLSVersion.TLSv1_2
    # without a CA file: the system's trust store, still verified
    assert context(Settings()).verify_mode == ssl.CERT_REQUIRED
    assert server_hostname("amqps://u:p@rabbitmq:5671/v") == "rabbitmq"


def test_amqp_options_say_the_same_to_py_amqp(pem: Path) -> None:
    s = Settings(
        tls_ca=str(pem / "cert.pem"), tls_cert=str(pem / "cert.pem"), tls_key=str(pem / "key.pem")
    )
    options = amqp_options(s)
    assert options["cert_reqs"] == ssl.CERT_REQUIRED
    assert options["server_hostname"] is None  # kombu fills in each URL's host
    assert options["ca_certs"] == s.tls_ca and options["keyfile"] == s.tls_key
    assert broker_use_ssl(s, "amqps://u:p@h:5671/v") == options


def test_bad_files_are_named_by_their_variable(pem: Path, tmp_path: Path) -> None:
    with pytest.raises(InvalidSetting, match="SPEECH_TLS_CA="):
        context(Settings(tls_ca=str(tmp_path / "missing.pem")))
    with pytest.raises(InvalidSetting, match="SPEECH_TLS_KEY is set without SPEECH_TLS_CERT"):
        context(Settings(tls_key=str(pem / "key.pem")))
    with pytest.raises(InvalidSetting, match="SPEECH_TLS_CERT="):
        context(Settings(tls_cert=str(pem / "key.pem")))


def test_the_gateway_needs_both_files(pem: Path) -> None:
    assert gateway_files(Settings()) is None
    both = Settings(gateway_tls_cert=str(pem / "cert.pem"), gateway_tls_key=str(pem / "key.pem"))
    assert gateway_files(both) == (str(pem / "cert.pem"), str(pem / "key.pem"))
    with pytest.raises(InvalidSetting, match="go together"):
        gateway_files(Settings(gateway_tls_cert=str(pem / "cert.pem")))
    with pytest.raises(InvalidSetting, match="SPEECH_GATEWAY_TLS_CERT="):
        gateway_files(Settings(gateway_tls_cert=str(pem / "key.pem"), gateway_tls_key="x"))


def test_failures_are_explained() -> None:
    unknown_ca = ssl.SSLError(1, "[SSL: TLSV1_ALERT_UNKNOWN_CA] tlsv1 alert unknown ca")
    unknown_ca.reason = "TLSV1_ALERT_UNKNOWN_CA"
    assert "client certificate" in (explain(unknown_ca, "amqps://h") or "")
    assert "client certificate" in (explain(ssl.SSLEOFError(8, "EOF"), "amqps://h") or "")
    reset = ConnectionResetError(104, "Connection reset by peer")
    assert "amqps://" in (explain(reset, "amqp://h:5671//") or "")
    assert explain(reset, "amqps://h:5671//") is None
    assert explain(ConnectionRefusedError(111, "refused"), "amqp://h//") is None


def test_the_management_api_of_an_amqps_broker_is_https() -> None:
    assert management_url("amqps://u:p@h:5671/v") == "https://u:p@h:15671"
    assert management_url("amqp://u:p@h:5672/v") == "http://u:p@h:15672"
