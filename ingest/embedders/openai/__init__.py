"""OpenAI embeddings, or any server speaking OpenAI's ``/v1/embeddings`` (``embedder.base_url``).

Requests
    ``embed(texts)`` packs consecutive texts into requests of at most ``max_batch_inputs`` inputs
    (OpenAI: 2048) and ``max_request_tokens`` tokens (OpenAI: 300k; further capped at a quarter second's
    worth of ``tokens_per_minute``, more when ``requests_per_minute`` would bind first), counted with
    tiktoken ``encode_ordinary``. Up to ``max_concurrency`` requests are in flight at once
    (:func:`ingest.vendor.fan_out`: threads sharing the SDK's sync client, so ``embed`` stays a plain
    call that also works inside a running event loop). A
    client-side :class:`~ingest.vendor.RateLimiter` shared by every call of one embedder keeps to
    ``requests_per_minute`` and ``tokens_per_minute``. Vectors travel as base64 float32
    (``encoding_format="base64"``, a quarter of the bytes of JSON floats) and are decoded here; a
    compatible server that answers float lists anyway is accepted too. ``progress`` (optional) is
    called with the number of texts each request finished.

Retries
    The SDK's own retries are off (``max_retries=0``): there is one retry loop,
    :func:`ingest.vendor.call_with_retries`, with its one Retry-After rule (wait at least what the
    server asks; give up at once when that is more than is left of the budget). Transient failures
    (429 rate limit, 408/409, 5xx, timeouts, dropped connections) are retried with exponential backoff
    and jitter; a 429 also halves the limiter's rates (when limits are configured) and pauses every
    request of this embedder for the asked delay. All retries of one ``embed`` call share one budget
    of ``embedder.retry_budget_s`` seconds, then the call raises :class:`TransientError`.
    **Callers (the Prefect flow) must not add retries of their own on top** — that would multiply the
    waits and the requests; re-running the flow later is the retry of last resort.

    Permanent failures stop at once with one line: 401 (bad key, naming the environment variable),
    403, 404 (unknown model), 429 ``insufficient_quota`` (billing), and a 400/422 about a request
    parameter (``model``, ``dimensions``, ``encoding_format``, ``user``).

Rejected inputs
    Any other 400/422 is taken to be about the inputs. The request's inputs are then bisected: each
    half is sent again, and so on, until every failing input is alone; an input refused on its own is
    rejected, all the others are embedded (about ``2·k·log2(n)`` extra requests for ``k`` bad inputs
    in a request of ``n``). A vector that comes back non-finite or all zeros rejects its input too
    (:func:`~ingest.embedders.base.validate_vectors`). ``embed`` then raises
    :class:`InputRejectedError` carrying the vectors of all the other inputs and, per rejected input,
    why. If the server refuses every input of a call of two or more, that is the request, not the
    inputs: a plain :class:`PermanentError`. Empty and over-long inputs are the caller's mistake
    (the chunker never makes them) and raise PermanentError before anything is sent.

Answers
    Exactly one vector per input, placed by ``index`` (the order of ``data`` is not trusted), of the
    expected dimension; anything else raises :class:`PermanentError` and nothing partial is returned.

Secrets
    The key is read from ``$<api_key_env>`` when the client is made, handed to the SDK and nowhere
    else: not to messages, ``repr``, logs or ``model_key``. Server messages are scrubbed of it.

The package: :mod:`~ingest.embedders.openai.embedder` holds :class:`OpenAIEmbedder` (packing,
requests, retries, bisection); :mod:`~ingest.embedders.openai.api` decodes answers and maps the SDK's
exceptions.
"""

from __future__ import annotations

from ingest.embedders.openai.api import OPENAI_BASE_URL
from ingest.embedders.openai.embedder import OPENAI_RATE_LIMIT_BURST_S, OpenAIEmbedder
from ingest.vendor import RateLimiter, retry_after_from_headers

__all__ = [
    "OPENAI_BASE_URL",
    "OPENAI_RATE_LIMIT_BURST_S",
    "OpenAIEmbedder",
    "RateLimiter",
    "retry_after_from_headers",
]
