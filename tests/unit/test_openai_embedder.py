"""OpenAIEmbedder: the real ``openai`` SDK against the loopback OpenAI stand-in (tests/servers)."""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from ingest import pricing
from ingest.config import OpenAIEmbedderConfig
from ingest.embedders import make_embedder
from ingest.embedders.base import NON_FINITE, Embedder, embed_partial
from ingest.embedders.openai import OpenAIEmbedder, retry_after_from_headers
from ingest.errors import (
    ConfigError,
    InputRejectedError,
    MissingExtraError,
    PermanentError,
    TransientError,
)
from tests.servers import openai_server as srv
from tests.servers.openai_server import NAN_MARKER, REJECT_MARKER, Fault, OpenAIServer

openai = pytest.importorskip("openai")

KEY_ENV = "WEBVEC_TEST_OPENAI_KEY"
KEY = "sk-test-S3CRET-0123456789abcdef"

openai_server = srv.openai_server  # the fixture, under its own name


@pytest.fixture
def server(openai_server: OpenAIServer, monkeypatch: pytest.MonkeyPatch) -> OpenAIServer:
    """The stand-in expecting KEY, with KEY in $WEBVEC_TEST_OPENAI_KEY."""
    openai_server.api_key = KEY
    monkeypatch.setenv(KEY_ENV, KEY)
    return openai_server


Make = Callable[..., OpenAIEmbedder]


@pytest.fixture
def make(server: OpenAIServer) -> Make:
    """Build an embedder pointed at the server; keyword arguments override config fields."""

    def _make(**fields: Any) -> OpenAIEmbedder:
        values: dict[str, Any] = {
            "kind": "openai",
            "base_url": server.base_url,
            "api_key_env": KEY_ENV,
            "retry_budget_s": 2.0,
            "timeout_s": 5.0,
        }
        values.update(fields)
        return OpenAIEmbedder(OpenAIEmbedderConfig(**values))

    return _make


def texts_of(n: int, prefix: str = "page") -> list[str]:
    return [f"{prefix} {i} about topic {i % 5}" for i in range(n)]


def cos(a: np.ndarray, b: np.ndarray) -> float:
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


# -- shape of the work -----------------------------------------------------------------------------


@pytest.mark.server
def test_is_an_embedder_built_by_the_registry(server: OpenAIServer) -> None:
    cfg = OpenAIEmbedderConfig(kind="openai", base_url=server.base_url, api_key_env=KEY_ENV)
    embedder = make_embedder(cfg)
    assert isinstance(embedder, OpenAIEmbedder)
    assert isinstance(embedder, Embedder)
    assert embedder.dimension == 1536
    assert embedder.max_input_tokens == 8191


@pytest.mark.server
def test_returns_server_vectors_in_input_order(make: Make, server: OpenAIServer) -> None:
    embedder = make()
    texts = texts_of(5)
    vectors = embedder.embed(texts)
    assert vectors.dtype == np.float32
    assert vectors.shape == (5, 1536)
    for text, vec in zip(texts, vectors, strict=True):
        np.testing.assert_allclose(vec, server.vector(text), rtol=1e-6)
    assert server.records[0].encoding_format == "base64"
    assert embedder.embed([]).shape == (0, 1536)


@pytest.mark.server
def test_batches_by_input_count(make: Make, server: OpenAIServer) -> None:
    embedder = make(max_batch_inputs=3, max_concurrency=1)
    embedder.embed(texts_of(7))
    assert [r.n_inputs for r in server.ok_records] == [3, 3, 1]
    assert server.requests == 3 and embedder.requests_made == 3


@pytest.mark.server
def test_batches_by_token_total(make: Make, server: OpenAIServer) -> None:
    embedder = make(max_request_tokens=50, max_concurrency=1)
    texts = [" ".join(["word"] * 20) + f" {i}" for i in range(6)]
    counts = [embedder.count_tokens(t) for t in texts]
    assert all(2 * n <= 50 < 3 * n for n in counts)  # two texts fit a request, three do not
    embedder.embed(texts)
    assert [r.n_inputs for r in server.ok_records] == [2, 2, 2]
    assert all(r.tokens <= 50 for r in server.records)
    assert server.tokens == sum(counts) == embedder.tokens_used


