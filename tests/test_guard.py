"""The SSRF guard: schemes, hosts and every kind of non-public address."""

from __future__ import annotations

import ipaddress

import pytest

from aggregator.fetch import UnsafeURLError, check_url
from aggregator.fetch.guard import non_public_kind


@pytest.mark.parametrize(
    ("url", "kind"),
    [
        ("http://127.0.0.1/feed", "loopback"),
        ("http://127.8.9.10:8080/feed", "loopback"),
        ("http://localhost/feed", "loopback"),
        ("http://2130706433/", "loopback"),  # 127.0.0.1 as one decimal number
        ("http://0x7f.1/", "loopback"),  # and in hex shorthand
        ("http://[::1]/", "loopback"),
        ("http://10.1.2.3/", "private"),
        ("http://172.16.0.1/", "private"),
        ("http://192.168.178.1/", "private"),
        ("http://[fd12:3456::1]/", "private"),
        ("http://169.254.1.1/", "link-local"),
        ("http://[fe80::1]/", "link-local"),
        ("http://[fec0::1]/", "site-local"),
        ("http://169.254.169.254/latest/meta-data/", "cloud metadata"),
        ("http://[fd00:ec2::254]/", "cloud metadata"),
        ("http://0.0.0.0/", "unspecified"),
        ("http://[::]/", "unspecified"),
        ("http://224.0.0.1/", "multicast"),
        ("http://[ff02::1]/", "multicast"),
        ("http://240.0.0.1/", "reserved"),
        ("http://100.64.0.1/", "non-public"),  # carrier-grade NAT
        ("http://[::ffff:127.0.0.1]/", "loopback"),  # IPv4-mapped IPv6
        ("http://[::ffff:a9fe:a9fe]/", "cloud metadata"),  # mapped 169.254.169.254, hex form
        ("http://[2002:a00:1::]/", "private"),  # 6to4 wrapping 10.0.0.1
        ("http://[64:ff9b::c0a8:101]/", "private"),  # NAT64 wrapping 192.168.1.1
        ("HTTPS://127.0.0.1/", "loopback"),
    ],
)
def test_refuses_non_public_addresses(url: str, kind: str) -> None:
    with pytest.raises(UnsafeURLError, match=f"is a {kind} address") as info:
        check_url(url, allow_private=False)
    assert "allow_private_addresses" in str(info.value)


def test_message_names_the_host_and_what_it_resolves_to() -> None:
    with pytest.raises(UnsafeURLError) as info:
        check_url("http://localhost:8080/feed", allow_private=False)
    assert str(info.value).startswith("localhost resolves to 127.0.0.1, which is a loopback")


@pytest.mark.parametrize(
    "url",
    [
        "http://93.184.215.14/feed.xml",
        "https://[2606:4700:4700::1111]/",
        "http://8.8.8.8:8080/rss",
    ],
)
def test_accepts_public_addresses(url: str) -> None:
    check_url(url, allow_private=False)


@pytest.mark.parametrize(
    "url",
    ["http://127.0.0.1:1234/feed", "http://[::1]/", "http://169.254.169.254/", "file:///tmp/x"],
)
def test_allow_private_accepts_local_targets(url: str) -> None:
    check_url(url, allow_private=True)


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("ftp://example.org/feed", "scheme 'ftp' is not allowed"),
        ("gopher://example.org/", "scheme 'gopher' is not allowed"),
        ("javascript:alert(1)", "scheme 'javascript' is not allowed"),
        ("example.org/feed.xml", r"scheme \(none\) is not allowed"),
        ("http:///feed.xml", "has no host"),
        ("http://example.org:99999/", "invalid port"),
        ("file:///etc/passwd", "file URLs read local files"),
    ],
)
def test_refuses_bad_urls(url: str, message: str) -> None:
    with pytest.raises(UnsafeURLError, match=message):
        check_url(url, allow_private=False)


def test_non_http_schemes_stay_refused_with_allow_private() -> None:
    with pytest.raises(UnsafeURLError, match="only http and https"):
        check_url("ftp://127.0.0.1/", allow_private=True)


def test_unresolvable_host_is_refused() -> None:
    with pytest.raises(UnsafeURLError, match=r"cannot resolve host 'no-such-host\.invalid'"):
        check_url("http://no-such-host.invalid/feed", allow_private=False)


def test_is_a_value_error() -> None:
    assert issubclass(UnsafeURLError, ValueError)


@pytest.mark.parametrize("address", ["1.1.1.1", "2a00:1450:4001:80b::200e", "::ffff:1.1.1.1"])
def test_public_addresses_have_no_kind(address: str) -> None:
    assert non_public_kind(ipaddress.ip_address(address)) is None
