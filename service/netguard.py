"""Outbound URLs that tenants give us (webhooks, MLflow tracking servers), checked against SSRF.

A URL is accepted when its scheme is http(s), it carries no credentials, and *every* address its
host resolves to is public. Loopback, private, shared (CGNAT), link-local, multicast, reserved and
unspecified addresses are refused unless ``LAYERFUSE_WEBHOOK_ALLOW_PRIVATE`` is set; cloud
metadata endpoints are refused always. IPv4 addresses embedded in IPv6 (mapped, NAT64, 6to4,
Teredo) are judged as the IPv4 address they reach.

The check runs when a job is created and again right before each outbound request: webhook
deliveries then connect to the very address that was checked (see
:mod:`layerfuse.service.webhooks`), so a DNS answer that changes in between (rebinding) cannot
redirect them.

Torch- and fastapi-free: the worker uses it too.
"""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass
from typing import Literal
from urllib.parse import urlsplit

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

MAX_URL_LENGTH = 2048
# AWS/GCP/Azure/OpenStack (169.254.169.254), AWS over IPv6, Alibaba Cloud.
METADATA_ADDRESSES = frozenset(
    ipaddress.ip_address(a) for a in ("169.254.169.254", "fd00:ec2::254", "100.100.100.200")
)
_NAT64 = ipaddress.ip_network("64:ff9b::/96")


class UrlRefused(ValueError):
    """A URL we will not call. ``kind`` says why: ``invalid``, ``unresolvable`` or ``forbidden``."""

    def __init__(self, message: str, kind: Literal["invalid", "unresolvable", "forbidden"]):
        super().__init__(message)
        self.message = message
        self.kind = kind


@dataclass(frozen=True)
class CheckedUrl:
    """A URL whose host resolved to allowed addresses only."""

    url: str
    scheme: str
    host: str
    port: int
    addresses: tuple[str, ...]

    @property
    def host_header(self) -> str:
        default = 443 if self.scheme == "https" else 80
        host = f"[{self.host}]" if ":" in self.host else self.host
        return host if self.port == default else f"{host}:{self.port}"


def parse_url(url: str, schemes: tuple[str, ...] = ("http", "https")) -> tuple[str, str, int]:
    """``(scheme, host, port)`` of ``url``.

    Raises:
        UrlRefused: (``invalid``) another scheme, no host, credentials in the URL, too long.
    """
    if len(url) > MAX_URL_LENGTH:
        raise UrlRefused(f"the URL is longer than {MAX_URL_LENGTH} characters", "invalid")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise UrlRefused(f"not a valid URL: {exc}", "invalid") from None
    scheme = parts.scheme.lower()
    if scheme not in schemes:
        raise UrlRefused(
            f"the URL scheme must be {' or '.join(schemes)}, not {scheme or 'missing'!r}",
            "invalid",
        )
    if parts.username is not None or parts.password is not None:
        raise UrlRefused("credentials in the URL are not accepted", "invalid")
    host = parts.hostname
    if not host:
        raise UrlRefused("the URL has no host", "invalid")
    return scheme, host, port or (443 if scheme == "https" else 80)


def forbidden_reason(address: IPAddress, *, allow_private: bool) -> str | None:
    """Why ``address`` may not be called, or None when it may."""
    if address in METADATA_ADDRESSES:
        return "a cloud metadata endpoint"
    if isinstance(address, ipaddress.IPv6Address):
        embedded = address.ipv4_mapped or address.sixtofour
        if embedded is None and address.teredo is not None:
            embedded = address.teredo[1]
        if embedded is None and address in _NAT64:
            embedded = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
        if embedded is not None:
            return forbidden_reason(embedded, allow_private=allow_private)
    if allow_private:
        return None
    checks = (
        ("is_unspecified", "an unspecified address"),
        ("is_loopback", "a loopback address"),
        ("is_link_local", "a link-local address"),
        ("is_multicast", "a multicast address"),
        ("is_private", "a private address"),
        ("is_reserved", "a reserved address"),
    )
    for attribute, reason in checks:
        if getattr(address, attribute):
            return reason
    if not address.is_global:
        return "a non-public address"
    return None


def resolve(host: str, port: int) -> list[IPAddress]:
    """Every address ``host`` resolves to (a literal address resolves to itself).

    Raises:
        UrlRefused: (``unresolvable``) the name does not resolve.
    """
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise UrlRefused(f"the host {host!r} does not resolve ({exc})", "unresolvable") from None
    addresses: list[IPAddress] = []
    for info in infos:
        address = ipaddress.ip_address(str(info[4][0]).split("%")[0])
        if address not in addresses:
            addresses.append(address)
    if not addresses:
        raise UrlRefused(f"the host {host!r} does not resolve", "unresolvable")
    return addresses


def check_url(
    url: str, *, allow_private: bool, schemes: tuple[str, ...] = ("http", "https")
) -> CheckedUrl:
    """Parse ``url``, resolve its host and check every address.

    Raises:
        UrlRefused: with ``kind`` ``invalid``, ``unresolvable`` or ``forbidden``.
    """
    scheme, host, port = parse_url(url, schemes)
    addresses = resolve(host, port)
    for address in addresses:
        reason = forbidden_reason(address, allow_private=allow_private)
        if reason is not None:
            verb = "is" if host == str(address) else "resolves to"
            raise UrlRefused(
                f"{host} {verb} {reason}; only public addresses are called", "forbidden"
            )
    return CheckedUrl(url, scheme, host, port, tuple(str(a) for a in addresses))
