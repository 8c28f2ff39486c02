"""URL canonicalisation and network-safety checks shared by the spider and the flows."""

from __future__ import annotations

import ipaddress
import socket
from functools import lru_cache
from urllib.parse import urlsplit

from w3lib.url import canonicalize_url as _w3_canonicalize
from w3lib.url import url_query_cleaner

# Query parameters that identify a campaign or click, never content.
TRACKING_PARAMS = frozenset(
    {"fbclid", "gclid", "dclid", "msclkid", "mc_cid", "mc_eid", "_ga", "yclid", "igshid", "ref_src"}
)


def canonicalize_url(url: str) -> str:
    """Canonical form of a URL so one page is fetched and stored once.

    w3lib sorts the query and normalises percent-encoding; fragments, ``utm_*`` and click-id
    parameters are dropped, the scheme and host are lower-cased and a bare host gets a ``/`` path.
    """
    parts = urlsplit(url.strip())
    query_keys = [kv.split("=", 1)[0] for kv in parts.query.split("&") if kv]
    drop = [k for k in query_keys if k.lower().startswith("utm_") or k.lower() in TRACKING_PARAMS]
    if drop:
        url = url_query_cleaner(url, drop, remove=True, keep_fragments=False)
    return _w3_canonicalize(url, keep_fragments=False)


def host_of(url: str) -> str:
    """Lower-cased host name of a URL ('' if it has none)."""
    return (urlsplit(url).hostname or "").lower()


def _is_private_ip(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    mapped = getattr(ip, "ipv4_mapped", None)
    if mapped is not None:
        ip = mapped
    return (
        ip.is_private
        or ip.is_loopback
        or ip.is_link_local
        or ip.is_multicast
        or ip.is_reserved
        or ip.is_unspecified
    )


@lru_cache(maxsize=4096)
def is_private_host(host: str) -> bool:
    """True when ``host`` is, or resolves to, a loopback, private, link-local or reserved address.

    A name that resolves to any such address counts as private (DNS rebinding to 127.0.0.1 is the
    classic SSRF trick); a name that does not resolve is not private (the fetch will just fail).
    """
    host = host.strip("[]").lower()
    if not host:
        return True
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return _is_private_ip(ipaddress.ip_address(host))
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, None)
    except (socket.gaierror, UnicodeError):
        return False
    return any(_is_private_ip(ipaddress.ip_address(info[4][0].split("%", 1)[0])) for info in infos)