@pytest.mark.server
def test_requests_hold_a_quarter_second_of_the_token_cap_unless_the_request_cap_binds(
    make: Make, server: OpenAIServer
) -> None:
    texts = [" ".join(["word"] * 22) + f" {i}" for i in range(12)]
    assert all(23 <= make().count_tokens(t) <= 25 for t in texts)
    # 24,000 tokens/min: a quarter second's worth is 100 tokens, four of these texts a request (a
    # request's size is part of the margin the client keeps below the cap).
    make(tokens_per_minute=24_000, requests_per_minute=None).embed(texts)
    assert [r.n_inputs for r in server.ok_records] == [4, 4, 4]
    # At 60 requests/min, requests that small would reach only a quarter of the token cap: they hold
    # twice what reaching it takes (800 tokens), capped at a second's worth (400 tokens, 16 texts).
    server.reset_counters()
    make(tokens_per_minute=24_000, requests_per_minute=60).embed(texts)
    assert [r.n_inputs for r in server.ok_records] == [12]


@pytest.mark.server
def test_requests_overlap_up_to_max_concurrency(make: Make, server: OpenAIServer) -> None:
    server.latency_s = 0.3
    embedder = make(max_batch_inputs=1, max_concurrency=4)
    started = time.monotonic()
    vectors = embedder.embed(texts_of(4))
    elapsed = time.monotonic() - started
    assert server.max_in_flight >= 3
    assert elapsed < 0.9  # 1.2 s one after another
    np.testing.assert_allclose(vectors[2], server.vector(texts_of(4)[2]), rtol=1e-6)


@pytest.mark.server
def test_requests_per_minute_limit_holds(make: Make, server: OpenAIServer) -> None:
    # 600 RPM = 10/s with a burst of one second's worth; the server allows 24 per sliding second.
    server.rpm_limit, server.limit_window_s = 24, 1.0
    embedder = make(max_batch_inputs=1, max_concurrency=8, requests_per_minute=600)
    started = time.monotonic()
    embedder.embed(texts_of(25))
    elapsed = time.monotonic() - started
    assert server.statuses[429] == 0 and server.ok_requests == 25
    assert elapsed >= (25 - 11) / 10 * 0.9  # 11 go at once, the others 10 per second
    assert elapsed < 3.0


@pytest.mark.server
def test_tokens_per_minute_limit_holds(make: Make, server: OpenAIServer) -> None:
    # 12,000 TPM = 200 tokens/s with a burst of 200; the server allows 500 per sliding second.
    server.tpm_limit, server.limit_window_s = 500, 1.0
    embedder = make(max_batch_inputs=1, max_concurrency=8, tokens_per_minute=12_000)
    texts = [" ".join(["word"] * 22) + f" {i}" for i in range(20)]
    counts = [embedder.count_tokens(t) for t in texts]
    assert all(23 <= n <= 25 for n in counts)
    started = time.monotonic()
    embedder.embed(texts)
    elapsed = time.monotonic() - started
    assert server.statuses[429] == 0 and server.ok_requests == 20
    assert elapsed >= (sum(counts) - 200 - max(counts)) / 200 * 0.9  # a burst of 200, then 200/s
    assert elapsed < 3.5


# -- retries ---------------------------------------------------------------------------------------


@pytest.mark.server
@pytest.mark.parametrize(
    "fault",
    [
        Fault.rate_limit(retry_after=0.3),
        Fault.rate_limit(retry_after_ms=300),
        Fault.rate_limit(reset_requests="300ms"),
        Fault.rate_limit(reset_tokens="0.3s"),
    ],
    ids=["retry-after", "retry-after-ms", "reset-requests", "reset-tokens"],
)
def test_429_waits_as_asked_then_succeeds(make: Make, server: OpenAIServer, fault: Fault) -> None:
    embedder = make()
    server.inject(fault)
    vectors = embedder.embed(["hello"])
    assert vectors.shape == (1, 1536)
    first, second = server.records
    assert (first.status, second.status) == (429, 200)
    assert second.start - first.end >= 0.29
    assert embedder.limiter.factor < 1.0  # slowed down after the 429
    assert embedder.requests_made == 2 and embedder.retries == 1


