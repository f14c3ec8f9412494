"""Where a job's callback may go, and the POST that goes there and nowhere else.

A callback URL is the caller's to choose, and the gateway POSTs from inside its network: left
unchecked, a caller with an API key could make it reach loopback services, the cloud's
metadata address (169.254.169.254) or the broker's management port. So the URL's host is
resolved when the job is submitted and again at every delivery, each address is checked,
and the connection goes to the address that was checked (a name that resolves elsewhere the
second time cannot redirect it). Loopback, link-local, multicast and unspecified addresses
are refused unless SPEECH_CALLBACK_ALLOW lists them (networks such as 127.0.0.1/32 or
10.0.0.0/8, or host names); redirects are never followed.
"""

import http.client
import ipaddress
import socket
import ssl
import urllib.parse
from dataclasses import dataclass

from producer.errors import InvalidInput

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class CallbackRefused(InvalidInput):
    """A callback URL whose host is, or resolves to, an address callbacks may not reach."""


def _inside(address: Address) -> str | None:
    """What kind of refused address `address` is, or None."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        address = address.ipv4_mapped
    for kind in ("loopback", "link_local", "multicast", "unspecified"):
        if getattr(address, f"is_{kind}"):
            return kind.replace("_", "-")
    return None


@dataclass(frozen=True)
class Policy:
    """The networks and host names callbacks may reach although they are inside."""

    networks: tuple[Network, ...] = ()
    hosts: frozenset[str] = frozenset()

    @classmethod
    def parse(cls, allow: str) -> "Policy":
        """SPEECH_CALLBACK_ALLOW: networks or host names, comma-separated."""
        networks, hosts = [], set()
        for item in (part.strip() for part in allow.split(",")):
            if not item:
                continue
            try:
                networks.append(ipaddress.ip_network(item, strict=False))
            except ValueError:
                hosts.add(item.lower().rstrip("."))
        return cls(tuple(networks), frozenset(hosts))

    def check(self, url: str) -> tuple[str, int, str]:
        """(host, port, the address to connect to) for `url`; CallbackRefused if the host
        is, or resolves to, an address callbacks may not reach."""
        parts = urllib.parse.urlsplit(url)
        host = (parts.hostname or "").lower().rstrip(".")
        port = parts.port or (443 if parts.scheme == "https" else 80)
        try:
            found = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except (OSError, UnicodeError) as exc:
            raise CallbackRefused(f"callback host {host!r} does not resolve: {exc}") from None
        addresses = list(dict.fromkeys(ipaddress.ip_address(info[4][0]) for info in found))
        if not addresses:
            raise CallbackRefused(f"callback host {host!r} has no address")
        if host not in self.hosts:
            for address in addresses:
                kind = _inside(address)
                if kind and not any(address in net for net in self.networks):
                    raise CallbackRefused(
                        f"callback host {host!r} is {address}, a {kind} address; callbacks go"
                        " there only if SPEECH_CALLBACK_ALLOW lists it"
                    )
        return host, port, str(addresses[0])


class _PinnedHTTP(http.client.HTTPConnection):
    """HTTP to `address`, whatever the host name resolves to now."""

    def __init__(self, host: str, port: int, address: str, timeout: float) -> None:
        super().__init__(host, port, timeout=timeout)
        self.address = address

    def connect(self) -> None:
        self.sock = socket.create_connection((self.address, self.port), self.timeout)


class _PinnedHTTPS(http.client.HTTPSConnection):
    """HTTPS to `address`, the certificate checked against the host name."""

    def __init__(self, host: str, port: int, address: str, timeout: float) -> None:
        super().__init__(host, port, timeout=timeout, context=ssl.create_default_context())
        self.address = address

    def connect(self) -> None:
        sock = socket.create_connection((self.address, self.port), self.timeout)
        self.sock = self._context.wrap_socket(sock, server_hostname=self.host)


def post(
    policy: Policy, url: str, body: bytes, headers: dict[str, str], timeout: float
) -> tuple[bool, str]:
    """POST `body` to `url` through the checked address: (delivered, what happened). A 2xx
    answer is delivered; a redirect is an answer like any other, not followed."""
    try:
        host, port, address = policy.check(url)
    except CallbackRefused as exc:
        return False, str(exc)
    parts = urllib.parse.urlsplit(url)
    kind = _PinnedHTTPS if parts.scheme == "https" else _PinnedHTTP
    connection = kind(host, port, address, timeout)
    path = urllib.parse.urlunsplit(("", "", parts.path or "/", parts.query, ""))
    try:
        connection.request("POST", path, body=body, headers=headers)
        status = connection.getresponse().status
    except (OSError, http.client.HTTPException) as exc:
        return False, str(exc)[:200]
    finally:
        connection.close()
    if 300 <= status < 400:
        return False, f"HTTP {status}: redirects are not followed"
    return 200 <= status < 300, f"HTTP {status}"
