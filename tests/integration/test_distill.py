"""`webvec distill` and the model2vec static embedder: a model distilled offline from the packaged MiniLM,
used by a crawl, and the bad inputs around it (one line each)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from pydantic import ValidationError
from typer.testing import CliRunner

from flows.cli import app
from ingest.config import StaticEmbedderConfig
from ingest.embedders import make_embedder
from ingest.embedders.model2vec import Model2VecEmbedder
from ingest.errors import ConfigError

runner = CliRunner(env={"COLUMNS": "200"})
pytestmark = pytest.mark.model


def test_the_distilled_model_embeds_texts_of_a_crawl(distilled_model: Path, tmp_path: Path) -> None:
    embedder = make_embedder(
        StaticEmbedderConfig(kind="static", vectors="model2vec", path=str(distilled_model))
    )
    assert isinstance(embedder, Model2VecEmbedder) and embedder.dimension == 64
    vectors = embedder.embed(["How long should dough rise?", "Proofing times of bread dough", "xqzv"])
    assert vectors.shape == (3, 64)
    assert float(vectors[0] @ vectors[1]) > 0.5
    assert embedder.count_tokens("Proofing times of bread dough") >= 5

    # The model_key follows the files: a copy is the same model, an altered copy another one.
    copy = tmp_path / "copy"
    shutil.copytree(distilled_model, copy)
    same = make_embedder(StaticEmbedderConfig(kind="static", vectors="model2vec", path=str(copy)))
    assert same.model_key == embedder.model_key
    (copy / "config.json").write_text((copy / "config.json").read_text().replace("}", ', "x": 1}', 1))
    other = make_embedder(StaticEmbedderConfig(kind="static", vectors="model2vec", path=str(copy)))
    assert other.model_key != embedder.model_key
    assert embedder.model_key != make_embedder(StaticEmbedderConfig(kind="static")).model_key


def test_a_crawl_runs_on_the_distilled_model(distilled_model: Path, tmp_path: Path, serve_dir) -> None:  # type: ignore[no-untyped-def]
    from tests.conftest import SAMPLE_SITE

    site = serve_dir(SAMPLE_SITE)
    crawl = tmp_path / "m2v.yaml"
    crawl.write_text(
        "name: m2v\n"
        f"source: {{start_urls: ['{site.url}'], allow_private_networks: true, max_pages: 8}}\n"
        f"embedder: {{kind: static, vectors: model2vec, path: {distilled_model}}}\n"
    )
    result = runner.invoke(app, ["run", str(crawl), "--json"])
    assert result.exit_code == 0, result.output
    found = runner.invoke(app, ["query", str(crawl), "sourdough starter", "-k", "3", "--json"])
    assert found.exit_code == 0, found.output
    assert '"url"' in found.output


def test_bad_input_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="vectors model2vec needs path"):
        StaticEmbedderConfig(kind="static", vectors="model2vec")
    with pytest.raises(ValidationError, match="path is for vectors model2vec"):
        StaticEmbedderConfig(kind="static", path="x")
    missing = make_embedder(StaticEmbedderConfig(kind="static", vectors="model2vec", path=str(tmp_path)))
    with pytest.raises(ConfigError, match=r"is not a model2vec model .*webvec distill"):
        missing.check()
    (tmp_path / "taken").mkdir()
    result = runner.invoke(app, ["distill", "--out", str(tmp_path / "taken")])
    assert (
        result.exit_code == 2 and "exists" in result.output and len(result.output.strip().splitlines()) == 1
    )
    result = runner.invoke(app, ["distill", "--dimensions", "4"])
    assert result.exit_code == 2
