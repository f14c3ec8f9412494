"""TLS to the broker: one client policy, built from the settings, for every side.

A broker URL list whose URLs are all `amqps://` turns TLS on. The peer is always verified:
its certificate must chain to SPEECH_TLS_CA (the system's trust store when unset) and name
the host written in the URL (`check_hostname`); TLS 1.2 at least. SPEECH_TLS_CERT and
SPEECH_TLS_KEY add a client certificate, for brokers that require one
(`ssl_options.fail_if_no_peer_cert`).

`context()` is that policy as an `ssl.SSLContext`: the Client's publishing links, the
bridge (pika) and the management API take it as it is. kombu and py-amqp (the workers,
the Client's reply and event connections, Flower) accept only a dict of options from
which py-amqp builds its own context; `amqp_options()` is the same policy in that shape.
`explain()` turns what a refused handshake raises into words an operator can act on.
"""

import functools
import ssl
import urllib.parse
from collections.abc import Iterable
from typing import Any

from producer.brokers import broker_urls
from producer.errors import InvalidSetting
from producer.settings import Settings

TLS_SCHEME = "amqps"
MINIMUM_VERSION = ssl.TLSVersion.TLSv1_2


def uses_tls(urls: str | Iterable[str]) -> bool:
    """Whether the broker URL list asks for TLS: every URL `amqps://`, or none of them.

    A list mixing both would send credentials in clear to some nodes: InvalidSetting."""
    schemes = {urllib.parse.urlsplit(url).scheme.lower() for url in broker_urls(urls)}
    if TLS_SCHEME in schemes and len(schemes) > 1:
        raise InvalidSetting(
            "CELERY_BROKER_URL mixes amqps:// and amqp:// nodes: write every node with amqps://"
        )
    return schemes == {TLS_SCHEME}


def context(s: Settings) -> ssl.SSLContext:
    """The client's SSLContext: the peer verified against SPEECH_TLS_CA (or the system's
    trust store) and its host name checked; the client certificate when one is set."""
    return _context(s.tls_ca.strip(), s.tls_cert.strip(), s.tls_key.strip())


@functools.lru_cache(maxsize=8)
def _context(ca: str, cert: str, key: str) -> ssl.SSLContext:
    made = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # CERT_REQUIRED and check_hostname
    made.minimum_version = MINIMUM_VERSION
    try:
        if ca:
            made.load_verify_locations(cafile=ca)
        else:
            made.load_default_certs(ssl.Purpose.SERVER_AUTH)
    except (OSError, ssl.SSLError) as exc:
        raise InvalidSetting(
            f"SPEECH_TLS_CA={ca!r}: not a readable PEM file of CA certificates ({exc})"
        ) from None
    if key and not cert:
        raise InvalidSetting("SPEECH_TLS_KEY is set without SPEECH_TLS_CERT: set both, or neither")
    if cert:
        try:
            made.load_cert_chain(cert, key or None)
        except (OSError, ssl.SSLError) as exc:
            raise InvalidSetting(
                f"SPEECH_TLS_CERT={cert!r} / SPEECH_TLS_KEY={key!r}: not a readable certificate"
                f" and matching private key in PEM ({exc})"
            ) from None
    return made


def amqp_options(s: Settings) -> dict[str, Any]:
    """The same policy as py-amqp's `ssl` dict (Celery's `broker_use_ssl`).

    `server_hostname: None` makes kombu fill in the host of the URL it connects to."""
    context(s)  # the files are checked here, once, with the variable named
    options: dict[str, Any] = {
        "cert_reqs": ssl.CERT_REQUIRED,
        "server_hostname": None,
        "tls_minimum_version": MINIMUM_VERSION,
    }
    if s.tls_ca.strip():
        options["ca_certs"] = s.tls_ca.strip()
    if s.tls_cert.strip():
        options["certfile"] = s.tls_cert.strip()
        options["keyfile"] = s.tls_key.strip() or None
    return options


def broker_use_ssl(s: Settings, urls: str | Iterable[str]) -> dict[str, Any] | bool:
    """Celery's `broker_use_ssl` for the broker URL list `urls`: the options, or False."""
    return amqp_options(s) if uses_tls(urls) else False


def gateway_files(s: Settings) -> tuple[str, str] | None:
    """The gateway's HTTPS certificate and key files, checked; None to serve plain HTTP."""
    cert, key = s.gateway_tls_cert.strip(), s.gateway_tls_key.strip()
    if not cert and not key:
        return None
    if not (cert and key):
        raise InvalidSetting(
            "SPEECH_GATEWAY_TLS_CERT and SPEECH_GATEWAY_TLS_KEY go together: set both, or neither"
        )
    try:
        ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).load_cert_chain(cert, key)
    except (OSError, ssl.SSLError) as exc:
        raise InvalidSetting(
            f"SPEECH_GATEWAY_TLS_CERT={cert!r} / SPEECH_GATEWAY_TLS_KEY={key!r}: not a readable"
            f" certificate and matching private key in PEM ({exc})"
        ) from None
    return cert, key


def server_hostname(url: str) -> str:
    """The name the broker's certificate must hold: the URL's host, as written."""
    return urllib.parse.urlsplit(url).hostname or "localhost"


def explain(exc: BaseException, url: str) -> str | None:
    """What a failed connection to `url` means when TLS is the cause, or None."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        return (
            f"TLS: the broker's certificate was not accepted ({exc.verify_message}): it must be"
            " signed by SPEECH_TLS_CA (or the system's trust store) and name the URL's host"
        )
    if isinstance(exc, ssl.SSLError):
        # TLS 1.3 reports a refused client certificate after the handshake: as the broker's
        # alert, or as the connection's end when the alert was not read before it
        reason = str(getattr(exc, "reason", None) or exc)
        if isinstance(exc, ssl.SSLEOFError | ssl.SSLZeroReturnError) or "ALERT" in reason:
            return (
                f"TLS: the broker refused the connection in the handshake ({reason}): it takes"
                " a client certificate its CA signed: check SPEECH_TLS_CERT and SPEECH_TLS_KEY"
            )
        return f"TLS handshake with the broker failed ({reason})"
    plain = urllib.parse.urlsplit(url).scheme.lower() != TLS_SCHEME
    closed = isinstance(exc, ConnectionResetError | BrokenPipeError) or (
        isinstance(exc, OSError) and "unexpectedly closed" in str(exc)
    )
    if plain and closed:
        return (
            f"the broker closed the connection before speaking AMQP ({exc}): if this port"
            " expects TLS, write the URL with amqps://"
        )
    return None
