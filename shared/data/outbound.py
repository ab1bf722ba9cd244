"""Calls to URLs that tenants give (JWKS, webhooks), refused where they would reach inside (SSRF).

A tenant's URL is checked before every call, not only when it is saved: a name that resolved to a public
address yesterday may resolve to a private one today. Refused: schemes other than http(s), credentials in the
URL, and any address that is not public: private, loopback, link-local (the instance metadata service lives
there), multicast, reserved or unspecified. Locally and in tests (emulated AWS) loopback is allowed, because
the receivers there are on loopback. Redirects are not followed: a redirect could point anywhere.

The call goes to the address that was checked, not to the name: resolving it again to connect would let a
name that answers "public" to the check and "private" to the connect (DNS rebinding) slip through. The Host
header and TLS (SNI and the certificate check) still use the name.
"""

from __future__ import annotations

import ipaddress
import json
import socket
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

MAX_RESPONSE_BYTES = 1_000_000
# Also refused by name, whatever they resolve to.
METADATA_HOSTS = frozenset({"metadata.google.internal", "instance-data", "instance-data.ec2.internal"})


class OutboundFailed(Exception):
    """The call went out but failed: no connection, a timeout, a broken answer, or (for get_json) a non-2xx."""


class UnsafeUrl(ValueError):
    """A URL DocuChat will not call; the message says why."""


@dataclass(frozen=True)
class OutboundPolicy:
    allow_loopback: bool = False

    def check_form(self, url: str) -> None:
        """What can be told without DNS: scheme, host, no credentials (for checking a URL when it is saved)."""
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https"):
            raise UnsafeUrl("the URL must be http or https")
        if not parts.hostname:
            raise UnsafeUrl("the URL has no host")
        if parts.username or parts.password:
            raise UnsafeUrl("the URL must not carry credentials")
        if parts.hostname.lower() in METADATA_HOSTS:
            raise UnsafeUrl("the URL names a metadata service")
        try:
            _ = parts.port
        except ValueError as error:
            raise UnsafeUrl("the URL's port is not a number from 0 to 65535") from error
        literal = _ip_literal(parts.hostname)
        if literal is not None:
            self._check_address(literal)

    def check(self, url: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
        """The form, and every address the host resolves to now; returns the address to connect to."""
        self.check_form(url)
        parts = urlsplit(url)
        assert parts.hostname is not None
        try:
            infos = socket.getaddrinfo(parts.hostname, parts.port or _default_port(parts.scheme))
        except (socket.gaierror, UnicodeError) as error:
            raise UnsafeUrl(f"the URL's host does not resolve: {error}") from error
        addresses = [ipaddress.ip_address(str(info[4][0]).split("%", 1)[0]) for info in infos]
        if not addresses:
            raise UnsafeUrl("the URL's host does not resolve")
        for address in addresses:
            self._check_address(address)
        return addresses[0]

    def _check_address(self, address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> None:
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        if address.is_loopback:
            if self.allow_loopback:
                return
            raise UnsafeUrl("the URL reaches a loopback address")
        if address.is_link_local:
            raise UnsafeUrl("the URL reaches a link-local address (where the metadata service lives)")
        if not address.is_global or address.is_multicast:
            raise UnsafeUrl(f"the URL reaches a private or reserved address ({address})")


def _default_port(scheme: str) -> int:
    return 443 if scheme == "https" else 80


def _ip_literal(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None


class OutboundHttp:
    """httpx, behind the policy: every call checked and pinned to the checked address, no redirects, bounded in
    time and in the size of what comes back."""

    def __init__(self, policy: OutboundPolicy, timeout_seconds: float) -> None:
        self.policy = policy
        self._timeout = timeout_seconds

    def get_json(self, url: str) -> Any:
        """The JSON at `url`; raises UnsafeUrl, OutboundFailed or ValueError (too big, not JSON)."""
        status, content = self._call("GET", url, None, {"Accept": "application/json"})
        if not 200 <= status < 300:
            raise OutboundFailed(f"{url} answered {status}")
        return json.loads(content)

    def post(self, url: str, body: bytes, headers: dict[str, str]) -> int:
        """POST `body`; the status code (any), or UnsafeUrl / OutboundFailed. The answer's body is not read."""
        status, _ = self._call("POST", url, body, headers, read_answer=False)
        return status

    def _call(
        self, method: str, url: str, body: bytes | None, headers: dict[str, str], read_answer: bool = True
    ) -> tuple[int, bytes]:
        import httpx  # only calls out pay for importing it: not the chat function's cold start

        address = self.policy.check(url)
        parts = urlsplit(url)
        assert parts.hostname is not None
        host = f"[{address}]" if address.version == 6 else str(address)
        pinned = parts._replace(netloc=f"{host}:{parts.port or _default_port(parts.scheme)}").geturl()
        headers = {**headers, "Host": parts.netloc.rsplit("@", 1)[-1]}
        extensions = {"sni_hostname": parts.hostname} if parts.scheme == "https" else {}
        try:
            with httpx.Client(timeout=self._timeout, follow_redirects=False) as client:
                request = client.build_request(method, pinned, content=body, headers=headers, extensions=extensions)
                response = client.send(request, stream=True)
                try:
                    content = bytearray()
                    for piece in response.iter_bytes() if read_answer else ():
                        content.extend(piece)
                        if len(content) > MAX_RESPONSE_BYTES:
                            raise ValueError(f"the answer is over {MAX_RESPONSE_BYTES} bytes")
                    return response.status_code, bytes(content)
                finally:
                    response.close()
        except httpx.HTTPError as error:
            raise OutboundFailed(f"{type(error).__name__}: {error}") from error
