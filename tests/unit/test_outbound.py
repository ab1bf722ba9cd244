"""Calls to tenants' URLs: what is refused (SSRF), and that the call goes to the address that was checked."""

from __future__ import annotations

import socket
from typing import Any

import pytest

from local._http_fake import FakeRequest, FakeResponse, LoopbackFake
from shared.data.outbound import MAX_RESPONSE_BYTES, OutboundHttp, OutboundPolicy, UnsafeUrl

REAL_GETADDRINFO = socket.getaddrinfo


class Echo(LoopbackFake):
    def __init__(self) -> None:
        super().__init__()
        self.hosts: list[str] = []
        self.answer_bytes = 10

    def handle(self, request: FakeRequest) -> FakeResponse:
        self.hosts.append(request.headers.get("host", ""))
        return FakeResponse(200, "x" * self.answer_bytes)


def resolve_names(monkeypatch: pytest.MonkeyPatch, answers: dict[str, list[str]]) -> list[str]:
    """getaddrinfo answers `answers[name]` in turn for each name (IP literals resolve as usual); returns the
    names asked."""
    asked: list[str] = []

    def fake(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        if isinstance(host, str) and host in answers:
            asked.append(host)
            address = answers[host].pop(0) if len(answers[host]) > 1 else answers[host][0]
            family = socket.AF_INET6 if ":" in address else socket.AF_INET
            return [(family, socket.SOCK_STREAM, 6, "", (address, port or 80))]
        return REAL_GETADDRINFO(host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", fake)
    return asked


@pytest.mark.parametrize(
    "url",
    [
        "http://169.254.169.254/latest/meta-data/",
        "http://[::ffff:169.254.169.254]/",
        "http://[fd00:ec2::254]/",
        "http://10.1.2.3/hook",
        "http://172.16.0.1/hook",
        "http://192.168.0.10/hook",
        "http://100.64.0.1/hook",  # carrier-grade NAT: not public
        "http://0.0.0.0/hook",
        "http://127.0.0.1:8080/hook",
        "http://[::1]/hook",
        "http://224.0.0.1/hook",
        "ftp://hooks.example.com/",
        "file:///etc/passwd",
        "http://user:secret@hooks.example.com/",
        "http://metadata.google.internal/",
        "http://hooks.example.com:99999/",
        "http:///no-host",
    ],
)
def test_urls_that_reach_inside_are_refused(url: str) -> None:
    with pytest.raises(UnsafeUrl):
        OutboundPolicy(allow_loopback=False).check(url)


def test_a_public_address_passes_and_loopback_only_where_allowed(monkeypatch: pytest.MonkeyPatch) -> None:
    resolve_names(monkeypatch, {"hooks.example.com": ["93.184.216.34"], "local.example": ["127.0.0.1"]})
    assert str(OutboundPolicy().check("https://hooks.example.com/docuchat")) == "93.184.216.34"
    with pytest.raises(UnsafeUrl, match="loopback"):
        OutboundPolicy().check("http://local.example/")
    assert str(OutboundPolicy(allow_loopback=True).check("http://local.example/")) == "127.0.0.1"


def test_a_name_that_resolves_to_a_private_address_is_refused_whatever_it_looks_like(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    resolve_names(monkeypatch, {"hooks.example.com": ["10.0.0.7"]})
    OutboundPolicy().check_form("https://hooks.example.com/")  # the name alone looks fine
    with pytest.raises(UnsafeUrl, match="private"):
        OutboundPolicy().check("https://hooks.example.com/")


def test_the_call_goes_to_the_checked_address_not_a_second_lookup(monkeypatch: pytest.MonkeyPatch) -> None:
    """DNS rebinding: the name answers loopback (allowed here) to the check, then a private address. The call
    must not look it up again."""
    with Echo() as echo:
        asked = resolve_names(monkeypatch, {"rebind.example": ["127.0.0.1", "10.9.9.9"]})
        http = OutboundHttp(OutboundPolicy(allow_loopback=True), timeout_seconds=5)
        status = http.post(f"http://rebind.example:{echo.port}/hook", b"{}", {"Content-Type": "application/json"})
        assert status == 200
        assert asked == ["rebind.example"]  # once, by the check
        assert echo.hosts == [f"rebind.example:{echo.port}"]  # the receiver still sees its own name


def test_an_answer_too_big_to_be_a_jwks_is_refused_and_a_webhook_answer_is_not_read() -> None:
    with Echo() as echo:
        http = OutboundHttp(OutboundPolicy(allow_loopback=True), timeout_seconds=5)
        echo.answer_bytes = MAX_RESPONSE_BYTES + 10
        with pytest.raises(ValueError, match="over"):
            http.get_json(f"{echo.root_url}/jwks")
        assert http.post(f"{echo.root_url}/hook", b"{}", {}) == 200
        echo.answer_bytes = 10
        assert http.get_json(f"{echo.root_url}/jwks") == "x" * 10
