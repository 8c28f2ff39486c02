"""`embedder.precision: int8` (issue 12): the local model's matrix products quantized offline, vectors
close to fp32's, another model_key."""

from __future__ import annotations

import numpy as np
import pytest

from ingest.config import LocalEmbedderConfig, parse_crawl
from ingest.embedders.local import LocalEmbedder
from ingest.errors import ConfigError

pytestmark = pytest.mark.model

TEXTS = [
    "How long should bread dough rise before baking?",
    "Proofing times for bread dough depend on temperature.",
    "The stock market closed higher on Tuesday.",
]


def test_int8_vectors_stay_close_to_fp32_and_keep_their_order(webvec_home) -> None:  # type: ignore[no-untyped-def]
    full = LocalEmbedder(LocalEmbedderConfig())
    small = LocalEmbedder(LocalEmbedderConfig(precision="int8"))
    assert small.model_key != full.model_key and small.dimension == full.dimension
    a, b = full.embed(TEXTS), small.embed(TEXTS)
    assert b.dtype == np.float32 and np.allclose(np.linalg.norm(b, axis=1), 1.0, atol=1e-5)
    assert float((a * b).sum(axis=1).min()) > 0.98
    assert float(b[0] @ b[1]) > float(b[0] @ b[2])  # related texts still closer
    # Made once per model and home; a new process loads it without torch.
    models = list((webvec_home / "models").glob("*/model.int8.onnx"))
    assert len(models) == 1
    again = LocalEmbedder(LocalEmbedderConfig(precision="int8"))
    np.testing.assert_allclose(again.embed(TEXTS), b, atol=1e-6)
    assert again._model is None  # served by onnxruntime alone
    # Signed weights (u8 activations x s8 weights, the product VNNI and AVX2 compute fast).
    import onnx

    graph = onnx.load(str(models[0])).graph
    weights = {t.name: t.data_type for t in graph.initializer}
    quantized = [n.input[1] for n in graph.node if n.op_type in ("MatMulInteger", "DynamicQuantizeMatMul")]
    assert quantized and all(weights[w] == onnx.TensorProto.INT8 for w in quantized if w in weights)


def test_fp32_model_key_is_unchanged_by_the_precision_setting() -> None:
    assert (
        LocalEmbedder(LocalEmbedderConfig()).model_key
        == LocalEmbedder(LocalEmbedderConfig(precision="fp32")).model_key
    )


def test_int8_is_cpu_only() -> None:
    with pytest.raises(ConfigError, match="precision int8 runs on the CPU"):
        parse_crawl(
            {
                "name": "x",
                "source": {"start_urls": ["https://example.org/"]},
                "embedder": {"kind": "local", "precision": "int8", "device": "cuda"},
            }
        )
