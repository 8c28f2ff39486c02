"""Embedders compared on the same chunks: chunks/s of each, as a run's embed stage calls them.

The chunks are the sample site's (``--site``), cut as a run cuts them (256 tokens, 32 overlap),
repeated to ``--texts`` so that one call is large enough for the local model to use torch. Each
embedder is warmed up first (model loaded, int8 model made), then timed over ``--repeats`` calls.

    make bench BENCH_ARGS="--embedders local,int8,static"
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path
from typing import Any

SETTINGS: dict[str, dict[str, Any]] = {
    "local": {"kind": "local"},
    "int8": {"kind": "local", "precision": "int8"},
    "static": {"kind": "static"},
    "fake": {"kind": "fake"},
}


def _chunks(site: Path, count_tokens: Any) -> list[str]:
    from ingest.chunking import chunk_markdown
    from ingest.extract import Document, extract

    texts: list[str] = []
    for path in sorted(site.rglob("*.html")):
        doc = extract(path.read_bytes(), f"http://site.test/{path.relative_to(site)}")
        if isinstance(doc, Document):
            texts += [c.text for c in chunk_markdown(doc.markdown, doc.doc_id, count_tokens, 256, 32)]
    return texts


def run(args: Any) -> list[dict[str, Any]]:
    """Every embedder asked for (comma-separated ``args.embedders``); the table's rows."""
    from pydantic import TypeAdapter

    from ingest.config import EmbedderConfig
    from ingest.embedders import make_embedder

    names = [n.strip() for n in args.embedders.split(",") if n.strip()]
    unknown = [n for n in names if n not in SETTINGS]
    if unknown:
        raise SystemExit(f"--embedders: unknown {', '.join(unknown)} (known: {', '.join(SETTINGS)})")
    reference = make_embedder(TypeAdapter(EmbedderConfig).validate_python(SETTINGS["local"]))
    texts = _chunks(Path(args.site), reference.count_tokens)
    texts = (texts * (args.texts // max(1, len(texts)) + 1))[: args.texts]
    rows = []
    for name in names:
        embedder = make_embedder(TypeAdapter(EmbedderConfig).validate_python(SETTINGS[name]))
        embedder.embed(texts[:300])  # warm-up: model loaded, exports made
        seconds = []
        for _ in range(args.repeats):
            started = time.perf_counter()
            embedder.embed(texts)
            seconds.append(time.perf_counter() - started)
        row = {
            "embedder": name,
            "texts": len(texts),
            "chunks_per_s": round(len(texts) / statistics.median(seconds), 1),
        }
        print(f"embedder: {row}", flush=True)
        rows.append(row)
    base = next((r["chunks_per_s"] for r in rows if r["embedder"] == "local"), None)
    print("\n| embedder | chunks/s | × local fp32 |\n|---|---|---|")
    for r in rows:
        ratio = f"{r['chunks_per_s'] / base:.1f}" if base else "—"
        print(f"| {r['embedder']} | {r['chunks_per_s']:,} | {ratio} |")
    return rows