@pytest.mark.server
@pytest.mark.parametrize("status", [500, 502, 503])
def test_server_errors_are_retried(make: Make, server: OpenAIServer, status: int) -> None:
    server.inject(Fault.server_error(status))
    make().embed(["hello"])
    assert [r.status for r in server.records] == [status, 200]


@pytest.mark.server
def test_timeout_is_retried_within_budget(make: Make, server: OpenAIServer) -> None:
    server.inject(Fault.slow(1.5))
    started = time.monotonic()
    make(timeout_s=0.3).embed(["hello"])
    assert time.monotonic() - started < 1.2
    assert server.requests == 2 and server.ok_requests >= 1


@pytest.mark.server
def test_dropped_connection_is_retried(make: Make, server: OpenAIServer) -> None:
    server.inject(Fault.drop_connection(), Fault.drop_connection())
    vectors = make().embed(["hello", "world"])
    assert vectors.shape == (2, 1536)
    assert [r.status for r in server.records] == [0, 0, 200]


@pytest.mark.server
def test_spent_budget_raises_transient_error(make: Make, server: OpenAIServer) -> None:
    server.always = Fault.server_error(503)
    started = time.monotonic()
    with pytest.raises(TransientError, match=r"503.*gave up after \d+ attempts.*retry_budget_s"):
        make(retry_budget_s=0.5).embed(["hello"])
    assert time.monotonic() - started < 1.5
    assert server.requests > 2


@pytest.mark.server
def test_retry_after_beyond_budget_gives_up_at_once(make: Make, server: OpenAIServer) -> None:
    server.inject(Fault.rate_limit(retry_after=30))
    started = time.monotonic()
    with pytest.raises(
        TransientError, match=r"asked to wait 30s, more than the .*embedder\.retry_budget_s"
    ) as info:
        make(retry_budget_s=1.0).embed(["hello"])
    assert time.monotonic() - started < 0.5
    assert info.value.retry_after == pytest.approx(30)
    assert server.requests == 1


@pytest.mark.server
def test_budget_is_shared_by_concurrent_requests(make: Make, server: OpenAIServer) -> None:
    server.always = Fault.server_error(500)
    started = time.monotonic()
    with pytest.raises(TransientError):
        make(retry_budget_s=0.5, max_batch_inputs=1, max_concurrency=4).embed(texts_of(8))
    assert time.monotonic() - started < 1.5  # one budget, not 0.5 s per request


def test_retry_after_header_parsing() -> None:
    assert retry_after_from_headers({"retry-after-ms": "250", "retry-after": "9"}) == 0.25
    assert retry_after_from_headers({"Retry-After": "2"}) == 2.0
    date = time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(time.time() + 10))
    assert 8 < (retry_after_from_headers({"retry-after": date}) or 0) <= 10
    assert retry_after_from_headers({"x-ratelimit-reset-requests": "1m2.5s"}) == 62.5
    assert (
        retry_after_from_headers(
            {
                "x-ratelimit-reset-requests": "20ms",
                "x-ratelimit-reset-tokens": "6m0s",
                "x-ratelimit-remaining-tokens": "0",
            }
        )
        == 360
    )
    assert retry_after_from_headers({"x-ratelimit-reset-tokens": "soon"}) is None
    assert retry_after_from_headers({}) is None


# -- permanent errors ------------------------------------------------------------------------------


@pytest.mark.server
def test_insufficient_quota_stops_at_once(make: Make, server: OpenAIServer) -> None:
    server.inject(Fault.insufficient_quota())
    with pytest.raises(PermanentError, match=r"insufficient_quota.*billing"):
        make().embed(["hello"])
    assert server.requests == 1


