"""A webhook's HTTP request, safe to aim at a URL a person typed (no server-side request forgery).

`check` resolves the URL's host and refuses it when any address it resolves to is loopback,
private, link-local, multicast, unspecified, reserved or a cloud metadata address (loopback,
private, link-local and reserved ones are let through when private addresses are allowed:
development), and a plain http URL where only https is. `post` is handed what `check` found and
connects to exactly that address, while the URL's host still names the server (Host header, TLS
SNI and certificate): a DNS answer that changes between the check and the connection cannot aim
it elsewhere. It follows no redirect, gives the whole exchange TIMEOUT_SECONDS, and keeps at most
KEPT_BYTES of the answer. Standard library only.
"""

from __future__ import annotations

import http.client
import ipaddress
import socket
import ssl
import time
from collections.abc import Callable
from typing import NamedTuple
from urllib.parse import urlsplit

METADATA = frozenset({ipaddress.ip_address("169.254.169.254"),
                      ipaddress.ip_address("fd00:ec2::254")})
KEPT_BYTES = 1024
TIMEOUT_SECONDS = 10.0


class Refused(ValueError):
    """This URL may not be called; the message says why, in words for the endpoint's owner."""


class Target(NamedTuple):
    """A checked URL: where to connect (`address`, checked) and what to call the server."""

    scheme: str
    host: str  # as the URL names it: the Host header, SNI and the certificate's name
    port: int
    path: str  # with its query
    address: str


class Answer(NamedTuple):
    status: int
    body: str  # its first KEPT_BYTES bytes, decoded with replacement characters
    seconds: float


def forbidden(address: str, allow_private: bool) -> str | None:
    """Why a webhook may not go to `address` (in words), or None when it may."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])  # an IPv6 zone (fe80::1%eth0) aside
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped  # ::ffff:10.0.0.1 is 10.0.0.1
    if ip in METADATA:
        return "a cloud metadata address"
    if ip.is_unspecified:
        return "an unspecified address"
    if ip.is_multicast:
        return "a multicast address"
    if allow_private:
        return None
    for test, words in ((ip.is_loopback, "a loopback address"),
                        (ip.is_link_local, "a link-local address"),
                        (ip.is_private, "a private address"),
                        (ip.is_reserved or not ip.is_global, "a reserved address")):
        if test:
            return words
    return None


Resolver = Callable[..., list]


def check(url: str, *, allow_private: bool, https_only: bool,
          resolve: Resolver = socket.getaddrinfo) -> Target:
    """Resolve `url`'s host now and refuse it (Refused) unless every address is allowed."""
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        raise Refused("The URL's port must be a number from 1 to 65535.") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise Refused("Enter an https URL, such as https://example.com/keyvault-hook.")
    if https_only and parts.scheme != "https":
        raise Refused("Use an https URL: this server sends webhooks over https only.")
    if parts.username is not None or parts.password is not None:
        raise Refused("Leave the user name and password out of the URL; check the signature "
                      "instead.")
    host = parts.hostname
    port = port or (443 if parts.scheme == "https" else 80)
    try:
        found = resolve(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError):
        raise Refused(f"{host} does not resolve to any address.") from None
    addresses = list(dict.fromkeys(info[4][0] for info in found))
    if not addresses:
        raise Refused(f"{host} does not resolve to any address.")
    for address in addresses:
        reason = forbidden(address, allow_private)
        if reason is not None:
            raise Refused(f"{host} resolves to {address.split('%', 1)[0]}, {reason}: "
                          "webhooks are not sent there.")
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return Target(parts.scheme, host, port, path, addresses[0])


class _PinnedHTTP(http.client.HTTPConnection):
    """HTTP to the checked address, whatever the host's name resolves to by now."""

    def __init__(self, target: Target, timeout: float):
        super().__init__(target.host, target.port, timeout=timeout)
        self.address = target.address

    def connect(self) -> None:
        self.sock = socket.create_connection((self.address, self.port), self.timeout)


class _PinnedHTTPS(http.client.HTTPSConnection):
    """HTTPS to the checked address; SNI and the certificate check use the URL's host."""

    def __init__(self, target: Target, timeout: float, context: ssl.SSLContext):
        super().__init__(target.host, target.port, timeout=timeout, context=context)
        self.address = target.address

    def connect(self) -> None:
        sock = socket.create_connection((self.address, self.port), self.timeout)
        self.sock = self._context.wrap_socket(sock, server_hostname=self.host)


def post(target: Target, body: bytes, headers: dict[str, str],
         timeout: float = TIMEOUT_SECONDS, context: ssl.SSLContext | None = None) -> Answer:
    """POST `body` to the checked target: any answer (a redirect too, not followed) or an
    OSError / http.client.HTTPException when none came within `timeout`."""
    started = time.monotonic()
    connection = (_PinnedHTTPS(target, timeout, context or ssl.create_default_context())
                  if target.scheme == "https" else _PinnedHTTP(target, timeout))
    try:
        connection.request("POST", target.path, body=body, headers=headers)
        left = timeout - (time.monotonic() - started)
        if left <= 0:
            raise TimeoutError(f"no answer within {timeout:g} s")
        connection.sock.settimeout(left)
        with connection.getresponse() as response:
            kept = response.read(KEPT_BYTES)
            return Answer(response.status, kept.decode("utf-8", "replace"),
                          time.monotonic() - started)
    finally:
        connection.close()
