"""A fast start for local models: the same network exported once to ONNX, run with onnxruntime.

Importing sentence-transformers costs about 9 s of CPU here (it pulls in scikit-learn, and
transformers pulls in much more), which made every ``webvec query`` slow. So the first time a
process loads a local model to embed (a run), it also exports the model's transformer to
``$WEBVEC_HOME/models/<fingerprint>/model.onnx`` (torch's own exporter) and checks that onnxruntime
gives the same vectors as sentence-transformers on probe texts (max difference below
:data:`MAX_DIFFERENCE`; measured: 1.2e-7 for all-MiniLM-L6-v2). Later processes embed with
onnxruntime and the model's ``tokenizer.json``, which load in a fraction of a second; the vectors
are the same, so the model key, the embedding cache and the stored vectors do not change. On the
CPU the export also embeds faster than torch, so it serves every call once it exists (see
``LocalEmbedder.embed``).

Only plain models are exported — a Transformer module, a Pooling module (mean, CLS or max) and an
optional Normalize — from a local folder; anything else always uses sentence-transformers. An
export that fails or disagrees is not kept (and is not retried by that process).
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ingest.config import webvec_home

# Largest element-wise difference from sentence-transformers an export may show on the probe texts.
MAX_DIFFERENCE = 1e-4
# Smallest cosine similarity between an int8 vector and the fp32 one, on every probe text. Dynamic
# per-channel quantization of MiniLM's matrix products (signed weights) measured 0.987 at worst on
# 800 of the Python docs' chunks (0.995 on average), and 0.973 on the probes (the two-letter "ok"
# moves most; unsigned weights: 0.959); per-tensor weights fell to 0.87 on chunks, which this refuses.
MIN_INT8_COSINE = 0.95
# Bump when the export (inputs, opset, pooling, attention, quantization) changes: a new folder.
# 2: eager attention in the trace, int8 weights signed (see export and quantize).
EXPORT_VERSION = 2
# Texts per onnxruntime forward pass when the crawl does not set embedder.batch_size. On the CPU
# small passes are faster: MiniLM int8 on 800 of the Python docs' chunks, 2 cores, measured
# ~58 texts/s at 4, ~53 at 8 and ~46 at 32 (the activations of a small pass stay in cache).
CPU_BATCH = 4
_PROBES = [
    "Why does my sourdough collapse into a pancake?",
    "ok",
    "Ünïcödé, punctuation; numbers 1234 and [brackets] (parentheses) “quotes”.",
    " ".join(["A long passage that exceeds the model's window, so truncation is exercised too."] * 40),
]


def _read(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def plain_pipeline(folder: Path) -> dict[str, Any] | None:
    """The pooling mode, normalisation and window of a Transformer→Pooling(→Normalize) model, or None."""
    modules = _read(folder / "modules.json")
    if not isinstance(modules, list):
        return None
    kinds = [str(m.get("type", "")).rsplit(".", 1)[-1] for m in modules]
    if kinds not in (["Transformer", "Pooling"], ["Transformer", "Pooling", "Normalize"]):
        return None
    pooling = _read(folder / str(modules[1].get("path", "")) / "config.json") or {}
    modes = [m for m in ("cls_token", "mean_tokens", "max_tokens") if pooling.get(f"pooling_mode_{m}")]
    extra = [k for k, v in pooling.items() if k.startswith("pooling_mode_") and v and k[13:] not in modes]
    if len(modes) != 1 or extra or not (folder / "tokenizer.json").is_file():
        return None
    window = (_read(folder / "sentence_bert_config.json") or {}).get("max_seq_length")
    return {"pooling": modes[0], "normalize": kinds[-1] == "Normalize", "max_seq_length": window}


def export_dir(folder: Path) -> Path:
    """Where the export of the model in ``folder`` lives: a fingerprint of its files' names, sizes
    and times, so an edited model folder gets a new export."""
    digest = hashlib.sha256(f"v{EXPORT_VERSION}".encode())
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        stat = path.stat()
        digest.update(f"{path.relative_to(folder)}:{stat.st_size}:{stat.st_mtime_ns}".encode())
    return webvec_home() / "models" / digest.hexdigest()[:24]


class OnnxEncoder:
    """Embeds with an exported model: tokenizers + onnxruntime + the model's pooling."""

    def __init__(self, model_file: Path, folder: Path, pipeline: dict[str, Any], normalize: bool) -> None:
        import onnxruntime
        from tokenizers import Tokenizer

        options = onnxruntime.SessionOptions()
        options.log_severity_level = 3
        self.session = onnxruntime.InferenceSession(
            str(model_file), options, providers=["CPUExecutionProvider"]
        )
        self.inputs = [i.name for i in self.session.get_inputs()]
        self.tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
        self.tokenizer.no_padding()
        if pipeline["max_seq_length"]:
            self.tokenizer.enable_truncation(max_length=int(pipeline["max_seq_length"]))
        self.pooling = str(pipeline["pooling"])
        self.normalize = normalize or bool(pipeline["normalize"])

    def encode(self, texts: Sequence[str], batch_size: int = CPU_BATCH) -> np.ndarray:
        """Vectors of ``texts`` (float32), as sentence-transformers would give them."""
        out = []
        for start in range(0, len(texts), batch_size):
            encodings = self.tokenizer.encode_batch(list(texts[start : start + batch_size]))
            width = max(len(e.ids) for e in encodings)
            feed = {
                "input_ids": np.zeros((len(encodings), width), dtype=np.int64),
                "attention_mask": np.zeros((len(encodings), width), dtype=np.int64),
                "token_type_ids": np.zeros((len(encodings), width), dtype=np.int64),
            }
            for row, e in enumerate(encodings):
                feed["input_ids"][row, : len(e.ids)] = e.ids
                feed["attention_mask"][row, : len(e.ids)] = 1
                feed["token_type_ids"][row, : len(e.ids)] = e.type_ids
            hidden = self.session.run(None, {k: feed[k] for k in self.inputs})[0]
            mask = feed["attention_mask"][..., None].astype(np.float32)
            if self.pooling == "cls_token":
                pooled = hidden[:, 0]
            elif self.pooling == "max_tokens":
                pooled = np.where(mask > 0, hidden, -1e9).max(axis=1)
            else:
                pooled = (hidden * mask).sum(axis=1) / np.clip(mask.sum(axis=1), 1e-9, None)
            if self.normalize:
                pooled = pooled / np.clip(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12, None)
            out.append(pooled.astype(np.float32))
        return np.concatenate(out)