@pytest.mark.server
def test_bad_key_names_the_variable_not_the_key(make: Make, server: OpenAIServer) -> None:
    server.api_key = "sk-another-key-entirely"
    with pytest.raises(PermanentError) as info:
        make().embed(["hello"])
    message = str(info.value)
    assert KEY_ENV in message and "401" in message
    assert KEY not in message and KEY[-4:] not in message
    assert info.value.__cause__ is None and info.value.__suppress_context__
    assert server.requests == 1


@pytest.mark.server
def test_unknown_model_is_permanent(make: Make, server: OpenAIServer) -> None:
    with pytest.raises(PermanentError, match=r"no-such-model.*not found"):
        make(model="no-such-model", output_dimension=8).embed(["hello"])
    assert server.requests == 1


@pytest.mark.server
def test_invalid_request_is_permanent(make: Make, server: OpenAIServer) -> None:
    # ada-002 takes no `dimensions`; through base_url the embedder lets the server decide.
    with pytest.raises(PermanentError, match=r"400.*does not support specifying dimensions"):
        make(model="text-embedding-ada-002", dimensions=64).embed(["hello"])
    assert server.requests == 1


@pytest.mark.server
@pytest.mark.parametrize(
    ("fault", "match"),
    [
        (Fault(dimension=10), "dimension 10, expected 1536"),
        (Fault(count_delta=-1), "returned 2 vectors for 3 inputs"),
        (Fault(count_delta=1), "returned 4 vectors for 3 inputs"),
        (Fault(nan=True), "non-finite"),
    ],
    ids=["dimension", "fewer", "more", "nan"],
)
def test_malformed_answers_are_permanent(make: Make, server: OpenAIServer, fault: Fault, match: str) -> None:
    server.inject(fault)
    with pytest.raises(PermanentError, match=match) as info:
        make().embed(["a", "b", "c"])
    assert server.requests == 1
    # A NaN row rejects its input only; a wrong count or dimension condemns the whole answer.
    assert isinstance(info.value, InputRejectedError) == fault.nan


@pytest.mark.server
def test_shuffled_answer_is_put_back_in_input_order(make: Make, server: OpenAIServer) -> None:
    server.inject(Fault(shuffle=True))
    texts = ["alpha beta", "gamma delta", "epsilon zeta"]
    vectors = make().embed(texts)
    for text, vec in zip(texts, vectors, strict=True):
        np.testing.assert_allclose(vec, server.vector(text), rtol=1e-6)


@pytest.mark.server
def test_permanent_error_in_one_batch_fails_the_whole_call(make: Make, server: OpenAIServer) -> None:
    server.latency_s = 0.05
    server.inject(Fault(), Fault(), Fault(dimension=3))
    with pytest.raises(PermanentError, match="dimension 3"):
        make(max_batch_inputs=2, max_concurrency=4).embed(texts_of(8))


# -- rejected inputs -------------------------------------------------------------------------------


def test_bad_inputs_are_isolated_and_the_others_embedded(make: Make, server: OpenAIServer) -> None:
    texts = texts_of(50)
    texts[7] = f"page 7 {REJECT_MARKER}"
    texts[31] = f"page 31 {NAN_MARKER}"
    embedder = make(max_concurrency=1)
    done: list[int] = []
    with pytest.raises(InputRejectedError) as info:
        embedder.embed(texts, progress=done.append)
    err = info.value
    assert set(err.rejected) == {7, 31}
    assert "refused by the server (400 invalid_request_error)" in err.rejected[7]
    assert "'$.input' is invalid" in err.rejected[7]
    assert err.rejected[31] == NON_FINITE
    assert "2 of 50 inputs rejected" in str(err)
    assert err.accepted == [i for i in range(50) if i not in (7, 31)]
    for i in err.accepted:
        np.testing.assert_allclose(err.vectors[i], server.vector(texts[i]), rtol=1e-6)
    assert np.isnan(err.vectors[[7, 31]]).all()
    # One request, then two per level of the bisection down to the one refused input.
    assert server.requests <= 1 + 2 * math.ceil(math.log2(50))
    assert sum(done) == 50
    assert len(done) == server.statuses[200] + 1  # a call per answered request, one for the refused input
    assert server.inputs == 49  # each embedded input sent once with a 200 (the NaN one included)


