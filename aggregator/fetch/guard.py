"""The SSRF guard: which URLs the fetcher may touch at all.

Feed URLs come from users, OPML files and redirects chosen by remote servers,
so without a guard any of them could make the aggregator read the cloud
metadata service or a router's admin page. The guard resolves the host the way
the operating system will and refuses every address that is not public, unless
the configuration explicitly allows private addresses (tests, intranets).

`vet_host` returns the addresses it vetted, and the fetcher connects to those
and no others: a DNS answer that changes between the check and the connect
(rebinding: public when asked, the metadata service a moment later) is never
used.
"""

from __future__ import annotations

import ipaddress
import socket
from urllib.parse import urlsplit

import idna

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

_WEB_SCHEMES = ("http", "https")
# Instance metadata services hand out cloud credentials; named in the message
# because "link-local" alone does not tell an operator why that matters.
_METADATA = frozenset(
    {ipaddress.ip_address("169.254.169.254"), ipaddress.ip_address("fd00:ec2::254")}
)
# NAT64 (RFC 6052) embeds an IPv4 address in the low 32 bits; a NAT64 gateway
# would connect to it, so the embedded address is what must be public.
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_ALLOW_HINT = "set fetch.allow_private_addresses = true to allow it"


class UnsafeURLError(ValueError):
    """A URL the fetcher refuses: wrong scheme, no host, or a non-public address."""


def check_url(url: str, *, allow_private: bool) -> None:
    """Raise UnsafeURLError unless `url` may be fetched.

    Accepted: http(s) URLs whose host resolves only to public addresses, and
    with `allow_private` any http(s) URL and ``file:`` URLs (which read local
    files, so they count as private). A host that does not resolve is refused
    too: an address that cannot be vetted is not trusted.
    """
    host = host_to_vet(url, allow_private=allow_private)
    if host is not None:
        vet_host(host)


def host_to_vet(url: str, *, allow_private: bool) -> str | None:
    """`check_url` without the DNS lookup: the host whose addresses must still be vetted.

    None when nothing is left to check. Split off so the fetcher can run this
    part inline and look each host up once per run, in a worker thread.
    """
    parts = urlsplit(url.strip())
    scheme = parts.scheme.lower()
    if scheme == "file":
        if not allow_private:
            raise UnsafeURLError(f"file URLs read local files; {_ALLOW_HINT}")
        return None
    if scheme not in _WEB_SCHEMES:
        shown = repr(scheme) if scheme else "(none)"
        raise UnsafeURLError(f"scheme {shown} is not allowed (only http and https)")
    host = parts.hostname
    if not host:
        raise UnsafeURLError("URL has no host")
    try:
        _ = parts.port  # raises on a port that is not a number in range
    except ValueError:
        raise UnsafeURLError(f"invalid port in {parts.netloc!r}") from None
    return None if allow_private else ascii_host(host)


def ascii_host(host: str) -> str:
    """The host as DNS, TLS and the Host header must all name it: IDNA 2008, as httpx writes it.

    Python's own "idna" codec follows IDNA 2003, which maps "straße.de" to
    "strasse.de": another domain with another owner, which would then be
    looked up and accepted by its certificate for a feed of the first.
    """
    if host.isascii():
        return host.lower()
    try:
        return idna.encode(host.lower()).decode("ascii")
    except idna.IDNAError as exc:
        raise UnsafeURLError(f"invalid international host name {host!r}: {exc}") from None


def vet_host(host: str) -> list[str]:
    """The addresses `host` resolves to, in the resolver's order, if every one is public.

    Raises UnsafeURLError otherwise (blocks on DNS). A connection must go to
    these addresses, not to the name: asked again, DNS may answer otherwise.
    """
    addresses = _resolve(host)
    for address in addresses:
        kind = non_public_kind(address)
        if kind is not None:
            where = host if host == str(address) else f"{host} resolves to {address}, which"
            raise UnsafeURLError(f"{where} is a {kind} address; {_ALLOW_HINT}")
    return list(dict.fromkeys(str(address) for address in addresses))


def non_public_kind(address: IPAddress) -> str | None:
    """What kind of non-public address this is ("loopback", ...), or None if public."""
    if isinstance(address, ipaddress.IPv6Address):
        embedded = address.ipv4_mapped or address.sixtofour
        if embedded is None and address in _NAT64:
            embedded = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
        if embedded is not None:
            return non_public_kind(embedded)
    if address in _METADATA:
        return "cloud metadata"
    checks = (
        ("unspecified", address.is_unspecified),
        ("loopback", address.is_loopback),
        ("link-local", address.is_link_local),
        # Deprecated (RFC 3879) but still routed inside some networks; the
        # ipaddress module counts fec0::/10 neither private nor reserved.
        ("site-local", isinstance(address, ipaddress.IPv6Address) and address.is_site_local),
        ("multicast", address.is_multicast),
        ("reserved", address.is_reserved),
        ("private", address.is_private),
    )
    for kind, hit in checks:
        if hit:
            return kind
    # Shared (carrier-grade NAT), documentation and benchmarking ranges are
    # neither private nor global in the ipaddress module's terms.
    return None if address.is_global else "non-public"


def _resolve(host: str) -> list[IPAddress]:
    """Every address the OS would connect to; numeric forms like 2130706433 included."""
    try:
        infos = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        reason = exc.strerror if isinstance(exc, socket.gaierror) else str(exc)
        raise UnsafeURLError(f"cannot resolve host {host!r}: {reason}") from None
    # Drop an IPv6 zone ("fe80::1%eth0"): the address itself decides.
    return [ipaddress.ip_address(str(info[4][0]).split("%", 1)[0]) for info in infos]
