"""The local embedder starts fast: key, dimension, limit and token counts without loading the model;
an ONNX export gives the same vectors as sentence-transformers without importing it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from ingest.config import LocalEmbedderConfig
from ingest.embedders import onnx
from ingest.embedders.local import LocalEmbedder

TEXTS = [
    "How do I know when my shaped loaf has finished rising?",
    "Ünïcödé text, with [CLS] written literally, “quotes” and numbers 3.14159.",
    "short",
    " ".join(["A paragraph long enough to need many word pieces, so counts are not trivial."] * 12),
]


def test_key_dimension_limit_and_counts_need_no_model(local_embedder: LocalEmbedder) -> None:
    fresh = LocalEmbedder(LocalEmbedderConfig())
    assert fresh.dimension == local_embedder.model.get_embedding_dimension() == 384
    assert fresh.max_input_tokens == local_embedder.model.max_seq_length == 256
    assert fresh.model_key == local_embedder.model_key
    tokenizer = local_embedder.model.tokenizer
    for text in TEXTS:
        expected = len(tokenizer(text, add_special_tokens=True, truncation=False)["input_ids"])
        assert fresh.count_tokens(text) == expected
    assert fresh._model is None  # nothing above loaded torch or the weights
    code = (
        "import sys\nfrom ingest.config import LocalEmbedderConfig\n"
        "from ingest.embedders.local import LocalEmbedder\n"
        "e = LocalEmbedder(LocalEmbedderConfig()); e.check(); e.model_key; e.count_tokens('hi there')\n"
        "print(sorted(m for m in ('torch', 'sentence_transformers', 'transformers') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


@pytest.mark.slow
def test_onnx_export_gives_the_same_vectors(local_embedder: LocalEmbedder, webvec_home: Path) -> None:
    folder = local_embedder.folder
    assert onnx.export(local_embedder.model, folder, normalize=True)
    assert (onnx.export_dir(folder) / "model.onnx").is_file()  # type: ignore[arg-type]
    expected = local_embedder.model.encode(TEXTS, normalize_embeddings=True, convert_to_numpy=True)
    fresh = LocalEmbedder(LocalEmbedderConfig(device="cpu"))
    got = fresh.embed(TEXTS)
    assert fresh._model is None and fresh._onnx is not None  # onnxruntime did it
    assert np.abs(got - expected).max() < 1e-5
    cos = (got * expected).sum(axis=1)
    assert (cos > 0.99999).all()


def test_no_export_for_a_folder_that_is_not_a_plain_model(tmp_path: Path) -> None:
    (tmp_path / "modules.json").write_text(
        '[{"type": "sentence_transformers.models.Transformer", "path": ""}]'
    )
    assert onnx.plain_pipeline(tmp_path) is None
    assert onnx.load(tmp_path, normalize=True) is None


@pytest.mark.slow
def test_a_large_call_keeps_the_input_order(local_embedder: LocalEmbedder) -> None:
    # Large calls are embedded longest first in slices (for progress and padding); rows come back in
    # the order of the input. On the CPU onnxruntime serves them (in passes of onnx.CPU_BATCH), with
    # torch's vectors.
    texts = [("word " * (1 + (i * 37) % 120)).strip() + f" {i}" for i in range(300)]
    steps: list[int] = []
    got = local_embedder.embed(texts, progress=steps.append)
    expected = local_embedder.model.encode(texts, normalize_embeddings=True, convert_to_numpy=True)
    assert np.abs(got - expected).max() < 1e-5
    assert sum(steps) == 300 and len(steps) > 1
    if local_embedder._on_cpu():
        assert local_embedder._onnx is not None


@pytest.mark.slow
def test_the_export_traces_eager_attention_and_gives_the_model_its_own_back(
    local_embedder: LocalEmbedder, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # SDPA attention exports its mask through IsNaN and a Where over every (batch, head, token,
    # token) cell in each layer; the eager trace adds a broadcast mask. The loaded model keeps the
    # attention it had (torch serves a GPU with it).
    monkeypatch.setenv("WEBVEC_HOME", str(tmp_path))
    import onnx as onnx_lib

    model = local_embedder.model
    config = model[0].auto_model.config
    before = config._attn_implementation
    assert onnx.export(model, local_embedder.folder, normalize=True)
    assert config._attn_implementation == before
    graph = onnx_lib.load(str(onnx.export_dir(local_embedder.folder) / "model.onnx")).graph  # type: ignore[arg-type]
    assert not [n for n in graph.node if n.op_type == "IsNaN"]


def test_forward_passes_follow_the_runtime_unless_the_crawl_sets_them() -> None:
    default = LocalEmbedder(LocalEmbedderConfig())
    assert default._batch_size(onnx=True) == onnx.CPU_BATCH == 4
    assert default._batch_size(onnx=False) == 32
    chosen = LocalEmbedder(LocalEmbedderConfig(batch_size=16))
    assert chosen._batch_size(onnx=True) == chosen._batch_size(onnx=False) == 16
