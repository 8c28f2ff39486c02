"""URL canonicalisation, URL checks and network-safety checks shared by the spider and the flows.

These policies live here because the crawl definition (``ingest.config``), the spider (``spiders/``)
and the flows all need them and none of them may own the others:

- :func:`canonicalize_url`: one spelling per page, so a page is fetched, stored and embedded once.
- :func:`is_http_url` and :func:`on_allowed_domains`: what a crawl can fetch at all, and which hosts
  its definition lets it fetch (``source.allowed_domains`` and their subdomains).
- :class:`NetworkPolicy`: which hosts and addresses a crawl may connect to (the SSRF guard). The
  spider applies it twice: to the host name before a request is sent
  (:class:`spiders.middlewares.SafetyMiddleware`) and to every DNS answer the connection will use
  (:class:`spiders.resolver.SafeResolver`), so a name whose answer changes in between (DNS rebinding)
  cannot reach a refused address.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import lru_cache
from urllib.parse import urlsplit, urlunsplit

from w3lib.url import canonicalize_url as _w3_canonicalize

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

# Query parameters that identify a campaign or click, never content.
TRACKING_PARAMS = frozenset(
    {"fbclid", "gclid", "dclid", "msclkid", "mc_cid", "mc_eid", "_ga", "yclid", "igshid", "ref_src"}
)

# Session ids, which make every link of a site a new URL (a crawler trap). The names are those of
# Nutch's default urlnormalizer-regex rule ``_?(l|j|bv_)?(sid|phpsessid|sessionid)`` (so jsessionid,
# phpsessid, sessionid, sid, lsid, bv_sid...) plus Heritrix's StripSessionIDs additions: ASP's
# ``ASPSESSIONID`` + 8 letters and ColdFusion's ``CFID``/``CFTOKEN``. The bare ``sid`` family is a
# common name for other things too (``?sid=3`` = site 3), so, like Heritrix, it is dropped only when
# its value looks like a token (16 or more letters, digits, '-' or '_'; phpBB's are 32 hex digits).
_SESSION_PARAM_RE = re.compile(
    r"^(?:_?(?:l|j|bv_)?(?:phpsessid|sessionid)|aspsessionid[a-z]{8}|cfid|cftoken)$", re.IGNORECASE
)
_SID_PARAM_RE = re.compile(r"^_?(?:l|j|bv_)?sid$", re.IGNORECASE)
_TOKEN_VALUE_RE = re.compile(r"^[0-9A-Za-z_-]{16,}$")
# Servlet containers put the session in a path parameter: /shop/cart;jsessionid=0F3A...?item=2
_PATH_SESSION_RE = re.compile(r";_?(?:l|j|bv_)?(?:sid|phpsessid|sessionid)=[^;/?#]*", re.IGNORECASE)


def _drop_param(name: str, value: str) -> bool:
    key = name.lower()
    if key.startswith("utm_") or key in TRACKING_PARAMS or _SESSION_PARAM_RE.match(key):
        return True
    return bool(_SID_PARAM_RE.match(key) and _TOKEN_VALUE_RE.match(value))


def canonicalize_url(url: str) -> str:
    """Canonical form of a URL so one page is fetched and stored once.

    w3lib sorts the query and normalises percent-encoding; fragments, ``utm_*``, click-id and
    session-id parameters (query and ``;jsessionid=`` path parameters, see ``_SESSION_PARAM_RE``) are
    dropped, the scheme and host are lower-cased and a bare host gets a ``/`` path.
    """
    parts = urlsplit(url.strip())
    path = _PATH_SESSION_RE.sub("", parts.path)
    pairs = [kv for kv in parts.query.split("&") if kv]
    kept = [kv for kv in pairs if not _drop_param(*kv.partition("=")[::2])]
    if path != parts.path or len(kept) != len(pairs):
        url = urlunsplit((parts.scheme, parts.netloc, path, "&".join(kept), ""))
    return _w3_canonicalize(url, keep_fragments=False)


def host_of(url: str) -> str:
    """Lower-cased host name of a URL ('' if it has none)."""
    return (urlsplit(url).hostname or "").lower()


def is_http_url(url: str) -> bool:
    """Whether ``url`` is an http or https URL with a host: the only URLs a crawl fetches.

    ``file:``, ``ftp:``, ``mailto:``, ``javascript:``, relative and host-less URLs are not; neither is a
    string ``urlsplit`` cannot read (an unclosed IPv6 bracket).
    """
    try:
        parts = urlsplit(url)
        return parts.scheme in ("http", "https") and bool(parts.hostname)  # urlsplit lower-cases the scheme
    except ValueError:
        return False


def on_allowed_domains(url_or_host: str, domains: Iterable[str]) -> bool:
    """Whether a URL's host (or a bare host name) is one of ``domains`` or a subdomain of one.

    The match is on whole labels, as Scrapy's OffsiteMiddleware does it: with ``example.org`` allowed,
    ``docs.example.org`` is on the domain and ``badexample.org`` is not. Case and a trailing dot (the
    fully qualified spelling of the same name) are ignored.
    """
    try:
        host = host_of(url_or_host) if "/" in url_or_host else url_or_host.strip("[]").lower()
    except ValueError:  # not a URL urlsplit can read
        return False
    host = host.rstrip(".")
    if not host:
        return False
    for domain in domains:
        domain = domain.strip().lower().rstrip(".")
        if domain and (host == domain or host.endswith("." + domain)):
            return True
    return False


# -- addresses ---------------------------------------------------------------------------------------

# Cloud instance-metadata services: credentials live there, so they are refused even when
# ``allow_private_networks`` is on, unless listed in ``source.allow_hosts``. The whole IPv4 link-local
# block holds them (AWS, GCP, Azure, Oracle, OpenStack, DigitalOcean 169.254.169.254; AWS ECS
# 169.254.170.2; Tencent 169.254.0.23); fd00:ec2::/32 is AWS Nitro's IPv6 block (IMDS fd00:ec2::254);
# 100.100.100.200 is Alibaba's; 192.0.0.192 Oracle's legacy one.
METADATA_NETWORKS: tuple[IPNetwork, ...] = tuple(
    ipaddress.ip_network(n)
    for n in ("169.254.0.0/16", "fd00:ec2::/32", "100.100.100.200/32", "192.0.0.192/32")
)
METADATA_HOSTS = frozenset(
    {
        "metadata",
        "metadata.google.internal",
        "metadata.goog",
        "instance-data",
        "instance-data.ec2.internal",
        "metadata.tencentyun.com",
        "metadata.platformequinix.com",
    }
)

# IANA special-purpose address registries (RFC 6890 and updates): every block that is not globally
# reachable, or is for documentation/benchmarking/6to4-relay. Checked explicitly rather than through
# ``ipaddress.is_global``, whose tables differ between Python patch releases (100.64.0.0/10, the
# carrier-grade NAT block that cloud VPCs also use, is the case that matters most).
SPECIAL_USE_NETWORKS: tuple[IPNetwork, ...] = tuple(
    ipaddress.ip_network(n)
    for n in (
        "0.0.0.0/8",  # "this network"
        "10.0.0.0/8",  # private
        "100.64.0.0/10",  # shared address space (carrier-grade NAT)
        "127.0.0.0/8",  # loopback
        "169.254.0.0/16",  # link-local
        "172.16.0.0/12",  # private
        "192.0.0.0/24",  # IETF protocol assignments
        "192.0.2.0/24",  # documentation (TEST-NET-1)
        "192.31.196.0/24",  # AS112-v4
        "192.52.193.0/24",  # AMT
        "192.88.99.0/24",  # deprecated 6to4 relay anycast
        "192.168.0.0/16",  # private
        "192.175.48.0/24",  # direct delegation AS112
        "198.18.0.0/15",  # benchmarking
        "198.51.100.0/24",  # documentation (TEST-NET-2)
        "203.0.113.0/24",  # documentation (TEST-NET-3)
        "224.0.0.0/4",  # multicast
        "240.0.0.0/4",  # reserved, and 255.255.255.255 broadcast
        "::/128",  # unspecified
        "::1/128",  # loopback
        "100::/64",  # discard-only
        "64:ff9b:1::/48",  # local-use IPv4/IPv6 translation
        "2001::/23",  # IETF protocol assignments (Teredo, ORCHID, ...)
        "2001:db8::/32",  # documentation
        "3fff::/20",  # documentation
        "5f00::/16",  # segment routing SIDs
        "fc00::/7",  # unique local
        "fe80::/10",  # link-local
        "fec0::/10",  # deprecated site-local
        "ff00::/8",  # multicast
    )
)
# Only 2000::/3 is global unicast; everything else in IPv6 (besides the embedded-IPv4 forms below) is
# reserved or local.
_IPV6_GLOBAL_UNICAST = ipaddress.ip_network("2000::/3")
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_SIX_TO_FOUR = ipaddress.ip_network("2002::/16")


def _embedded_ipv4(ip: IPAddress) -> IPAddress:
    """The IPv4 address an IPv6 address carries (mapped, NAT64, 6to4), else ``ip`` itself."""
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return ip.ipv4_mapped
        if ip in _NAT64:
            return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
        if ip.sixtofour is not None:
            return ip.sixtofour
    return ip


def parse_ip(text: str) -> IPAddress | None:
    """The address ``text`` spells (brackets and an IPv6 zone id allowed), or None for a name."""
    try:
        return ipaddress.ip_address(text.strip("[]").split("%", 1)[0])
    except ValueError:
        return None


def is_metadata_address(ip: IPAddress) -> bool:
    """True for a cloud instance-metadata address (see ``METADATA_NETWORKS``)."""
    ip = _embedded_ipv4(ip)
    return any(ip in net for net in METADATA_NETWORKS if net.version == ip.version)


def is_private_address(ip: IPAddress) -> bool:
    """True for any address that is not globally reachable unicast (``SPECIAL_USE_NETWORKS``)."""
    ip = _embedded_ipv4(ip)
    if isinstance(ip, ipaddress.IPv6Address) and ip not in _IPV6_GLOBAL_UNICAST:
        return True
    return any(ip in net for net in SPECIAL_USE_NETWORKS if net.version == ip.version)


def _is_local_name(host: str) -> bool:
    return host == "localhost" or host.endswith((".localhost", ".local", ".internal", ".home.arpa"))


@lru_cache(maxsize=4096)
def _resolve(host: str) -> tuple[IPAddress, ...]:
    """The addresses ``host`` resolves to now (empty when it does not resolve)."""
    try:
        infos = socket.getaddrinfo(host, None)
    except (OSError, UnicodeError):
        return ()
    addresses = (parse_ip(str(info[4][0])) for info in infos)
    return tuple(dict.fromkeys(a for a in addresses if a is not None))


def is_private_host(host: str) -> bool:
    """True when ``host`` is, or resolves to, a non-public address (metadata included).

    A name that resolves to any such address counts as private (DNS rebinding to 127.0.0.1 is the
    classic SSRF trick); a name that does not resolve is not private (the fetch will just fail).
    """
    return NetworkPolicy().check_host(host) is not None


@dataclass(frozen=True)
class NetworkPolicy:
    """Which hosts and addresses a crawl may connect to.

    - Public addresses: always.
    - Private, loopback, link-local, CGNAT and the other special-use addresses
      (``SPECIAL_USE_NETWORKS``) and names such as ``localhost`` or ``*.internal``: only with
      ``allow_private`` (``source.allow_private_networks``).
    - Cloud metadata addresses and names (``METADATA_NETWORKS``, ``METADATA_HOSTS``): never, not even
      with ``allow_private``.
    - ``allow_hosts`` (``source.allow_hosts``) lifts both refusals: a listed host name is allowed
      whatever it resolves to, a listed address or network (``10.1.2.3``, ``10.0.0.0/8``) admits the
      addresses it contains.

    A name with any refused address is refused as a whole: a rebinding name often answers with both
    a public and a private address.
    """

    allow_private: bool = False
    allow_hosts: tuple[str, ...] = ()
    _names: frozenset[str] = field(init=False, repr=False, compare=False)
    _networks: tuple[IPNetwork, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        names: set[str] = set()
        networks: list[IPNetwork] = []
        for entry in self.allow_hosts:
            entry = entry.strip().strip("[]").lower()
            try:
                networks.append(ipaddress.ip_network(entry, strict=False))
            except ValueError:
                names.add(entry.rstrip("."))
        object.__setattr__(self, "_names", frozenset(names))
        object.__setattr__(self, "_networks", tuple(networks))

    def listed(self, host: str) -> bool:
        """Whether ``host`` (a name or an address) is in ``allow_hosts``."""
        host = host.strip("[]").lower().rstrip(".")
        if host in self._names:
            return True
        ip = parse_ip(host)
        return ip is not None and any(ip in net for net in self._networks if net.version == ip.version)

    def check_address(self, host: str, ip: IPAddress) -> str | None:
        """Why the connection to ``ip`` (an answer for ``host``) is refused, or None when allowed."""
        if self.listed(host) or self.listed(str(ip)):
            return None
        if is_metadata_address(ip):
            return (
                f"refused cloud metadata address {ip} (host {host}); "
                "list it in source.allow_hosts to crawl it"
            )
        if not self.allow_private and is_private_address(ip):
            return (
                f"refused private or loopback address {ip} (host {host}); "
                "set source.allow_private_networks: true to crawl it"
            )
        return None

    def check_name(self, host: str) -> str | None:
        """Why ``host`` is refused by its spelling alone (no DNS), or None."""
        host = host.strip("[]").lower().rstrip(".")
        if not host:
            return "refused a URL without a host"
        if self.listed(host):
            return None
        ip = parse_ip(host)
        if ip is not None:
            return self.check_address(host, ip)
        if host in METADATA_HOSTS:
            return f"refused cloud metadata host {host}; list it in source.allow_hosts to crawl it"
        if not self.allow_private and _is_local_name(host):
            return (
                f"refused private or loopback address {host}; "
                "set source.allow_private_networks: true to crawl it"
            )
        return None

    def check_host(self, host: str) -> str | None:
        """:meth:`check_name`, then every address the name resolves to now (cached per process).

        This is the early check; the connection's own DNS answer is checked again by the spider's
        resolver, since the two lookups may disagree.
        """
        reason = self.check_name(host)
        host = host.strip("[]").lower().rstrip(".")
        if reason is not None or not host or self.listed(host) or parse_ip(host) is not None:
            return reason
        for ip in _resolve(host):
            reason = self.check_address(host, ip)
            if reason is not None:
                return reason
        return None
