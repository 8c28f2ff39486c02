"""SDKs and keys: vendor SDKs imported lazily, API keys read from the environment, and server messages
scrubbed of secrets before they reach an error message or a log."""

from __future__ import annotations

import importlib
import os
import re
from types import ModuleType

from ingest.errors import ConfigError, MissingExtraError

# Server messages are quoted in error messages at most this long: enough to say what is wrong,
# short enough not to paste a whole HTML error page into a log line.
MAX_MESSAGE_CHARS = 300

# Key-like strings scrubbed from any server message: OpenAI ("sk-...", "sk-proj-..."), Pinecone
# ("pcsk_..."), and whatever follows "Bearer".
_KEYLIKE_RES = (
    (re.compile(r"\bsk-[A-Za-z0-9_*.\-]{3,}"), "sk-***"),
    (re.compile(r"\bpcsk_[A-Za-z0-9_*.\-]{3,}"), "pcsk_***"),
    (re.compile(r"(?i)\bbearer\s+[A-Za-z0-9_*.\-~+/=]{3,}"), "Bearer ***"),
)


def import_extra(module: str, extra: str) -> ModuleType:
    """Import an optional vendor SDK lazily; MissingExtraError ("pip install 'webvec[extra]'") if absent."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise MissingExtraError(extra, module) from None


def env_secret(env: str) -> str | None:
    """The value of ``$env``, stripped, or None when unset or blank."""
    return os.environ.get(env, "").strip() or None


def api_key_from_env(env: str, *, setting: str, vendor: str) -> str:
    """The API key in ``$env``; ConfigError naming the variable (and the ``setting`` that names it)
    when it is unset or blank. The key itself never appears in any message."""
    key = env_secret(env)
    if key is None:
        raise ConfigError(
            f"{setting}: environment variable {env} is not set; export your {vendor} API key in it"
        )
    return key


def scrub(text: str, *secrets: str | None, max_chars: int = MAX_MESSAGE_CHARS) -> str:
    """``text`` (a server's message) safe for an error message or a log line.

    Every given secret becomes ``***``, key-like strings are masked, whitespace is collapsed to single
    spaces, and the result is cut to ``max_chars`` characters.
    """
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    for pattern, replacement in _KEYLIKE_RES:
        text = pattern.sub(replacement, text)
    text = " ".join(text.split())
    return text if len(text) <= max_chars else text[: max_chars - 1] + "…"