def test_several_refused_inputs_cost_logarithmic_requests(make: Make, server: OpenAIServer) -> None:
    texts = texts_of(64)
    bad = {3, 40, 41}
    for i in bad:
        texts[i] = f"{texts[i]} {REJECT_MARKER}"
    vectors, rejected = embed_partial(make(), texts)
    assert set(rejected) == bad
    assert np.isfinite(vectors[[i for i in range(64) if i not in bad]]).all()
    assert server.requests <= 1 + 2 * len(bad) * math.ceil(math.log2(64))
    assert server.inputs == 64 - len(bad)


def test_rejections_across_concurrent_requests_keep_input_positions(make: Make, server: OpenAIServer) -> None:
    texts = texts_of(40)
    for i in (0, 13, 39):
        texts[i] = f"{texts[i]} {REJECT_MARKER}"
    done: list[int] = []
    vectors, rejected = embed_partial(make(max_batch_inputs=10, max_concurrency=4), texts, done.append)
    assert set(rejected) == {0, 13, 39}
    for i in set(range(40)) - {0, 13, 39}:
        np.testing.assert_allclose(vectors[i], server.vector(texts[i]), rtol=1e-6)
    assert sum(done) == 40


def test_every_input_refused_is_the_request_not_the_inputs(make: Make, server: OpenAIServer) -> None:
    texts = [f"{t} {REJECT_MARKER}" for t in texts_of(4)]
    with pytest.raises(PermanentError, match="refused every one of the 4 inputs") as info:
        make().embed(texts)
    assert not isinstance(info.value, InputRejectedError)


def test_a_lone_refused_input_is_rejected(make: Make, server: OpenAIServer) -> None:
    with pytest.raises(InputRejectedError) as info:
        make().embed([f"x {REJECT_MARKER}"])
    assert list(info.value.rejected) == [0] and server.requests == 1


@pytest.mark.parametrize(
    ("setup", "match"),
    [
        ("auth", "401"),
        ("quota", "insufficient_quota"),
        ("model", "not found"),
        ("dimensions", "does not support specifying dimensions"),
    ],
)
def test_request_level_refusals_are_not_bisected(
    make: Make, server: OpenAIServer, setup: str, match: str
) -> None:
    texts = texts_of(16)
    texts[5] = f"{texts[5]} {REJECT_MARKER}"  # would be isolated, were the request itself acceptable
    fields: dict[str, Any] = {}
    if setup == "auth":
        server.api_key = "sk-another-key-entirely"
    elif setup == "quota":
        server.always = Fault.insufficient_quota()
    elif setup == "model":
        fields = {"model": "no-such-model", "output_dimension": 8}
    else:
        fields = {"model": "text-embedding-ada-002", "dimensions": 64}
    with pytest.raises(PermanentError, match=match) as info:
        make(**fields).embed(texts)
    assert not isinstance(info.value, InputRejectedError)
    assert server.requests == 1


def test_progress_counts_each_request(make: Make, server: OpenAIServer) -> None:
    done: list[int] = []
    make(max_batch_inputs=3, max_concurrency=2).embed(texts_of(7), progress=done.append)
    assert sorted(done) == [1, 3, 3]
    make().embed(texts_of(2))  # progress is optional


