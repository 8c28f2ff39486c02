"""Retrieval quality: `webvec eval`'s metrics, contextual chunks, the lexical index, hybrid search.

Fast tier: the fake embedder and the memory store, pages fed straight into the batch stages.
"""

from __future__ import annotations

import json
import os
import re
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import sqlalchemy as sa
import yaml
from typer.testing import CliRunner

from flows.cli import app
from ingest.bookkeeping import Hooks
from ingest.config import load_crawl, parse_crawl
from ingest.context import DEFAULT_TEMPLATE, check_template, embedding_texts, render
from ingest.env import RunEnv, batch_keys, make_env
from ingest.errors import ConfigError
from ingest.evaluate import Question, evaluate, load_questions, matches, parse_questions
from ingest.model import PageStatus
from ingest.query import distinct_pages, fuse, rrf, search
from ingest.run import RunState, process_batch
from ingest.state import FetchedPage, StateDB
from ingest.summary import RunSummary
from ingest.versions import model_changed, rebuild_version
from tests.conftest import REPO

SITE = "http://docs.test"
runner = CliRunner(env={"COLUMNS": "200"})


# -- webvec eval: metrics --------------------------------------------------------------------------
def test_recall_and_mrr_arithmetic_with_globs_and_prefixes() -> None:
    questions = [
        Question("a", ("guides/proofing.html",)),  # rank 1
        Question("b", ("reference/*",)),  # rank 3 (glob)
        Question("c", ("http://docs.test/x/*.html",)),  # rank 6: beyond k=5, counted at k=10
        Question("d", ("nowhere.html",)),  # never
    ]
    results = {
        "a": [f"{SITE}/site/guides/proofing.html#top", f"{SITE}/other.html"],  # served under a prefix
        "b": [f"{SITE}/g1.html", f"{SITE}/g2.html", f"{SITE}/reference/flours.html"],
        "c": [f"{SITE}/{i}.html" for i in range(5)] + [f"{SITE}/x/faq.html"],
        "d": [f"{SITE}/proofing.html"],
    }
    asked: list[int] = []

    def search_fn(q: str, n: int) -> list[str]:
        asked.append(n)
        return results[q][:n]

    five = evaluate(questions, search_fn, k=5)
    assert (five.recall_at_1, five.recall_at_5, five.recall_at_k) == (0.25, 0.5, 0.5)
    assert five.mrr == round((1 + 1 / 3) / 4, 4)
    assert five.ranks == [1, 3, 0, 0]  # rank 6 is beyond the top 5 asked for
    assert [m["question"] for m in five.misses] == ["c", "d"]
    assert five.misses[1]["got"] == [f"{SITE}/proofing.html"] and five.misses[1]["expected"] == [
        "nowhere.html"
    ]
    ten = evaluate(questions, search_fn, k=10)
    assert (ten.recall_at_5, ten.recall_at_k) == (0.5, 0.75)
    assert ten.mrr == round((1 + 1 / 3 + 1 / 6) / 4, 4)
    one = evaluate(questions, search_fn, k=1)  # recall@5 is still measured: 5 results are asked for
    assert (one.recall_at_1, one.recall_at_5, one.recall_at_k) == (0.25, 0.5, 0.25)
    assert set(asked) == {5, 10}


def test_a_relative_path_matches_at_a_slash_only() -> None:
    q = Question("q", ("os.html",))
    assert matches(q, f"{SITE}/library/os.html") and matches(q, f"{SITE}/os.html")
    assert not matches(q, f"{SITE}/library/pos.html")
    assert matches(Question("q", ("library/os.*",)), f"{SITE}/library/os.path.html")


def test_question_files_in_every_format(tmp_path: Path) -> None:
    jsonl = '{"question": "How?", "urls": ["a.html", "b/*"]}\n\n{"question": "Why?", "expected": "c.html"}\n'
    assert parse_questions(jsonl, "q.jsonl") == [
        Question("How?", ("a.html", "b/*")),
        Question("Why?", ("c.html",)),
    ]
    tsv = "question\turls\nHow?\ta.html | b/*\nWhy?\tc.html\n"
    assert parse_questions(tsv, "q.tsv") == parse_questions(jsonl, "q.jsonl")
    assert parse_questions('How?,a.html,b/*\n"Why, then?",c.html\n', "q.csv")[1].text == "Why, then?"
    site = load_questions(REPO / "bench" / "site_questions.json")  # the sample site's: expected_path
    assert len(site) == 10 and site[0].urls == ("troubleshooting/flat-loaves.html",)
    docs = load_questions(REPO / "bench" / "python_docs_questions.jsonl")
    assert len(docs) >= 40 and all(q.urls for q in docs)


