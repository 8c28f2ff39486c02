"""The one exception tree of webvec.

::

    WebvecError                 base of everything webvec raises on purpose
    ├── ConfigError             bad crawl definition or environment; fix the input, do not retry
    ├── RunInProgressError      another run of the same crawl holds its lock
    ├── NothingIngestedError    a read-only command on a crawl that has no live vectors yet
    ├── TransientError          429 rate limit, 5xx, timeouts, dropped connections: retry with backoff
    └── PermanentError          401, invalid input, insufficient quota, unknown model: stop at once
        ├── DimensionMismatchError  an existing index/collection has another dimension
        └── InputRejectedError      some inputs of an ``embed`` call were refused (or gave unusable
                                    vectors); the others were embedded: ``rejected`` says which and
                                    why, ``vectors`` holds the others. Quarantine those, write the rest

``MissingExtraError`` (an optional dependency is not installed) is a ``ConfigError``.

Adapters map vendor errors to this tree once, at the seam. Messages say what to do and never contain
a secret (adapters pass API keys to SDKs, never into messages).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np
    from numpy.typing import NDArray


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

    def __reduce__(self) -> tuple[Any, ...]:
        # Keeps retry_after through pickling (Prefect results, Dask workers).
        return (_rebuild, (type(self), (str(self),), {"retry_after": self.retry_after}))


class PermanentError(WebvecError):
    """A failure that retrying cannot fix (bad key, invalid input, quota, unknown model)."""


class DimensionMismatchError(PermanentError):
    """The target index or collection exists with a different vector dimension."""


class InputRejectedError(PermanentError):
    """Some inputs of one ``embed`` call cannot be embedded; every other input was.

    Raised by an embedder only after it embedded all the inputs it could, when the provider refused
    some inputs themselves (a 400 about the input, not about the key, the model or the quota) or
    returned an unusable vector for them (non-finite values, all zeros). Retrying the same inputs
    fails the same way: set them aside (quarantine) and write the others.

    ``rejected`` maps the index of each rejected input, in the ``texts`` given to ``embed``, to why it
    was rejected (one line, no secret). ``vectors`` has one row per input, in input order: the vectors
    of the accepted inputs, and NaN rows for the rejected ones, which must never be written.
    :func:`ingest.embedders.base.embed_partial` returns both instead of raising.
    """

    def __init__(self, message: str, *, rejected: Mapping[int, str], vectors: NDArray[np.float32]) -> None:
        super().__init__(message)
        self.rejected = dict(sorted(rejected.items()))
        self.vectors = vectors

    @property
    def accepted(self) -> list[int]:
        """Indices of the inputs that were embedded (their rows of ``vectors`` are good)."""
        return [i for i in range(len(self.vectors)) if i not in self.rejected]

    def __reduce__(self) -> tuple[Any, ...]:
        # Keyword-only arguments: without this, pickling (Prefect results, Dask workers) loses them.
        return (_rebuild, (type(self), (str(self),), {"rejected": self.rejected, "vectors": self.vectors}))


class MissingExtraError(ConfigError):
    """An optional dependency is not installed."""

    def __init__(self, extra: str, module: str) -> None:
        super().__init__(f"{module} is not installed: pip install 'webvec[{extra}]'")
        self.extra = extra
        self.module = module

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.extra, self.module))


def _rebuild(cls: type[WebvecError], args: tuple[Any, ...], kwargs: dict[str, Any]) -> WebvecError:
    """Unpickle an error whose constructor takes keyword-only arguments."""
    return cls(*args, **kwargs)
