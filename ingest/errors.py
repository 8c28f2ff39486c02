"""The one exception tree of webvec.

::

    WebvecError                 base of everything webvec raises on purpose
    ├── ConfigError             bad crawl definition or environment; fix the input, do not retry
    ├── RunInProgressError      another run of the same crawl holds its lock
    ├── NothingIngestedError    a read-only command on a crawl that has no live vectors yet
    ├── TransientError          429 rate limit, 5xx, timeouts, dropped connections: retry with backoff
    └── PermanentError          401, invalid input, insufficient quota, unknown model: stop at once
        ├── DimensionMismatchError  an existing index/collection has another dimension
        └── InputRejectedError      some inputs of an embed call were refused (the rest were embedded)

Adapters map vendor errors to this tree once, at the seam. Messages say what to do and never contain
a secret (adapters pass API keys to SDKs, never into messages).
"""

from __future__ import annotations

from typing import Any


class WebvecError(Exception):
    """Base class of every error webvec raises on purpose."""


class ConfigError(WebvecError):
    """A crawl definition or the environment is invalid; the message names the field to fix."""


class RunInProgressError(WebvecError):
    """Another run of the same crawl is in progress; runs of one crawl never interleave."""


class NothingIngestedError(WebvecError):
    """A crawl has no live vectors yet (never run, or no run wrote anything); run it first."""


class TransientError(WebvecError):
    """A failure that may succeed when retried (rate limit, server error, timeout).

    ``retry_after`` is the delay in seconds the server asked for, when it said.
    """

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class PermanentError(WebvecError):
    """A failure that retrying cannot fix (bad key, invalid input, quota, unknown model)."""


class DimensionMismatchError(PermanentError):
    """The target index or collection exists with a different vector dimension."""


class InputRejectedError(PermanentError):
    """The embedder refused some inputs (invalid input, a vector failing validation) and embedded the rest.

    ``rejected`` maps the index of each refused text to the reason; ``vectors`` holds the vectors of
    the others by index. The caller quarantines the refused texts instead of failing the run.
    """

    def __init__(self, rejected: dict[int, str], vectors: dict[int, Any]) -> None:
        first = next(iter(rejected.values()), "")
        super().__init__(f"{len(rejected)} input(s) rejected by the embedder, e.g. {first}")
        self.rejected = rejected
        self.vectors = vectors


class MissingExtraError(ConfigError):
    """An optional dependency is not installed."""

    def __init__(self, extra: str, module: str) -> None:
        super().__init__(f"{module} is not installed: pip install 'webvec[{extra}]'")
