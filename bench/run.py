"""`make bench`: crawl a corpus served on 127.0.0.1 and measure each stage.

Three runs on one corpus (a private copy, so pages can be edited between runs):
  1. first run          everything fetched, chunked, embedded, written
  2. unchanged re-run   conditional requests / hashes: nothing should be embedded or written
  3. edited re-run      ~1% of pages get a new paragraph: only their new chunks are embedded

Prints pages/s and chunks/s per stage and end to end, texts embedded and vectors written per run,
and the peak memory of the process that runs them. Then the start-up figures of the CLI as a user
runs it (a fresh process each time, no Prefect server): `webvec validate`, `status`, `query` and an
unchanged `webvec run`, the median of a few tries each (``--cli-tries``; 0 skips them).

  python -m bench.run [--site FOLDER] [--max-pages N] [--embedder local|openai-server]
                      [--latency-ms 200] [--tpm 1000000] [--json FILE]
                      [--eval QUESTIONS [--context-template TEMPLATE|none] [-k 5]]
                      [--pages LIST] [--work DIR [--eval-only]]

`--eval QUESTIONS` measures retrieval quality instead of re-runs: after the first run, `webvec eval`'s
core asks every question in each mode (dense, lexical, hybrid) and prints one table row per mode
(recall@1, recall@5, MRR). `--context-template none` embeds bare chunks (the default: the crawl's
default template, title and heading path before the text).

`--variants local,int8,static,pca128,pca64` (with `--eval`) then moves the crawl to each embedder in
turn with `webvec reembed` (cache first: the pca variants project the fp32 vectors, embedding nothing)
and asks the questions again: one table of embedder × mode → recall@1, recall@5, MRR, chunks/s of the
embedder and bytes per vector.

`--generated 10000,100000` measures `webvec run` over generated sites of those sizes instead
(bench/growth.py): peak memory of every process and time per page as the site grows.

`--peer langchain [--peer-python /work/lc-venv/bin/python] [--peer-pages bench/peer_pages.txt]` runs
webvec (exactly what `webvec init` writes) and a LangChain pipeline (bench/langchain_peer.py, its own
virtual environment) on one 200-page sample of the Python docs, first run and unchanged re-run each,
and prints both ratios webvec/LangChain against the targets (≤ 0.7, ≤ 0.5) (bench/peer.py).

`--site /usr/share/doc/python3.11/html` crawls Debian's python3.11-doc (~530 real pages).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

HERE = Path(__file__).resolve().parent
PYTHON_DOCS = "/usr/share/doc/python3.11/html"  # Debian's python3.11-doc


def _peak_mb(who: int) -> float:
    return resource.getrusage(who).ru_maxrss / 1024  # Linux reports KiB


def _edit_pages(root: Path, fraction: float, seed: int = 7) -> list[str]:
    pages = sorted(p for p in root.rglob("*.html") if "private" not in p.parts)
    chosen = random.Random(seed).sample(pages, max(1, round(len(pages) * fraction)))
    for i, page in enumerate(chosen):
        html = page.read_text(errors="replace")
        para = (
            f"<p>Benchmark edit {i}: this paragraph was added between runs to measure how an incremental "
            f"re-crawl handles a small change to one page among many.</p>"
        )
        # After the first paragraph that follows the page's <h1>: inside the main text, where an
        # edit matters (a paragraph added to the footer is boilerplate and rightly ignored).
        idx = html.find("</p>", max(0, html.find("<h1")))
        html = (
            html[: idx + 4] + para + html[idx + 4 :]
            if idx >= 0
            else html.replace("</body>", para + "</body>")
        )
        page.write_text(html)
        os.utime(page, (time.time() + 5, time.time() + 5))  # a newer Last-Modified
    return [str(p.relative_to(root)) for p in chosen]


def _by_window(
    accepted: list[list[float]], span: tuple[float, float], tpm: int, window_s: float = 10
) -> list[float]:
    """The first run's tokens per ``window_s`` seconds of its wall time (from the stand-in's record of
    when each answered request arrived), as fractions of the cap: where a run loses its rate."""
    start, end = span
    totals = [0.0] * max(1, math.ceil((end - start) / window_s))
    for at, tokens in accepted:
        if start <= at < end:
            totals[int((at - start) // window_s)] += tokens
    return [round(t / (tpm * window_s / 60), 2) for t in totals]


def _rates(summary: dict[str, Any]) -> dict[str, Any]:
    st = summary["stage_seconds"]
    pages = summary["pages_fetched"]
    chunks = summary["chunks"]
    out: dict[str, Any] = {}
    for stage in ("crawl", "extract"):
        if st.get(stage):
            out[f"{stage}_pages_per_s"] = round(pages / st[stage], 1)
    for stage in ("chunk", "embed", "write", "commit"):
        if st.get(stage) and chunks:
            out[f"{stage}_chunks_per_s"] = round(chunks / st[stage], 1)
    out["end_to_end_pages_per_s"] = round(pages / summary["seconds"], 2)
    out["end_to_end_chunks_per_s"] = round(chunks / summary["seconds"], 2)
    if st.get("embed") and chunks:
        # Issue 10's target for a local model: end to end ≥ 0.9 × the embed stage's own chunks/s.
        out["end_to_end_over_embed_stage"] = round(st["embed"] / summary["seconds"], 3)
    return out


def _keep_only(site: Path, listing: Path) -> None:
    """Delete the pages of ``site`` that ``listing`` (paths or globs, ``#`` comments) does not name."""
    import fnmatch

    wanted = [
        line.strip() for line in listing.read_text().splitlines() if line.strip() and not line.startswith("#")
    ]
    for page in site.rglob("*.html"):
        if not any(fnmatch.fnmatchcase(str(page.relative_to(site)), w) for w in wanted):
            page.unlink()


def _quality(crawl_path: Path, questions: Path, k: int) -> dict[str, Any]:
    """Recall@1, recall@5 and MRR of each search mode on a question set; prints one row per mode."""
    from ingest.config import load_crawl
    from ingest.evaluate import evaluate, load_questions
    from ingest.query import MODES, search

    cfg = load_crawl(crawl_path)
    asked = load_questions(questions)
    template = "none" if cfg.chunk.context_template is None else "title+heading"
    out: dict[str, Any] = {}
    print("\n| mode | context | questions | recall@1 | recall@5 | MRR | query ms |", flush=True)
    print("|---|---|---:|---:|---:|---:|---:|", flush=True)
    for mode in MODES:
        started = time.perf_counter()
        report = evaluate(asked, lambda q, n: [h["url"] for h in search(cfg, q, n, mode=mode)], k)  # noqa: B023
        ms = (time.perf_counter() - started) * 1000 / max(1, len(asked))
        out[mode] = {**report.to_dict(), "query_ms": round(ms, 1)}
        print(
            f"| {mode} | {template} | {report.questions} | {report.recall_at_1:.3f} | "
            f"{report.recall_at_5:.3f} | {report.mrr:.3f} | {ms:.0f} |",
            flush=True,
        )
    return out


# --variants: the embedder section of each; pca/svd project the fp32 model's cached vectors.
VARIANTS: dict[str, dict[str, Any]] = {
    "local": {"kind": "local"},
    "int8": {"kind": "local", "precision": "int8"},
    "static": {"kind": "static"},
    "pca128": {"kind": "local", "reduce": {"method": "pca", "dimensions": 128}},
    "pca64": {"kind": "local", "reduce": {"method": "pca", "dimensions": 64}},
    "svd128": {"kind": "local", "reduce": {"method": "svd", "dimensions": 128}},
    # Distilled from the packaged MiniLM into the bench's home first (minutes), by `webvec distill`'s code.
    "m2v": {"kind": "static", "vectors": "model2vec", "path": "models/m2v-bench-256"},
}


def _variants(
    crawl: dict[str, Any], crawl_path: Path, args: argparse.Namespace, first: dict[str, Any]
) -> list[dict[str, Any]]:
    """Each embedder variant in turn (``webvec reembed``, then the questions); the table's rows."""
    from flows.reembed import reembed
    from ingest.config import load_crawl
    from ingest.env import make_env

    rows: list[dict[str, Any]] = []
    names = [n.strip() for n in args.variants.split(",") if n.strip()]
    unknown = [n for n in names if n not in VARIANTS]
    if unknown:
        raise SystemExit(f"--variants: unknown {', '.join(unknown)} (known: {', '.join(VARIANTS)})")
    for name in names:
        crawl_path.write_text(yaml.safe_dump({**crawl, "embedder": VARIANTS[name]}))
        if VARIANTS[name].get("vectors") == "model2vec":
            _distilled(VARIANTS[name]["path"])
        if name == args.embedder_name:
            summary = first  # the first run embedded with it
        else:
            summary = reembed(str(crawl_path)).to_dict()
            print(f"reembed {name}: {summary['message']}", flush=True)
        env = make_env(load_crawl(crawl_path))
        dimension = env.embedder.dimension
        env.db.close()
        embed_s = summary["stage_seconds"].get("embed", 0.0)
        embedded = summary["texts_embedded"]
        rate = round(embedded / embed_s, 1) if embedded and embed_s else None
        quality = _quality(crawl_path, Path(args.eval_file), args.k)
        for mode, q in quality.items():
            rows.append(
                {
                    "embedder": name,
                    "mode": mode,
                    "dimension": dimension,
                    "vector_bytes": dimension * 4,
                    "texts_embedded": summary["texts_embedded"],
                    "chunks_per_s": rate,
                    **{k: q[k] for k in ("recall_at_1", "recall_at_5", "mrr")},
                }
            )
    print("\n| embedder | mode | recall@1 | recall@5 | MRR | chunks/s | texts embedded | bytes/vector |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        rate = f"{r['chunks_per_s']:,}" if r["chunks_per_s"] else "— (cache)"
        print(
            f"| {r['embedder']} | {r['mode']} | {r['recall_at_1']:.3f} | {r['recall_at_5']:.3f} | "
            f"{r['mrr']:.3f} | {rate} | {r['texts_embedded']:,} | {r['vector_bytes']:,} |"
        )
    return rows


def _distilled(path: str) -> None:
    """Distil MiniLM into ``path`` under $WEBVEC_HOME unless a model is there."""
    from ingest.config import under_home
    from ingest.embedders.model2vec import distill_model

    folder = under_home(path)
    if not folder.exists():
        started = time.perf_counter()
        distill_model("all-MiniLM-L6-v2", 256, folder)
        print(f"distilled MiniLM into {folder} in {time.perf_counter() - started:.0f}s", flush=True)


def _side_bench(run: Any, args: argparse.Namespace) -> int:
    """A comparison (embedders, stores, site sizes) instead of the ingest runs, in a throwaway home."""
    os.environ["WEBVEC_HOME"] = tempfile.mkdtemp(prefix="webvec-bench-compare-")
    try:
        rows = run(args)
    finally:
        shutil.rmtree(os.environ["WEBVEC_HOME"], ignore_errors=True)
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(rows, indent=2))
    return 0


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; returns an exit code."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--site", default=str(HERE / "site"), help="folder of HTML to serve (default: sample site)"
    )
    parser.add_argument("--max-pages", type=int, default=1000)
    parser.add_argument("--embedder", choices=["local", "openai-server"], default="local")
    parser.add_argument(
        "--precision",
        choices=["fp32", "int8"],
        help="local: embedder.precision (default: the config's, fp32)",
    )
    parser.add_argument("--latency-ms", type=int, default=200, help="openai-server: latency per request")
    parser.add_argument("--tpm", type=int, default=1_000_000, help="openai-server: tokens/min cap")
    parser.add_argument("--edit-fraction", type=float, default=0.01)
    parser.add_argument("--cli-tries", type=int, default=3, help="tries per CLI start-up figure (0: none)")
    parser.add_argument("--json", dest="json_out", help="also write the results to this file")
    quality = parser.add_argument_group("retrieval quality (webvec eval), instead of the re-runs")
    quality.add_argument("--eval", dest="eval_file", help="questions file (.jsonl/.json/.tsv/.csv)")
    quality.add_argument("--context-template", help="chunk.context_template; 'none': bare chunks")
    quality.add_argument("-k", type=int, default=5, help="results per question")
    quality.add_argument("--pages", help="serve only the pages this file lists (paths or globs, one a line)")
    quality.add_argument("--work", help="keep the run's folder here (a later --eval-only reads it)")
    quality.add_argument("--eval-only", action="store_true", help="with --work: only ask the questions")
    quality.add_argument(
        "--variants", help=f"with --eval: re-embed with each and ask again ({','.join(VARIANTS)})"
    )
    stores = parser.add_argument_group("stores compared (bench/stores.py), instead of the ingest runs")
    stores.add_argument("--stores", help="comma-separated: chroma,pgvector,qdrant,milvus,faiss")
    stores.add_argument("--vectors", type=int, default=10_000)
    stores.add_argument("--dim", type=int, default=384)
    stores.add_argument("--chunks-per-page", type=int, default=10)
    stores.add_argument("--queries", type=int, default=200)
    stores.add_argument("--listings", type=int, default=500)
    embedders = parser.add_argument_group(
        "embedders compared (bench/embedders.py), instead of the ingest runs"
    )
    embedders.add_argument("--embedders", help="comma-separated: local,int8,static,fake")
    embedders.add_argument("--texts", type=int, default=400, help="texts per embed call")
    embedders.add_argument("--repeats", type=int, default=3)
    growth = parser.add_argument_group(
        "memory and time as the site grows (bench/growth.py), instead of the ingest runs"
    )
    growth.add_argument("--generated", help="comma-separated page counts of generated sites: 10000,100000")
    growth.add_argument("--sample-s", type=float, default=0.5, help="seconds between memory samples")
    growth.add_argument(
        "--generated-store",
        choices=["chroma", "pgvector"],
        default="chroma",
        help="embedded Chroma (in the run's process) or pgvector (PostgreSQL 18 server, sampled too)",
    )
    peer = parser.add_argument_group(
        "head to head with a LangChain pipeline (bench/peer.py), instead of the ingest runs"
    )
    peer.add_argument("--peer", choices=["langchain"], help="the peer pipeline to run beside webvec")
    peer.add_argument("--peer-python", default="/work/lc-venv/bin/python", help="the peer's interpreter")
    peer.add_argument("--peer-pages", default=str(HERE / "peer_pages.txt"), help="pages served to both")
    peer.add_argument("--peer-max-depth", type=int, default=20, help="RecursiveUrlLoader's max_depth")
    args = parser.parse_args(argv)
    if args.peer:
        from bench import peer as peer_bench

        if args.site == str(HERE / "site"):
            args.site = PYTHON_DOCS
        results = peer_bench.run(args)
        if args.json_out:
            Path(args.json_out).write_text(json.dumps(results, indent=2))
        return 0
    if args.generated:
        from bench import growth as growth_bench

        return _side_bench(growth_bench.run, args)
    if args.embedders or args.stores:
        from bench import embedders as embedder_bench
        from bench import stores as store_bench

        return _side_bench(embedder_bench.run if args.embedders else store_bench.run, args)

    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="webvec-bench-"))
    os.environ["WEBVEC_HOME"] = str(work / "home")
    if args.eval_only:  # the crawl a kept --work folder holds, asked again (e.g. after a ranking change)
        if args.variants:  # ... or moved to other embedders (re-embedding needs no site: the ledger has it)
            args.embedder_name = None
            crawl_path = work / "bench.yaml"
            results = {"variants": _variants(yaml.safe_load(crawl_path.read_text()), crawl_path, args, {})}
        else:
            results = _quality(work / "bench.yaml", Path(args.eval_file), args.k)
        if args.json_out:
            Path(args.json_out).write_text(json.dumps(results, indent=2))
        return 0
    work.mkdir(parents=True, exist_ok=True)
    site = work / "site"
    shutil.copytree(args.site, site, symlinks=False, ignore_dangling_symlinks=True, dirs_exist_ok=True)
    if args.pages:
        _keep_only(site, Path(args.pages))

    from bench.serve import StandInProcess, StaticServer
    from ingest.run import run_ingest
    from spiders.process import SpiderCrawler

    server = StaticServer(site).start()
    extra_server = None
    embedder: dict[str, Any] = {"kind": "local"}
    if args.precision:
        embedder["precision"] = args.precision
    if args.embedder == "openai-server":
        # The server enforces the cap (429 beyond it); the client is told the same cap, as a user would.
        # In a process of its own, as OpenAI's is: in this one, its threads would wait for the GIL
        # while the run chunks and writes, and count requests late, in bunches.
        extra_server = StandInProcess(latency_s=args.latency_ms / 1000, tpm=args.tpm).start()
        os.environ["OPENAI_API_KEY"] = "bench-key"
        embedder = {"kind": "openai", "base_url": extra_server.base_url, "tokens_per_minute": args.tpm}
    crawl = {
        "name": "bench",
        "source": {
            "start_urls": [server.url],
            "max_depth": 20,
            "max_pages": args.max_pages,
            "allow_private_networks": True,
            "concurrency": 16,
        },
        "embedder": embedder,
        "store": {"kind": "chroma"},
    }
    if args.context_template is not None:
        none = args.context_template.lower() in ("none", "null", "")
        crawl["chunk"] = {"context_template": None if none else args.context_template}
    crawl_path = work / "bench.yaml"
    crawl_path.write_text(yaml.safe_dump(crawl))
    results: dict[str, Any] = {"site": args.site, "embedder": args.embedder, "precision": args.precision}
    try:
        first_run_clock = (0.0, 0.0)
        labels = ("first_run",) if args.eval_file else ("first_run", "unchanged_rerun", "edited_rerun")
        for label in labels:
            if label == "edited_rerun":
                results["edited_pages"] = _edit_pages(site, args.edit_fraction)
            started, clock = time.perf_counter(), time.monotonic()
            summary = run_ingest(crawl_path, SpiderCrawler()).to_dict()
            wall = time.perf_counter() - started
            if label == "first_run":
                first_run_clock = (clock, clock + wall)
            results[label] = {
                "wall_s": round(wall, 2),
                "pages": summary["pages_fetched"],
                "chunks": summary["chunks"],
                "texts_embedded": summary["texts_embedded"],
                "vectors_written": summary["vectors_written"],
                "vectors_deleted": summary["vectors_deleted"],
                "stage_seconds": summary["stage_seconds"],
                **_rates(summary),
            }
            if label == "first_run":
                results["first_run_tokens"] = summary["tokens_embedded"]
            print(f"{label}: {json.dumps(results[label])}", flush=True)
        if extra_server is not None:
            answered = extra_server.stop()
            # Over the first run's wall time: the bucket refills while batches wait for the crawl,
            # so time inside the embed stage alone would overstate the rate. Meaningful only when
            # the corpus holds several minutes' worth of the cap (e.g. the Python docs, ~2.5M tokens).
            first = results["first_run"]
            results["openai_requests"] = answered["ok_requests"]
            results["openai_server_tokens_all_runs"] = answered.get("tokens", 0)  # cross-check of ours
            results["openai_429s"] = answered["statuses"].get("429", 0)
            results["openai_tokens_per_min_achieved"] = round(
                results["first_run_tokens"] / first["wall_s"] * 60
            )
            results["openai_tokens_per_min_cap"] = args.tpm
            results["openai_fraction_of_cap"] = round(results["openai_tokens_per_min_achieved"] / args.tpm, 3)
            results["openai_fraction_of_cap_by_10s"] = _by_window(
                answered.get("accepted", []), first_run_clock, args.tpm
            )
        # The flow process holds the model, the store client and the batches. (The spider's own peak
        # cannot be read from RUSAGE_CHILDREN: a forked child counts the parent's pages until exec.)
        results["peak_rss_mb_flow_process"] = round(_peak_mb(resource.RUSAGE_SELF))
        if args.eval_file and args.variants:
            args.embedder_name = "local" if args.embedder == "local" else None
            results["variants"] = _variants(crawl, crawl_path, args, summary)
        elif args.eval_file:
            results["eval"] = _quality(crawl_path, Path(args.eval_file), args.k)
        elif args.cli_tries:
            from bench.startup import cli_startup

            results["cli_seconds"] = cli_startup(crawl_path, args.cli_tries)
            print(f"cli_seconds: {json.dumps(results['cli_seconds'])}", flush=True)
    finally:
        server.stop()
        if extra_server is not None:
            extra_server.stop()
        if not args.work:
            shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(results, indent=2))
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
