"""A model2vec static model: ``embedder: {kind: static, vectors: model2vec, path: FOLDER}``.

model2vec (Minish Lab) distils a sentence-transformers model into one vector per token of its
vocabulary: the model reads each token alone once, the vectors are reduced by PCA and weighted by SIF,
and embedding a text is then the mean of its tokens' vectors — no network runs, so it is hundreds of
times faster than the model it came from, at some cost in recall. ``webvec distill`` makes such a
folder from the packaged MiniLM, offline (:func:`distill_model`).

The model_key holds the hash of the folder's files: a model distilled again (another size, another
base model) is another model, and builds a new version.
"""

from __future__ import annotations

import hashlib
import importlib.util
import math
import shutil
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from ingest.config import StaticEmbedderConfig, under_home
from ingest.embedders.base import Vectors, validate_vectors
from ingest.errors import ConfigError, MissingExtraError, PermanentError
from ingest.ids import model_key

Progress = Callable[[int], None]
# What a folder must hold to be loaded (what StaticModel.save_pretrained writes).
MODEL_FILES = ("model.safetensors", "tokenizer.json", "config.json")


def _folder_hash(folder: Path) -> str:
    digest = hashlib.sha256()
    for name in MODEL_FILES:
        digest.update(name.encode())
        digest.update((folder / name).read_bytes())
    return digest.hexdigest()[:32]


class Model2VecEmbedder:
    """Mean of the tokens' static vectors, from a model2vec folder (see the module docstring)."""

    _models: ClassVar[dict[str, Any]] = {}  # one loaded model per folder per process
    _lock: ClassVar[threading.Lock] = threading.Lock()

    def __init__(self, cfg: StaticEmbedderConfig) -> None:
        self.cfg = cfg
        self.folder = under_home(str(cfg.path))
        self.tokens_used = 0
        self._key: str | None = None
        self._tokenizer: Any = None

    def check(self) -> None:
        """The model2vec package and the folder's files must be there."""
        if importlib.util.find_spec("model2vec") is None:
            raise MissingExtraError("distill", "model2vec")
        missing = [n for n in MODEL_FILES if not (self.folder / n).is_file()]
        if missing:
            raise ConfigError(
                f"embedder.path: {self.folder} is not a model2vec model (no {', '.join(missing)}): make one "
                "with `webvec distill`"
            )

    @property
    def model(self) -> Any:
        """The loaded StaticModel (once per folder per process)."""
        key = str(self.folder)
        with self._lock:
            if key not in self._models:
                self.check()
                from model2vec import StaticModel

                self._models[key] = StaticModel.from_pretrained(self.folder, force_download=False)
            return self._models[key]

    @property
    def model_key(self) -> str:
        """Changes with the folder's files (vocabulary, vectors, settings)."""
        if self._key is None:
            self.check()
            self._key = model_key(
                {"kind": "static", "vectors": "model2vec", "files": _folder_hash(self.folder)}
            )
        return self._key

    @property
    def dimension(self) -> int:
        """The distilled vectors' size."""
        return int(self.model.dim)

    @property
    def max_input_tokens(self) -> int:
        """Longest input, in the model's tokens: ``embedder.max_input_tokens``."""
        return self.cfg.max_input_tokens

    def count_tokens(self, text: str) -> int:
        """The model's tokens for ``text``, without special tokens."""
        if self._tokenizer is None:
            from tokenizers import Tokenizer

            self._tokenizer = Tokenizer.from_file(str(self.folder / "tokenizer.json"))
        return len(self._tokenizer.encode(text, add_special_tokens=False).ids)

    def estimate_cost(self, tokens: int) -> float:
        """Static vectors cost nothing."""
        return 0.0

    def embed(self, texts: Sequence[str], progress: Progress | None = None) -> Vectors:
        """Unit vectors for ``texts`` in input order; PermanentError, before embedding anything, for an
        input over ``max_input_tokens``. ``progress`` is called per batch with its size."""
        counts = [self.count_tokens(t) for t in texts]
        for i, n in enumerate(counts):
            if n > self.max_input_tokens:
                raise PermanentError(
                    f"static embedder: input {i} has {n} tokens, more than the {self.max_input_tokens} it "
                    "reads (chunk.max_tokens / embedder.max_input_tokens)"
                )
        out = np.zeros((len(texts), self.dimension), dtype=np.float32)
        step = self.cfg.batch_size
        for start in range(0, len(texts), step):
            batch = list(texts[start : start + step])
            # One process: the run already uses the other cores for extraction.
            out[start : start + len(batch)] = self.model.encode(
                batch, normalize=True, use_multiprocessing=False, max_length=None
            )
            if progress is not None:
                progress(len(batch))
        # A text of no known token has no direction: a fixed unit vector, as the GloVe embedder gives.
        empty = ~out.any(axis=1)
        out[empty] = 1.0 / math.sqrt(self.dimension)
        self.tokens_used += sum(counts)
        return validate_vectors(out, len(texts), self.dimension)


def distill_model(base: str, dimensions: int, out: Path) -> Path:
    """Distil the sentence-transformers model ``base`` (a name the local embedder knows, or a folder)
    into a model2vec model of ``dimensions`` dimensions in ``out``; offline. Returns ``out``."""
    if importlib.util.find_spec("model2vec") is None or importlib.util.find_spec("skeletoken") is None:
        raise MissingExtraError("distill", "model2vec skeletoken")
    from model2vec.distill import distill

    from ingest.embedders.local import resolve_model_path

    if out.exists():
        raise ConfigError(f"{out} exists: name another folder, or remove it first")
    model = distill(model_name=resolve_model_path(base), pca_dims=dimensions)
    # Saved beside, then renamed: an interrupted distillation leaves no folder that looks complete.
    partial = out.with_name(f".{out.name}.partial")
    shutil.rmtree(partial, ignore_errors=True)
    out.parent.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(partial)
    partial.rename(out)
    return out


__all__ = ["MODEL_FILES", "Model2VecEmbedder", "distill_model"]
