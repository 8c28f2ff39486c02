"""What OpenAI's embedding models cost and what they are: prices, native dimensions, input limits.

Prices are USD per 1M input tokens, standard (non-batch) tier, as listed on https://openai.com/api/pricing/
(and each model's page on https://platform.openai.com/docs/models). They were written down on
``PRICES_AS_OF``; prices change, so estimates are estimates. The model facts come from
https://platform.openai.com/docs/guides/embeddings.
"""

from __future__ import annotations

from dataclasses import dataclass

# Date the prices below were taken. The machine that wrote them had no internet: the figures were
# given in the task brief (from OpenAI's pricing page) and should be re-checked against the page.
PRICES_AS_OF = "2026-11-22"

PRICES_USD_PER_1M_TOKENS: dict[str, float] = {
    "text-embedding-3-small": 0.02,
    "text-embedding-3-large": 0.13,
    "text-embedding-ada-002": 0.10,
}

# OpenAI's embeddings guide: "max input 8191 tokens" for all three models. The API reference says
# 8192; the smaller figure is the safe one.
OPENAI_MAX_INPUT_TOKENS = 8191


@dataclass(frozen=True)
class ModelInfo:
    """Facts about one embedding model OpenAI lists."""

    dimension: int  # native vector size
    max_input_tokens: int
    supports_dimensions: bool  # accepts the `dimensions` request parameter (text-embedding-3-* only)
    tokenizer: str = "cl100k_base"


KNOWN_MODELS: dict[str, ModelInfo] = {
    "text-embedding-3-small": ModelInfo(1536, OPENAI_MAX_INPUT_TOKENS, True),
    "text-embedding-3-large": ModelInfo(3072, OPENAI_MAX_INPUT_TOKENS, True),
    "text-embedding-ada-002": ModelInfo(1536, OPENAI_MAX_INPUT_TOKENS, False),
}


def model_info(model: str) -> ModelInfo | None:
    """Facts about ``model``, or None when OpenAI does not list it (e.g. a model of another server)."""
    return KNOWN_MODELS.get(model)


def price_per_million(model: str) -> float | None:
    """USD per 1M input tokens for ``model``, or None when unknown."""
    return PRICES_USD_PER_1M_TOKENS.get(model)


def estimate_cost(model: str, tokens: int) -> float:
    """Estimated USD to embed ``tokens`` tokens with ``model``; 0.0 for a model without a known price."""
    price = PRICES_USD_PER_1M_TOKENS.get(model)
    if price is None or tokens <= 0:
        return 0.0
    return tokens * price / 1_000_000
