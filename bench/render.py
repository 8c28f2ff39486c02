"""Rendering throughput (``source.render``): pages/s of the spider, plain vs rendered, on one site.

Writes ``--pages`` server-rendered article pages (an index links them all; each page also loads one
small script, as real pages do), serves them on 127.0.0.1, and runs the spider subprocess
(``python -m spiders.run``) over the same site with ``render: never`` and ``render: always``
(``--concurrency`` pages at once, ``source.render_concurrency`` the same). A page is counted when the
spider stored it; the time is the crawl process's wall clock, browser start-up included.

    .venv/bin/python -m bench.render --pages 100
"""

from __future__ import annotations

import argparse
import json
import subprocess
import tempfile
import time
from pathlib import Path

import yaml

from bench.serve import serve
from spiders.run import spider_command


def write_site(root: Path, pages: int) -> None:
    """``pages`` article pages with a script each, an index linking them, robots.txt."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "robots.txt").write_text("User-agent: *\nAllow: /\n")
    (root / "counter.js").write_text("document.body.dataset.seen = String(Date.now());\n")
    links = "".join(f'<li><a href="p{i}.html">Page {i}</a></li>' for i in range(pages))
    index = f"<html><head><title>Index</title></head><body><ul>{links}</ul></body></html>"
    (root / "index.html").write_text(index)
    for i in range(pages):
        prose = f"Paragraph about topic {i}: rivers, glaciers and deserts shape the land over time. " * 20
        (root / f"p{i}.html").write_text(
            f"<html><head><title>Page {i}</title><script src='counter.js'></script></head>"
            f"<body><article><h1>Page {i}</h1><p>{prose}</p><p>{prose}</p></article></body></html>"
        )


def crawl_once(folder: Path, base: str, render: str, pages: int, concurrency: int) -> dict[str, float]:
    """Run the spider once over the site; pages stored, seconds, pages/s."""
    name = f"bench-render-{render}"
    config = folder / f"{name}.yaml"
    source = {
        "start_urls": [base],
        "allow_private_networks": True,
        "max_pages": pages + 1,
        "concurrency": concurrency,
        "render": render,
        "render_concurrency": min(concurrency, 16),
    }
    data = {"name": name, "source": source, "embedder": {"kind": "fake"}}
    config.write_text(yaml.safe_dump(data))
    stats_file = folder / f"stats-{render}.json"
    start = time.perf_counter()
    subprocess.run(spider_command(config, f"bench-{render}", stats_file), check=True, capture_output=True)
    seconds = time.perf_counter() - start
    stored = json.loads(stats_file.read_text())["pages_stored"]
    return {"pages": stored, "seconds": round(seconds, 2), "pages_per_s": round(stored / seconds, 2)}


def main() -> None:
    """Measure and print one JSON line per mode."""
    parser = argparse.ArgumentParser(prog="python -m bench.render", description=__doc__.splitlines()[0])
    parser.add_argument("--pages", type=int, default=100, help="article pages on the site (default 100)")
    parser.add_argument("--concurrency", type=int, default=4, help="pages at once, both modes (default 4)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="webvec-bench-render-") as tmp:
        folder = Path(tmp)
        write_site(folder / "site", args.pages)
        with serve(folder / "site") as server:
            for render in ("never", "always"):
                result = crawl_once(folder, server.url, render, args.pages, args.concurrency)
                print(json.dumps({"render": render, "concurrency": args.concurrency, **result}))


if __name__ == "__main__":
    main()
