"""Outgoing HTTP to addresses that operators configure (agent webhooks, chat notifications).

A configured URL could point at the server's own network (SSRF). Every request resolves the
host, refuses loopback, private, link-local, multicast and reserved addresses unless they are in
WEBHOOK_ALLOWED_NETWORKS, and then connects to the very address it checked (so a DNS answer that
changes between check and connect cannot slip through). Redirects are not followed.
"""

from __future__ import annotations

import http.client
import ipaddress
import socket
import ssl
from dataclasses import dataclass
from urllib.parse import urlsplit

from django.conf import settings

MAX_RESPONSE_BYTES = 64 * 1024


class RefusedAddress(Exception):
    """The URL is not allowed; the message says why."""


class UnresolvableHost(RefusedAddress):
    """The host does not resolve (now): unlike an address outside the allowed networks, this
    may pass later (DNS trouble, a name not yet published)."""


@dataclass(frozen=True)
class Response:
    status: int
    body: bytes


def _is_public(address) -> bool:
    return not (
        address.is_private or address.is_loopback or address.is_link_local
        or address.is_multicast or address.is_reserved or address.is_unspecified
    )


def check_url(url: str) -> tuple[str, str, int, str]:
    """(scheme, host, port, the address to connect to), or RefusedAddress."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise RefusedAddress("url: must be an http or https URL with a host")
    if parts.username or parts.password:
        raise RefusedAddress("url: must not carry a user name or password")
    port = parts.port or (443 if parts.scheme == "https" else 80)
    chosen = check_host(parts.hostname, port, settings.WEBHOOK_ALLOWED_NETWORKS)
    return parts.scheme, parts.hostname, port, chosen


def check_host(host: str, port: int, allowed_networks: list[str], *, field: str = "url",
               setting: str = "WEBHOOK_ALLOWED_NETWORKS") -> str:
    """The first address `host` resolves to, or RefusedAddress (its message starts with
    `field`) when it does not resolve or any of its addresses is loopback, private,
    link-local, multicast or reserved and outside `allowed_networks` (named by `setting`)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise UnresolvableHost(f"{field}: the host {host} does not resolve ({exc})") from None
    allowed = [ipaddress.ip_network(net, strict=False) for net in allowed_networks]
    chosen = None
    for info in infos:
        address = ipaddress.ip_address(info[4][0])
        if not _is_public(address) and not any(address in net for net in allowed):
            raise RefusedAddress(
                f"{field}: {host} resolves to {address}, a loopback, private or "
                f"link-local address (allow it in {setting} if intended)"
            )
        chosen = chosen or str(address)
    if chosen is None:
        raise RefusedAddress(f"{field}: the host {host} has no address")
    return chosen


class _PinnedHTTPSConnection(http.client.HTTPSConnection):
    """HTTPS to a checked address, with SNI and certificate checks for the host name."""

    def __init__(self, host: str, address: str, port: int, timeout: float):
        super().__init__(host, port, timeout=timeout, context=ssl.create_default_context())
        self._address = address

    def connect(self) -> None:
        sock = socket.create_connection((self._address, self.port), self.timeout)
        self.sock = self._context.wrap_socket(sock, server_hostname=self.host)


def post(url: str, body: bytes, headers: dict[str, str], *, timeout: float) -> Response:
    """POST `body`; raises RefusedAddress, or OSError / http.client.HTTPException on failure."""
    scheme, host, port, address = check_url(url)
    parts = urlsplit(url)
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    if scheme == "https":
        connection = _PinnedHTTPSConnection(host, address, port, timeout)
    else:
        connection = http.client.HTTPConnection(address, port, timeout=timeout)
    try:
        host_header = host if port in (80, 443) else f"{host}:{port}"
        connection.request(
            "POST", target, body=body,
            headers={**headers, "Host": host_header, "User-Agent": "Flightdeck-Webhook/1"},
        )
        response = connection.getresponse()
        return Response(response.status, response.read(MAX_RESPONSE_BYTES))
    finally:
        connection.close()
