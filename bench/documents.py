"""PDF throughput: documents/s and pages/s through the extraction pool, and end to end in a run.

Writes ``--docs`` PDFs of ``--pages`` pages each (~40 lines of prose a page, headings in a larger font,
generated with pypdf by tests/documents.py), then measures

- ``extract``: the extraction worker pool alone (:class:`ingest.extract_pool.Extractor`, one worker
  per CPU, the run's time and memory limits), on bytes already in memory;
- ``run``: ``webvec run`` of a site on 127.0.0.1 whose index links every PDF, with the fake embedder and
  the in-memory store, so that crawl + extraction + chunking dominate (embedding is the model's cost,
  measured by ``make bench``).

    .venv/bin/python -m bench.documents --docs 100 --pages 10
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import yaml

WORDS = [
    "dough",
    "flour",
    "water",
    "salt",
    "starter",
    "oven",
    "crust",
    "crumb",
    "proof",
    "knead",
    "shape",
    "score",
    "bake",
    "cool",
    "rest",
    "rise",
    "fold",
    "levain",
    "rye",
    "spelt",
    "wheat",
    "hydration",
    "gluten",
    "steam",
    "banneton",
    "lame",
    "tin",
    "loaf",
    "batch",
    "temperature",
    "hour",
    "minute",
]


def _pdf(n: int, pages: int) -> bytes:
    """A distinct PDF (random words per document: near-duplicate detection must not merge them)."""
    import random

    from tests.documents import make_pdf

    rng = random.Random(n)

    def line() -> str:
        return " ".join(rng.choice(WORDS) for _ in range(14)).capitalize() + "."

    return make_pdf(
        [
            [(16, f"Chapter {p + 1} of document {n}"), *((11, line()) for _ in range(38))]
            for p in range(pages)
        ],
        title=f"Doc {n}",
    )


def main() -> int:
    """Generate, measure, print one JSON object."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--docs", type=int, default=100, help="PDFs to generate")
    parser.add_argument("--pages", type=int, default=10, help="pages per PDF")
    args = parser.parse_args()

    from bench.serve import StaticServer
    from ingest.extract_pool import Extractor
    from ingest.run import run_ingest
    from spiders.process import crawl_source_for

    pdfs = [_pdf(i, args.pages) for i in range(args.docs)]
    results: dict[str, object] = {
        "docs": args.docs,
        "pages_per_doc": args.pages,
        "bytes_per_doc": len(pdfs[0]),
    }
    with Extractor() as pool:
        pool.extract_many([("http://warm.test/0.pdf", pdfs[0])], ["application/pdf"])  # start the workers
        started = time.perf_counter()
        out = pool.extract_many(
            [(f"http://bench.test/{i}.pdf", data) for i, data in enumerate(pdfs)],
            ["application/pdf"] * len(pdfs),
        )
        seconds = time.perf_counter() - started
        results["extract"] = {
            "workers": pool.workers,
            "seconds": round(seconds, 2),
            "docs_per_s": round(len(pdfs) / seconds, 1),
            "pages_per_s": round(len(pdfs) * args.pages / seconds, 1),
            "failed": sum(1 for r in out if not hasattr(r, "markdown")),
        }
    with tempfile.TemporaryDirectory(prefix="webvec-docbench-") as tmp:
        site = Path(tmp) / "site"
        site.mkdir()
        links = "".join(f'<li><a href="{i}.pdf">Document {i}</a></li>' for i in range(len(pdfs)))
        (site / "index.html").write_text(f"<html><body><h1>PDFs</h1><ul>{links}</ul></body></html>")
        for i, data in enumerate(pdfs):
            (site / f"{i}.pdf").write_bytes(data)
        server = StaticServer(site).start()
        crawl = Path(tmp) / "docbench.yaml"
        crawl.write_text(
            yaml.safe_dump(
                {
                    "name": "docbench",
                    "source": {
                        "start_urls": [server.url],
                        "allow_private_networks": True,
                        "max_pages": len(pdfs) + 10,
                        "concurrency": 8,
                    },
                    "embedder": {"kind": "fake"},
                    "store": {"kind": "memory"},
                    "state": {"url": f"sqlite:///{tmp}/state.db"},
                }
            )
        )
        try:
            started = time.perf_counter()
            summary = run_ingest(crawl, crawl_source_for(crawl)).to_dict()
            seconds = time.perf_counter() - started
        finally:
            server.stop()
        results["run"] = {
            "seconds": round(seconds, 2),
            "docs_per_s": round(len(pdfs) / seconds, 1),
            "pages_new": summary["pages_new"],
            "chunks": summary["chunks"],
            "stage_seconds": summary["stage_seconds"],
        }
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
