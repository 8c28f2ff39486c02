"""Identities and URL handling."""

from __future__ import annotations

from ingest.ids import chunk_id, doc_id, doc_prefix, model_key, text_hash
from ingest.urls import canonicalize_url, is_http_url, is_private_host, on_allowed_domains


def test_chunk_ids_are_prefixed_by_their_document() -> None:
    d = doc_id("https://example.org/a")
    assert d == doc_id("https://example.org/a") and d != doc_id("https://example.org/b")
    cid = chunk_id(d, "some text")
    assert cid.startswith(doc_prefix(d)) and cid == f"{d}#{text_hash('some text')}"
    assert len(cid) <= 512


def test_text_hash_ignores_whitespace_reflow_only() -> None:
    assert text_hash("a  b\nc") == text_hash("a b c")
    assert text_hash("a b c") != text_hash("a b d")


def test_model_key_is_order_independent_and_sensitive() -> None:
    a = model_key({"kind": "local", "model": "m", "normalize": True})
    assert a == model_key({"normalize": True, "model": "m", "kind": "local"})
    assert a != model_key({"kind": "local", "model": "m", "normalize": False})


def test_canonicalize_drops_fragments_and_tracking() -> None:
    assert canonicalize_url("HTTP://Example.org/a?utm_source=x&b=2&a=1#top") == "http://example.org/a?a=1&b=2"
    assert canonicalize_url("http://example.org/p?fbclid=1") == "http://example.org/p"
    assert canonicalize_url("http://example.org") == "http://example.org/"


def test_canonicalize_strips_session_ids() -> None:
    # Nutch's default urlnormalizer-regex names plus Heritrix's ASPSESSIONID and CFID/CFTOKEN.
    token = "0f3a9c27d4b1e8a65c2d7f90b1e4a3c8"
    variants = [
        "http://example.org/shop/cart?item=2",
        f"http://example.org/shop/cart;jsessionid={token.upper()}?item=2",
        f"http://example.org/shop/cart;jsessionid={token}.node01?item=2",
        f"http://example.org/shop/cart?item=2&PHPSESSID={token}",
        f"http://example.org/shop/cart?jsessionid={token}&item=2",
        f"http://example.org/shop/cart?sessionid={token}&item=2",
        f"http://example.org/shop/cart?item=2&sid={token}",
        f"http://example.org/shop/cart?item=2&bv_sid={token}",
        "http://example.org/shop/cart?ASPSESSIONIDQCDBDDQS=JFDOAMPAGACBDMLNLFBCCNCI&item=2",
        "http://example.org/shop/cart?CFID=1234&CFTOKEN=56789012&item=2",
        f"http://example.org/shop/cart?item=2&utm_source=mail&sid={token}#top",
    ]
    assert {canonicalize_url(u) for u in variants} == {"http://example.org/shop/cart?item=2"}
    # A short sid is usually something else (a site or section id): kept, as Heritrix keeps it.
    assert canonicalize_url("http://example.org/list?sid=3") == "http://example.org/list?sid=3"
    assert canonicalize_url("http://example.org/a;jsessionid=X") == "http://example.org/a"


def test_private_hosts() -> None:
    for host in (
        "127.0.0.1",
        "localhost",
        "10.1.2.3",
        "192.168.0.1",
        "169.254.169.254",
        "::1",
        "[::1]",
        "0.0.0.0",
        "100.64.0.1",  # carrier-grade NAT
        "198.18.0.1",
        "[::ffff:10.0.0.1]",
        "[fd00:ec2::254]",
        "100.100.100.200",
        "metadata.google.internal",
        "printer.local",
    ):
        assert is_private_host(host), host
    for host in ("8.8.8.8", "1.1.1.1", "2606:4700:4700::1111"):
        assert not is_private_host(host), host


def test_is_http_url() -> None:
    assert is_http_url("http://example.org") and is_http_url("HTTPS://Example.org/a?b=1")
    assert is_http_url("http://127.0.0.1:8080/") and is_http_url("http://[::1]/")
    for url in ("ftp://example.org/", "file:///etc/passwd", "mailto:a@example.org", "javascript:void(0)"):
        assert not is_http_url(url), url
    for url in ("/a/b", "example.org/a", "http://", "http:///path", "https://:80/", "http://[::1", ""):
        assert not is_http_url(url), url


def test_on_allowed_domains_matches_whole_labels() -> None:
    domains = ["example.org", "Docs.Example.NET"]
    for allowed in (
        "https://example.org/a",
        "http://docs.example.org/",
        "example.org",
        "WWW.Example.org",
        "https://a.b.example.org:8443/x",
        "http://example.org./",
        "docs.example.net",
    ):
        assert on_allowed_domains(allowed, domains), allowed
    for refused in (
        "https://badexample.org/",
        "https://example.org.evil.com/",
        "example.net",
        "https://www.example.net/",
        "http://[::1]/",
        "",
        "http://[::1",
        "mailto:a@example.org",
    ):
        assert not on_allowed_domains(refused, domains), refused
    assert on_allowed_domains("http://[::1]:8080/", ["::1"]) and on_allowed_domains("[::1]", ["::1"])
    assert not on_allowed_domains("https://example.org/", [])