def load(folder: Path | None, normalize: bool) -> OnnxEncoder | None:
    """The exported model of ``folder``, if an export was made and checked; else None."""
    if folder is None or os.environ.get("WEBVEC_NO_ONNX"):
        return None
    pipeline = plain_pipeline(folder)
    if pipeline is None:
        return None
    model_file = export_dir(folder) / "model.onnx"
    if not model_file.is_file():
        return None
    try:
        return OnnxEncoder(model_file, folder, pipeline, normalize)
    except Exception:  # a broken export or a missing onnxruntime: sentence-transformers it is
        return None


def export(model: Any, folder: Path | None, normalize: bool) -> bool:
    """Export a loaded SentenceTransformer's network and keep it if it gives the same vectors;
    returns whether an export is now in place. Never raises: the export is only a speed-up."""
    if folder is None or os.environ.get("WEBVEC_NO_ONNX"):
        return False
    pipeline = plain_pipeline(folder)
    if pipeline is None:
        return False
    dest = export_dir(folder)
    if (dest / "model.onnx").is_file():
        return True
    dest.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=dest, prefix=".model.", suffix=".onnx")
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        import torch

        transformer = model[0].auto_model.eval()
        names = ["input_ids", "attention_mask", "token_type_ids"]
        if "token_type_ids" not in model[0].tokenizer.model_input_names:
            names = names[:2]

        class _Hidden(torch.nn.Module):  # positional inputs, one output: the token states
            def __init__(self, inner: Any) -> None:
                super().__init__()
                self.inner = inner

            def forward(self, *inputs: Any) -> Any:
                return self.inner(**dict(zip(names, inputs, strict=True))).last_hidden_state

        sample = model[0].tokenizer(_PROBES[:2], return_tensors="pt", padding=True)
        axes = {n: {0: "batch", 1: "tokens"} for n in [*names, "hidden"]}
        # Traced with eager attention: torch's SDPA path exports its mask as an IsNaN and a Where
        # over every (batch, head, token, token) cell, 15% of int8's time; eager adds one broadcast
        # mask. Same vectors (the check below); the loaded model gets its own attention back.
        attention = getattr(transformer.config, "_attn_implementation", None)
        # None: nothing to switch (already eager, no attention setting, or a model without the setter).
        keep = attention in (None, "eager")
        switch = None if keep else getattr(transformer, "set_attn_implementation", None)
        # The tracer warns about Python control flow in transformers' masking code; the check below
        # (vectors equal on probe texts of other lengths) is what tells whether the trace is right.
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                if switch is not None:
                    switch("eager")
                torch.onnx.export(
                    _Hidden(transformer),
                    tuple(sample[n] for n in names),
                    str(tmp),
                    input_names=names,
                    output_names=["hidden"],
                    dynamic_axes=axes,
                    opset_version=17,
                    dynamo=False,
                )
            finally:
                if switch is not None:
                    switch(attention)
        expected = model.encode(_PROBES, normalize_embeddings=normalize, convert_to_numpy=True)
        got = OnnxEncoder(tmp, folder, pipeline, normalize).encode(_PROBES)
        difference = float(np.abs(np.asarray(expected, dtype=np.float32) - got).max())
        if difference > MAX_DIFFERENCE:
            return False
        os.replace(tmp, dest / "model.onnx")
        (dest / "export.json").write_text(json.dumps({"max_difference": difference, "source": str(folder)}))
        return True
    except Exception:
        return False
    finally:
        tmp.unlink(missing_ok=True)