@pytest.mark.parametrize(
    ("text", "name", "message"),
    [
        ('{"question": "x", "urls": ["a"]}\nnot json\n', "q.jsonl", "q.jsonl:2: not JSON"),
        ('{"question": "x"}\n', "q.jsonl", "q.jsonl:1: no acceptable URLs"),
        ('{"urls": ["a"]}\n', "q.jsonl", "q.jsonl:1: no question"),
        ('{"question": "x"}', "q.json", "expected a JSON list"),
        ("question\turls\nHow?\t\n", "q.tsv", "q.tsv:2: no acceptable URLs"),
        ("", "q.jsonl", "no questions"),
        ("x", "q.txt", "unknown question file type .txt"),
    ],
)
def test_bad_question_files_say_where(text: str, name: str, message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        parse_questions(text, name)


# -- fusion and distinct passages ------------------------------------------------------------------
def test_reciprocal_rank_fusion_order() -> None:
    fused = rrf([["a", "b", "c"], ["c", "d", "a"]], k=60)
    # a: 1/61 + 1/63, c: 1/63 + 1/61 (a tie: a was seen first), b: 1/62, d: 1/62 (b seen first)
    assert [i for i, _ in fused] == ["a", "c", "b", "d"]
    assert fused[0][1] == pytest.approx(1 / 61 + 1 / 63)
    assert [i for i, _ in rrf([["x", "y"], ["y"]])] == ["y", "x"]  # in both lists beats first in one


def _hit(cid: str, url: str, **extra: Any) -> dict[str, Any]:
    return {"id": cid, "url": url, "title": "", "heading": "", "text": cid, "score": 0.0, **extra}


def test_fuse_keeps_the_dense_fields_and_distinct_pages_caps_each_page() -> None:
    dense = [_hit("p1#a", "p1", source="dense"), _hit("p1#b", "p1", source="dense"), _hit("p2#a", "p2")]
    lexical = [_hit("p1#b", "p1", source="lexical"), _hit("p3#a", "p3")]
    fused = fuse(dense, lexical)
    assert [h["id"] for h in fused] == ["p1#b", "p1#a", "p3#a", "p2#a"]
    assert fused[0]["source"] == "dense" and fused[0]["score"] == round(1 / 62 + 1 / 61, 6)
    assert [h["id"] for h in distinct_pages(fused, 5, 1)] == ["p1#b", "p3#a", "p2#a"]
    assert [h["id"] for h in distinct_pages(fused, 2, 2)] == ["p1#b", "p1#a"]


# -- contextual chunks -----------------------------------------------------------------------------
def test_template_rendering_and_checks() -> None:
    assert (
        render(DEFAULT_TEMPLATE, "Guide", "Proofing > Signs", "Poke it.")
        == "Guide\nProofing > Signs\n\nPoke it."
    )
    assert render(DEFAULT_TEMPLATE, "", "", "Poke it.") == "Poke it."  # no blank lines left behind
    assert render(DEFAULT_TEMPLATE, "Guide", "", "Poke it.") == "Guide\n\nPoke it."
    for bad, message in (
        ("{title}", "must contain {text}"),
        ("{url} {text}", "unknown field {url}"),
        ("{text", "not a valid"),
    ):
        with pytest.raises(ValueError, match=re.escape(message)):
            check_template(bad)
    with pytest.raises(ConfigError, match=r"chunk\.context_template"):
        parse_crawl({**_crawl_dict(), "chunk": {"context_template": "{title} only"}})


def test_a_long_context_is_shortened_to_its_budget() -> None:
    def words(text: str) -> int:
        return len(text.split())

    title = " ".join(f"t{i}" for i in range(40))
    path = ("Part one", "Part two", "Last part")
    texts = embedding_texts([("c1", title, path, "body text")], DEFAULT_TEMPLATE, words, budget=12)
    context = texts["c1"].removesuffix("body text")
    assert words(context) <= 12 and "Last part" in context and "Part one" not in context
    assert embedding_texts([("c1", title, path, "body")], None, words) == {"c1": "body"}


def _crawl_dict(**over: Any) -> dict[str, Any]:
    return {
        "name": "docs",
        "source": {"start_urls": [f"{SITE}/"]},
        "embedder": {"kind": "fake", "dimension": 256},
        "store": {"kind": "memory"},
        "extract": {"workers": 0},
        **over,
    }


def test_the_template_is_part_of_the_model_key_and_leaves_room_for_the_context() -> None:
    cfg = parse_crawl(_crawl_dict())
    env_embedder = make_env(cfg).embedder
    on = batch_keys(cfg, env_embedder)
    off = batch_keys(parse_crawl(_crawl_dict(chunk={"context_template": None})), env_embedder)
    other = batch_keys(
        parse_crawl(_crawl_dict(chunk={"context_template": "{heading}: {text}"})), env_embedder
    )
    assert off.model_key == env_embedder.model_key  # crawls that opt out keep their vectors
    assert len({on.model_key, off.model_key, other.model_key}) == 3
    assert on.chunk_key != off.chunk_key
    assert off.max_tokens == 256 and on.max_tokens == 256 - on.context_tokens and on.context_tokens > 0


# -- a crawl fed page by page ----------------------------------------------------------------------
def _page(title: str, sections: dict[str, str]) -> bytes:
    body = "".join(f"<h2>{h}</h2><p>{text}</p>" for h, text in sections.items())
    return (
        f"<html><head><title>{title}</title></head><body><article><h1>{title}</h1>{body}"
        "</article></body></html>"
    ).encode()


PAGES = {
    "proofing.html": _page(
        "Proofing",
        {
            "The poke test": "Press the dough gently with a floured finger; when the dent springs back "
            "slowly the loaf has finished rising and is ready for the oven. " * 6,
            "Temperature": "Warm dough proofs faster than cool dough, so watch the dough, not the clock. "
            * 8,
        },
    ),
    "storage.html": _page(
        "Storage",
        {
            "Refrigeration": "Keep bread out of the refrigerator: the cold makes the crumb stale "
            "faster than it would at room temperature. " * 2,
        },
    ),
    "flours.html": _page(
        "Flours",
        {
            "French types": "French flour bags carry a type number such as T55 or T65, which gives "
            "the ash content of the flour. " * 2,
        },
    ),
}


def _write_crawl(tmp_path: Path, **over: Any) -> Path:
    path = tmp_path / "docs.yaml"
    path.write_text(yaml.safe_dump(_crawl_dict(**over)))
    return path


def _ingest(env: RunEnv, pages: dict[str, bytes]) -> RunSummary:
    summary = RunSummary(crawl=env.cfg.name, kind="ingest", run_id="run-1")
    fetched = [
        FetchedPage(f"{SITE}/{name}", f"{SITE}/{name}", 200, content_type="text/html", body=body)
        for name, body in pages.items()
    ]
    process_batch(env, fetched, RunState.load(env), summary, Hooks())
    return summary


POSTGRES_URL = os.environ.get("WEBVEC_TEST_POSTGRES_URL")


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A fresh database on the PostgreSQL server of WEBVEC_TEST_POSTGRES_URL, dropped afterwards."""
    if not POSTGRES_URL:
        pytest.skip("WEBVEC_TEST_POSTGRES_URL is not set (.ci/run sets it)")
    name = f"webvec_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    yield sa.engine.make_url(POSTGRES_URL).set(database=name).render_as_string(hide_password=False)
    with admin.connect() as conn:
        conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    admin.dispose()


@pytest.fixture
def env(tmp_path: Path) -> Iterator[RunEnv]:
    cfg = load_crawl(_write_crawl(tmp_path))
    env = make_env(cfg)
    _ingest(env, PAGES)
    yield env
    env.db.close()


@pytest.fixture
def pg_env(tmp_path: Path, pg_url: str) -> Iterator[RunEnv]:
    cfg = load_crawl(_write_crawl(tmp_path, state={"url": pg_url}))
    env = make_env(cfg)
    _ingest(env, PAGES)
    yield env
    env.db.close()


def _lexical_urls(env: RunEnv, text: str) -> list[str]:
    return [h.url.rsplit("/", 1)[-1] for h in env.db.lexical_search("docs", text, 10)]


def _check_lexical_index(env: RunEnv) -> None:
    assert _lexical_urls(env, "refrigerator")[:1] == ["storage.html"]
    assert _lexical_urls(env, "Is it bad to keep bread in the fridge or refrigerator?")[0] == "storage.html"
    assert _lexical_urls(env, 'AND OR NOT "(*:') == []  # FTS syntax in a question is only text
    # A changed page: its old chunks no longer match, its new ones do.
    changed = {"storage.html": _page("Storage", {"Freezing": "Freeze sliced bread in a sealed bag. " * 3})}
    _ingest(env, changed)
    assert "storage.html" not in _lexical_urls(env, "refrigerator")
    assert _lexical_urls(env, "freeze sealed") == ["storage.html"]
    # A removed page: nothing of it matches.
    env.db.remove_pages("docs", env.store.target, [(f"{SITE}/storage.html", PageStatus.GONE, None)])
    assert _lexical_urls(env, "freeze sealed") == []
    # Chunks dropped (kept out of the store) do not match either.
    ids = [c["chunk_id"] for c in env.db.all_chunks("docs") if c["url"].endswith("flours.html")]
    env.db.drop_chunks("docs", env.store.target, ids)
    assert _lexical_urls(env, "T55 ash") == []
    assert _lexical_urls(env, "poke test dough")[0] == "proofing.html"


def test_the_lexical_index_follows_the_ledger_in_its_transactions(env: RunEnv) -> None:
    _check_lexical_index(env)


@pytest.mark.server
@pytest.mark.postgres
def test_the_postgres_full_text_index_follows_the_ledger_too(pg_env: RunEnv) -> None:
    _check_lexical_index(pg_env)
    hits = search(pg_env.cfg, "How do I know the dough has finished rising?", 3, mode="hybrid")
    assert hits[0]["url"].endswith("proofing.html")
    # A ledger from before the index: the column and its index are added, filled from the chunks.
    with pg_env.db.engine.begin() as conn:
        conn.exec_driver_sql("ALTER TABLE chunks DROP COLUMN tsv")
    reopened = StateDB.open_existing(pg_env.cfg.state_url())
    assert reopened is not None
    try:
        assert [h.url.rsplit("/", 1)[-1] for h in reopened.lexical_search("docs", "poke test", 5)] == [
            "proofing.html"
        ]
    finally:
        reopened.close()


def test_a_ledger_without_the_index_gets_it_filled_once(env: RunEnv) -> None:
    with env.db.engine.begin() as conn:
        for name in ("chunks_fts_insert", "chunks_fts_delete", "chunks_fts_update"):
            conn.exec_driver_sql(f"DROP TRIGGER {name}")
        conn.exec_driver_sql("DROP TABLE chunks_fts")
    reopened = StateDB.open_existing(env.cfg.state_url())
    assert reopened is not None
    try:
        assert [h.url.rsplit("/", 1)[-1] for h in reopened.lexical_search("docs", "T55", 5)] == [
            "flours.html"
        ]
        with reopened.engine.connect() as conn:
            n = conn.execute(sa.text("SELECT count(*) FROM chunks_fts")).scalar_one()
        assert n == len(reopened.all_chunks("docs", include_dropped=True))
    finally:
        reopened.close()


def test_search_modes_and_one_hit_per_page(env: RunEnv) -> None:
    cfg = env.cfg
    question = "How do I know the dough has finished rising?"
    for mode in ("dense", "lexical", "hybrid"):
        hits = search(cfg, question, 3, mode=mode)  # type: ignore[arg-type]
        assert hits[0]["url"].endswith("proofing.html"), mode
        assert len({h["url"] for h in hits}) == len(hits)  # distinct pages
        assert {"url", "title", "heading", "score", "text", "id"} <= set(hits[0])
    two = search(cfg, question, 3, mode="lexical", max_per_page=2)
    assert [h["url"].rsplit("/", 1)[-1] for h in two[:2]] == ["proofing.html", "proofing.html"]
    assert search(cfg, question, 5, mode="lexical", filter={"url": f"{SITE}/flours.html"}) == []
    with pytest.raises(ConfigError, match="mode"):
        search(cfg, question, mode="sparse")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="filter"):
        search(cfg, question, mode="hybrid", filter={"lang": "en"})
    assert search(cfg, question, filter={"lang": "en"}) == search(
        cfg, question, mode="dense", filter={"lang": "en"}
    )


def test_the_stored_text_stays_the_chunk_while_the_embedder_reads_its_context(env: RunEnv) -> None:
    chunk = next(c for c in env.db.all_chunks("docs") if "poke" in c["text"].lower())
    assert not chunk["text"].startswith("Proofing")
    hit = next(
        h for h in search(env.cfg, "poke", 5, mode="dense", max_per_page=5) if h["id"] == chunk["chunk_id"]
    )
    assert hit["text"] == chunk["text"] and hit["title"] == "Proofing"
    # The cache holds the vector of the text with its context, not of the bare chunk.
    bare = env.embedder.embed([chunk["text"]])[0]
    with_context = env.embedder.embed(
        [render(DEFAULT_TEMPLATE, "Proofing", chunk["heading_path"], chunk["text"])]
    )[0]
    cached = env.db.cached_vectors(env.keys.model_key, [chunk["text_hash"]])
    assert chunk["text_hash"] not in cached  # keyed by the embedded text's hash
    (vector,) = [v for v in env.store.query(with_context, 1)]
    assert vector.id == chunk["chunk_id"] and vector.score == pytest.approx(1.0, abs=1e-5)
    assert not np.allclose(bare, with_context)


def test_changing_the_template_re_embeds_through_a_new_version(env: RunEnv, tmp_path: Path) -> None:
    before = env.db.live_version("docs")
    assert before is not None and before["model_key"] == env.keys.model_key
    cfg = load_crawl(_write_crawl(tmp_path, chunk={"context_template": "{heading}: {text}"}))
    new_env = make_env(cfg, env.db)
    assert model_changed(new_env)
    summary = RunSummary(crawl="docs", kind="ingest")
    number = rebuild_version(new_env, summary)
    live = env.db.live_version("docs")
    assert live is not None and number == live["version"] == before["version"] + 1
    assert live["model_key"] == new_env.keys.model_key != before["model_key"]
    assert summary.texts_embedded > 0  # nothing of the old template's cache was reused
    assert not model_changed(make_env(cfg, env.db))
    hits = search(cfg, "T55 flour", 1, mode="hybrid")
    assert hits[0]["url"].endswith("flours.html")


# -- the CLI ---------------------------------------------------------------------------------------
def test_eval_cli_bad_input_is_one_line_and_exit_2(tmp_path: Path) -> None:
    crawl = _write_crawl(tmp_path)
    bad = tmp_path / "q.jsonl"
    bad.write_text("not json\n")
    for args, message in (
        ([str(crawl), str(tmp_path / "missing.jsonl")], "cannot read the question file"),
        ([str(crawl), str(bad)], "q.jsonl:1: not JSON"),
        ([str(crawl), str(bad), "--mode", "sparse"], "--mode: 'sparse' is not one of"),
    ):
        result = runner.invoke(app, ["eval", *args])
        assert result.exit_code == 2, result.output
        assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1
    result = runner.invoke(app, ["query", str(crawl), "bread", "--mode", "bm25"])
    assert result.exit_code == 2 and "--mode" in result.stderr


def test_eval_cli_reports_the_figures(env: RunEnv, tmp_path: Path) -> None:
    questions = tmp_path / "q.jsonl"
    questions.write_text(
        "\n".join(
            json.dumps(q)
            for q in (
                {"question": "Is the fridge bad for bread?", "urls": ["storage.html"]},
                {"question": "What does T65 on a flour bag mean?", "urls": ["flours.*"]},
                {"question": "Where is the bakery?", "urls": ["bakery.html"]},
            )
        )
    )
    crawl = tmp_path / "docs.yaml"
    result = runner.invoke(
        app, ["eval", str(crawl), str(questions), "--mode", "lexical", "--json", "-k", "2"]
    )
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["mode"] == "lexical" and data["questions"] == 3 and data["k"] == 2
    assert data["recall_at_1"] == pytest.approx(2 / 3, abs=1e-3)
    assert [m["question"] for m in data["misses"]] == ["Where is the bakery?"]
    table = runner.invoke(app, ["eval", str(crawl), str(questions)])
    assert (
        table.exit_code == 0 and "recall@5" in table.stdout and "miss: Where is the bakery?" in table.stdout
    )


def test_a_renamed_heading_rewrites_the_vectors_of_the_unchanged_chunks_under_it(env: RunEnv) -> None:
    def page(section: str) -> bytes:
        cold = "Cold air dries the crumb out and makes it stale. " * 20
        warm = "A bread box at room temperature keeps the crust crisp for a day. " * 20
        return (
            f"<html><head><title>Keeping</title></head><body><article><h1>Keeping</h1><h2>{section}</h2>"
            f"<h3>Cold</h3><p>{cold}</p><h3>Warm</h3><p>{warm}</p></article></body></html>"
        ).encode()

    def warm_chunk() -> dict[str, Any]:
        return next(dict(c) for c in env.db.all_chunks("docs") if "bread box" in c["text"])

    _ingest(env, {"keeping.html": page("Where to keep bread")})
    before = warm_chunk()
    summary = _ingest(env, {"keeping.html": page("Storing a loaf")})
    after = warm_chunk()
    assert after["chunk_id"] == before["chunk_id"] and "Storing a loaf" in after["heading_path"]
    assert "Storing" not in after["text"]  # the chunk's text did not change: its context did
    assert summary.vectors_written >= 1 and summary.texts_embedded >= 1
    text = render(DEFAULT_TEMPLATE, "Keeping", after["heading_path"], after["text"])
    (hit,) = env.store.query(env.embedder.embed([text])[0], 1)
    assert hit.id == after["chunk_id"] and hit.score == pytest.approx(1.0, abs=1e-5)