def test_each_answered_request_is_handed_over_before_a_later_one_fails(
    make: Make, server: OpenAIServer
) -> None:
    # Issue 10: what was billed is kept even when the call fails (or its process dies) afterwards.
    texts = texts_of(6)
    texts[3] = f"page 3 {NAN_MARKER}"
    parts: list[tuple[int, np.ndarray, dict[int, str]]] = []
    done: list[int] = []
    server.inject(Fault(), Fault(), Fault(dimension=3))
    with pytest.raises(PermanentError, match="dimension 3"):
        make(max_batch_inputs=2, max_concurrency=1).embed_in_parts(
            texts,
            done.append,
            lambda start, rows, rejected: parts.append((start, rows.copy(), dict(rejected))),
        )
    assert [(start, len(rows)) for start, rows, _ in parts] == [(0, 2), (2, 2)]
    assert done == [2, 2]  # progress as before, one call per request
    for start, rows, _ in parts:
        for i, row in enumerate(rows):
            if start + i != 3:
                np.testing.assert_allclose(row, server.vector(texts[start + i]), rtol=1e-6)
    assert parts[1][2] == {1: NON_FINITE} and np.isnan(parts[1][1][1]).all()  # text 3, as a row of part 2


def test_a_bisected_request_hands_over_each_answered_half(make: Make, server: OpenAIServer) -> None:
    texts = texts_of(4)
    texts[1] = f"page 1 {REJECT_MARKER}"
    parts: list[tuple[int, int, dict[int, str]]] = []
    vectors, rejected = embed_partial(
        make(max_batch_inputs=4),
        texts,
        on_part=lambda start, rows, why: parts.append((start, len(rows), dict(why))),
    )
    assert set(rejected) == {1}
    # The refused request is never handed over; its halves are, and together cover every input once.
    assert sorted((s, n) for s, n, _ in parts) == [(0, 1), (1, 1), (2, 2)]
    assert [why for s, _, why in parts if s == 1] == [{0: rejected[1]}]
    assert not np.isnan(vectors[[0, 2, 3]]).any()


def test_the_embed_stage_caches_each_request_so_a_failed_batch_is_not_paid_twice(
    make: Make, server: OpenAIServer, tmp_path: Path
) -> None:
    from ingest.batch import embed_chunks
    from ingest.chunking import Chunk
    from ingest.ids import text_hash
    from ingest.state import StateDB

    texts = texts_of(6)
    chunks = [Chunk(f"c{i}", "d", t, (), i, 5, text_hash(t)) for i, t in enumerate(texts)]
    embedder = make(max_batch_inputs=2, max_concurrency=1)
    db = StateDB(f"sqlite:///{tmp_path / 'state.db'}")
    try:
        server.inject(Fault(), Fault(), Fault(dimension=3))  # the batch's third answer is unusable
        with pytest.raises(PermanentError):
            embed_chunks(chunks, db, embedder, embedder.model_key)
        cached = db.cached_vectors(embedder.model_key, [c.text_hash for c in chunks])
        assert set(cached) == {c.text_hash for c in chunks[:4]}  # the two answered requests
        np.testing.assert_allclose(cached[chunks[0].text_hash], server.vector(texts[0]), rtol=1e-6)

        embedded = embed_chunks(chunks, db, embedder, embedder.model_key)  # the batch again
        assert (embedded.texts_embedded, embedded.cache_hits) == (2, 4)
        assert sorted(server.texts.values()) == [1] * 4 + [2] * 2  # texts 4-5 sent twice, the rest once
        assert len(embedded.vectors) == 6
    finally:
        db.close()


# -- inputs ----------------------------------------------------------------------------------------


@pytest.mark.server
def test_empty_input_is_rejected_before_sending(make: Make, server: OpenAIServer) -> None:
    with pytest.raises(PermanentError, match="input 1 is empty"):
        make().embed(["fine", ""])
    assert server.requests == 0


@pytest.mark.server
def test_over_long_input_is_rejected_before_sending(make: Make, server: OpenAIServer) -> None:
    embedder = make(max_input_tokens=10)
    with pytest.raises(PermanentError, match=r"input 0 has \d+ tokens, more than the 10"):
        embedder.embed([" ".join(["word"] * 30)])
    assert server.requests == 0


@pytest.mark.server
def test_endoftext_in_text_is_counted_ordinarily(make: Make, server: OpenAIServer) -> None:
    embedder = make()
    text = "the page says <|endoftext|> literally"
    n = embedder.count_tokens(text)
    assert n > 5  # several ordinary tokens, not one special token
    embedder.embed([text])
    assert server.tokens == n == embedder.tokens_used