def load_int8(folder: Path | None, normalize: bool) -> OnnxEncoder | None:
    """The int8 model of ``folder`` (see :func:`quantize`), if it was made and checked; else None."""
    pipeline = plain_pipeline(folder) if folder is not None else None
    if folder is None or pipeline is None or not (export_dir(folder) / "model.int8.onnx").is_file():
        return None
    try:
        return OnnxEncoder(export_dir(folder) / "model.int8.onnx", folder, pipeline, normalize)
    except Exception:
        return None


def quantize(folder: Path | None, normalize: bool) -> bool:
    """Make ``model.int8.onnx`` beside the fp32 export (which must exist): dynamic quantization of the
    weights of every matrix product to 8 bits, per output channel (ONNX Runtime's ``quantize_dynamic``;
    activations are quantized on the fly). Kept only if every probe vector stays within
    :data:`MIN_INT8_COSINE` of the fp32 one; returns whether an int8 model is now in place.

    Weights are signed (QInt8), activations unsigned: the u8·s8 product is the one x86's VNNI and
    AVX2 instructions compute; unsigned weights (u8·u8) take a slower path. Measured on the Python
    docs' chunks, 2 cores, 32 a pass: ~1.4x the texts/s of unsigned weights (34 to 43-51), the
    same closeness to fp32 (cosine 0.987 at worst, 0.995 on average)."""
    pipeline = plain_pipeline(folder) if folder is not None else None
    if folder is None or pipeline is None:
        return False
    dest = export_dir(folder)
    if (dest / "model.int8.onnx").is_file():
        return True
    if not (dest / "model.onnx").is_file():
        return False
    fd, tmp_name = tempfile.mkstemp(dir=dest, prefix=".model.int8.", suffix=".onnx")
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        import logging

        from onnxruntime.quantization import QuantType, quantize_dynamic

        root = logging.getLogger()
        level = root.level
        root.setLevel(logging.ERROR)  # its root-logger advice to "run pre-processing" is for images
        try:
            quantize_dynamic(
                str(dest / "model.onnx"),
                str(tmp),
                per_channel=True,
                weight_type=QuantType.QInt8,
                op_types_to_quantize=["MatMul"],
            )
        finally:
            root.setLevel(level)
        full = OnnxEncoder(dest / "model.onnx", folder, pipeline, True).encode(_PROBES)
        small = OnnxEncoder(tmp, folder, pipeline, True).encode(_PROBES)
        worst = float((full * small).sum(axis=1).min())
        if worst < MIN_INT8_COSINE:
            return False
        os.replace(tmp, dest / "model.int8.onnx")
        (dest / "int8.json").write_text(json.dumps({"min_cosine_to_fp32": worst, "source": str(folder)}))
        return True
    except Exception:
        return False
    finally:
        tmp.unlink(missing_ok=True)
