"""URL canonicalization: one spelling per article, so the same story linked from a
newsletter, a social post and the outlet's own feed is recognised as one URL.

Only changes that cannot point somewhere else are made: case of scheme and host,
default ports, fragments and tracking parameters. The remaining query is kept
byte for byte and in order (servers may depend on both), and the path is never
re-encoded.
"""

from __future__ import annotations

import functools
import re
from urllib.parse import SplitResult, unquote_plus, urljoin, urlsplit, urlunsplit

DEFAULT_PORTS = {"http": 80, "https": 443}

# Compared case-insensitively. Sources: Google Analytics (utm_*, _ga), ad click
# ids (fbclid, gclid, dclid, msclkid), Mailchimp (mc_*), Webtrends (wt_*, WT.mc_id),
# AT Internet (at_*, xtor), comScore (ns_*), Microsoft (ocid), Instagram (igshid),
# and the ref/ref_src that sites and Twitter append to shared links.
TRACKING_PARAMS = frozenset(
    {
        "fbclid",
        "gclid",
        "dclid",
        "msclkid",
        "mc_cid",
        "mc_eid",
        "wt_mc",
        "wt_zmc",
        "wt.mc_id",
        "ref",
        "ref_src",
        "xtor",
        "ocid",
        "igshid",
        "_ga",
    }
)
TRACKING_PREFIXES = ("utm_", "at_", "ns_")


def is_tracking_param(name: str) -> bool:
    key = name.lower()
    return key in TRACKING_PARAMS or key.startswith(TRACKING_PREFIXES)


def _strip_tracking(query: str) -> str:
    """Drop tracking parameters; keep the others exactly as written, in order."""
    kept = [
        pair
        for pair in query.split("&")
        if pair and not is_tracking_param(unquote_plus(pair.partition("=")[0]))
    ]
    return "&".join(kept)


def _netloc(parts: SplitResult) -> str:
    host = (parts.hostname or "").rstrip(".")
    if ":" in host:  # IPv6 literal: urlsplit removed the brackets
        host = f"[{host}]"
    port = parts.port
    if port is not None and port != DEFAULT_PORTS.get(parts.scheme.lower()):
        host = f"{host}:{port}"
    userinfo, at, _ = parts.netloc.rpartition("@")
    return f"{userinfo}{at}{host}"


_CONTROL_CHARACTER = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_EDGES = re.compile(r"^[\s\x00-\x20]+|[\s\x00-\x20]+$")
# Most links in feeds are "plain": an absolute http(s) URL with a lower-case
# scheme, a host of letters, digits, dots and hyphens (no user, port or IP
# literal), a path without ";" parameters, a query and a fragment each absent or
# non-empty, and no whitespace or control character anywhere. urlsplit and
# urlunsplit give such a URL back unchanged, and urljoin returns it as it is onto
# any base it can parse, so the functions here (and fast.py) skip urllib for it:
# urllib's parsing was about a quarter of the parse stage's time.
_PLAIN_URL = re.compile(
    r"(?P<scheme>https?)://(?P<host>[A-Za-z0-9.-]+)"
    r"(?P<path>/[^\s\x00-\x20\x7f;?#]*)?"
    r"(?:\?(?P<query>[^\s\x00-\x20\x7f#]+))?"
    r"(?:#[^\s\x00-\x20\x7f]+)?"
)


@functools.lru_cache(maxsize=64)
def _parsable(base: str) -> bool:
    """Whether urljoin can parse `base` (it raises ValueError where urlsplit does)."""
    try:
        urlsplit(base)
    except ValueError:
        return False
    return True


def joins_to_itself(url: str, base: str | None) -> bool:
    """Whether urljoin(base, url) is `url` itself, as is urlunsplit(urlsplit(url)):
    true of a plain URL (see _PLAIN_URL) whenever urljoin can parse the base."""
    return _PLAIN_URL.fullmatch(url) is not None and _parsable(base or "")


def canonical_url(url: str) -> str:
    """The canonical spelling of `url`.

    Scheme and host lower-cased, default port dropped, tracking parameters and
    fragment removed, an empty path of an http(s) URL written as "/". Total: a
    string that does not parse as a URL comes back stripped of surrounding
    whitespace, because callers use the result as a key, not as proof of validity.
    """
    plain = _PLAIN_URL.fullmatch(url)
    if plain is not None and (host := plain["host"].lower().rstrip(".")):
        # What the general case below makes of a plain URL, without urllib.
        query = _strip_tracking(plain["query"] or "")
        return f"{plain['scheme']}://{host}{plain['path'] or '/'}{'?' if query else ''}{query}"
    # What urlsplit strips (C0 controls, space) and what str.strip strips, together,
    # so a second call finds nothing more to remove.
    url = _EDGES.sub("", url)
    try:
        parts = urlsplit(url)
        netloc = _netloc(parts) if parts.netloc else ""
    except ValueError:  # malformed IPv6 literal or port
        return url
    scheme = parts.scheme.lower()
    path = parts.path or ("/" if scheme in DEFAULT_PORTS and netloc else "")
    # Dropping the fragment or a tracking parameter can bare whitespace ("0 #").
    return _EDGES.sub("", urlunsplit((scheme, netloc, path, _strip_tracking(parts.query), "")))


def http_url(link: str | None, base: str | None = None) -> str | None:
    """`link` as an absolute http(s) URL (resolved against `base`), or None.

    Anything else (javascript:, data:, mailto:, a URL without a host) is refused:
    these links end up in digests that people click.
    """
    if not link:
        return None
    link = link.strip()
    if _CONTROL_CHARACTER.search(link):
        return None  # NUL, ESC...: no real URL has them (urlsplit drops tabs and newlines)
    if joins_to_itself(link, base):
        return link  # an http(s) URL with a host, as the general case below would find
    try:
        absolute = urljoin(base, link) if base else link
        parts = urlsplit(absolute)
        _ = parts.port  # raises ValueError for a malformed port
    except ValueError:
        return None
    if parts.scheme.lower() not in DEFAULT_PORTS or not parts.hostname:
        return None
    # What was checked, not the raw string: urlsplit drops tabs and newlines
    # ("ht\ttp://..."), which a browser would read differently.
    return urlunsplit(parts)
