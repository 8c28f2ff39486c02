"""Identities and URL handling."""

from __future__ import annotations

from ingest.ids import chunk_id, doc_id, doc_prefix, model_key, text_hash
from ingest.urls import canonicalize_url, is_private_host


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
    ):
        assert is_private_host(host), host
    for host in ("8.8.8.8", "1.1.1.1", "2606:4700:4700::1111"):
        assert not is_private_host(host), host