# -- configuration and secrets ----------------------------------------------------------------------


def test_missing_key_fails_check(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(KEY_ENV, raising=False)
    embedder = OpenAIEmbedder(OpenAIEmbedderConfig(kind="openai", api_key_env=KEY_ENV))
    with pytest.raises(ConfigError, match=f"{KEY_ENV} is not set"):
        embedder.check()
    with pytest.raises(ConfigError, match=KEY_ENV):
        embedder.embed(["hello"])


@pytest.mark.server
def test_base_url_without_auth_needs_no_key(
    openai_server: OpenAIServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    openai_server.api_key = None
    monkeypatch.delenv(KEY_ENV, raising=False)
    cfg = OpenAIEmbedderConfig(kind="openai", base_url=openai_server.base_url, api_key_env=KEY_ENV)
    embedder = OpenAIEmbedder(cfg)
    embedder.check()
    assert embedder.embed(["hello"]).shape == (1, 1536)


def test_missing_openai_package_is_a_missing_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "openai", None)
    monkeypatch.setenv(KEY_ENV, KEY)
    embedder = OpenAIEmbedder(OpenAIEmbedderConfig(kind="openai", api_key_env=KEY_ENV))
    with pytest.raises(MissingExtraError, match=r"webvec\[openai\]"):
        embedder.check()


@pytest.mark.server
def test_key_never_in_model_key_or_repr(server: OpenAIServer, monkeypatch: pytest.MonkeyPatch) -> None:
    url = server.base_url.replace("http://", "http://user:hunter2@") + "?api-key=hunter3"
    cfg = OpenAIEmbedderConfig(kind="openai", base_url=url, api_key_env=KEY_ENV)
    first = OpenAIEmbedder(cfg)
    monkeypatch.setenv(KEY_ENV, "sk-a-different-key")
    second = OpenAIEmbedder(cfg)
    assert first.model_key == second.model_key
    text = repr(first) + str(vars(first.cfg))
    assert KEY not in repr(first) and "hunter2" not in repr(first) and "hunter3" not in repr(first)
    assert KEY not in text


def test_model_key_follows_what_changes_vectors() -> None:
    def key(**fields: Any) -> str:
        return OpenAIEmbedder(OpenAIEmbedderConfig(kind="openai", **fields)).model_key

    base = key()
    assert key(api_key_env="OTHER_VAR", max_concurrency=9, timeout_s=3) == base
    assert key(base_url="https://api.openai.com/v1/") == base
    assert key(dimensions=256) != base
    assert key(model="text-embedding-3-large") != base
    assert key(base_url="http://127.0.0.1:1/v1") != base


@pytest.mark.server
def test_dimensions_parameter_truncates(make: Make, server: OpenAIServer) -> None:
    embedder = make(dimensions=256)
    assert embedder.dimension == 256
    vec = embedder.embed(["hello world"])[0]
    assert server.records[0].dimensions == 256
    np.testing.assert_allclose(vec, server.vector("hello world", dimensions=256), rtol=1e-6)
    assert np.linalg.norm(vec) == pytest.approx(1.0, abs=1e-5)


@pytest.mark.parametrize(
    ("fields", "match"),
    [
        ({"model": "text-embedding-ada-002", "dimensions": 256}, "only text-embedding-3"),
        ({"model": "text-embedding-3-small", "dimensions": 4096}, "at most 1536"),
        ({"model": "my-own-model", "base_url": "http://127.0.0.1:1/v1"}, "set embedder.output_dimension"),
        ({"model": "text-embedding-3-large", "output_dimension": 1024}, "returns 3072-dimensional"),
    ],
)
def test_dimension_config_errors(fields: dict[str, Any], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        OpenAIEmbedder(OpenAIEmbedderConfig(kind="openai", **fields))


def test_dimension_of_models_webvec_does_not_know() -> None:
    cfg = OpenAIEmbedderConfig(
        kind="openai", model="my-own-model", base_url="http://127.0.0.1:1/v1", output_dimension=384
    )
    embedder = OpenAIEmbedder(cfg)
    assert embedder.dimension == 384
    assert embedder.estimate_cost(1_000_000) == 0.0
    assert (
        OpenAIEmbedder(OpenAIEmbedderConfig(kind="openai", model="text-embedding-3-large")).dimension == 3072
    )


# -- vectors and cost ------------------------------------------------------------------------------


@pytest.mark.server
def test_vectors_are_deterministic_and_meaningful(make: Make) -> None:
    embedder = make()
    texts = [
        "How to install the Python package with pip",
        "Installing the python package using pip install",
        "Chocolate cake recipe with butter and sugar",
    ]
    a = embedder.embed(texts)
    b = embedder.embed(texts)
    np.testing.assert_array_equal(a, b)
    assert cos(a[0], a[1]) > cos(a[0], a[2]) + 0.2


@pytest.mark.server
def test_cost_estimate(make: Make) -> None:
    assert make().estimate_cost(1_000_000) == pytest.approx(0.02)
    assert make(model="text-embedding-3-large").estimate_cost(2_000_000) == pytest.approx(0.26)
    assert pricing.estimate_cost("text-embedding-ada-002", 500_000) == pytest.approx(0.05)
    assert pricing.estimate_cost("unknown-model", 10**9) == 0.0
    assert pricing.PRICES_AS_OF


@pytest.mark.server
def test_usage_is_tracked(make: Make, server: OpenAIServer) -> None:
    embedder = make(max_batch_inputs=2)
    server.inject(Fault.server_error(500))
    embedder.embed(texts_of(5))
    assert embedder.requests_made == 4 and embedder.retries == 1
    assert embedder.tokens_used == server.tokens == sum(embedder.count_tokens(t) for t in texts_of(5))


# -- the stand-in server keeps OpenAI's documented limits -------------------------------------------


@pytest.fixture
def client(server: OpenAIServer) -> Any:
    return openai.OpenAI(base_url=server.base_url, api_key=KEY, max_retries=0)


@pytest.mark.server
@pytest.mark.parametrize(
    ("params", "status", "code"),
    [
        ({"input": ["x"] * 2049}, 400, "array_above_max_length"),
        ({"input": ["word " * 8000] * 38}, 400, "max_tokens_per_request"),
        ({"input": ["word " * 8200]}, 400, "context_length_exceeded"),
        ({"input": ["ok", ""]}, 400, None),
        ({"input": "hi", "model": "text-embedding-ada-002", "dimensions": 8}, 400, None),
        ({"input": "hi", "dimensions": 1537}, 400, "invalid_value"),
        ({"input": "hi", "model": "gpt-nope"}, 404, "model_not_found"),
    ],
    ids=["inputs", "request-tokens", "input-tokens", "empty", "ada-dimensions", "too-many-dims", "model"],
)
def test_server_enforces_openai_limits(
    client: Any, params: dict[str, Any], status: int, code: str | None
) -> None:
    params = {"model": "text-embedding-3-small", **params}
    with pytest.raises(openai.APIStatusError) as info:
        client.embeddings.create(**params)
    assert info.value.status_code == status
    assert info.value.code == code
    assert isinstance(info.value.body, dict) and info.value.body["message"]


@pytest.mark.server
def test_server_speaks_the_documented_shapes(client: Any, server: OpenAIServer) -> None:
    one = client.embeddings.create(model="text-embedding-3-small", input="hello", encoding_format="float")
    assert one.object == "list" and one.data[0].object == "embedding" and one.data[0].index == 0
    assert len(one.data[0].embedding) == 1536 and one.usage.prompt_tokens == one.usage.total_tokens == 1
    tokens = client.embeddings.create(model="text-embedding-3-small", input=[[15339, 1917]])
    np.testing.assert_allclose(tokens.data[0].embedding, server.vector("hello world"), rtol=1e-6)
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=server.base_url, api_key="wrong", max_retries=0).embeddings.create(
            model="text-embedding-3-small", input="hi"
        )
