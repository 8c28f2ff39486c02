"""Snapshots (issue 11): ``webvec export`` in every format, read back with plain faiss / annoy / pyarrow;
``webvec import`` into another store kind embedding nothing; S3 through a real moto server on
127.0.0.1; versioned snapshots restored by id; damaged snapshots and bad input refused with one line.

The crawl is the small generated site of the re-sync tests, embedded with the fake embedder (no model:
these tests are about files, stores and the ledger, not about vector quality).
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from ingest.config import CrawlConfig, load_crawl
from ingest.embedders import make_embedder
from ingest.env import batch_keys, live_version_number
from ingest.errors import ConfigError
from ingest.ops import verify_crawl
from ingest.snapshots import FORMATS, export_snapshot, import_snapshot, list_snapshots
from ingest.state import StateDB
from ingest.stores import VectorStore, make_store
from tests.integration.conftest import ingest
from tests.integration.sites import make_site

pytestmark = pytest.mark.server

QUERIES = [
    "glaciers part 2 sentence 5",
    "how volcanoes shape the land",
    "caves and the water",
    "Atlas welcome",
]
K = 5
QUIET_ENV = (
    "PREFECT_SERVER_ANALYTICS_ENABLED",
    "DO_NOT_TRACK",
    "PREFECT_LOGGING_LEVEL",
    "HF_HUB_OFFLINE",
    "TRANSFORMERS_OFFLINE",
    "TOKENIZERS_PARALLELISM",
)


def webvec(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """The webvec command as a user runs it (environment of this test: $WEBVEC_HOME, S3 settings)."""
    exe = Path(sys.executable).with_name("webvec")
    return subprocess.run(
        [str(exe), *args], capture_output=True, text=True, env=dict(os.environ), cwd=cwd, timeout=300
    )


@pytest.fixture
def tiny(
    tmp_path: Path, serve_dir: Callable[[Path], Any], write_crawl: Callable[..., Path]
) -> tuple[Path, Path]:
    """The generated site, served on 127.0.0.1, and its crawl definition (fake embedder, Chroma)."""
    root = tmp_path / "tiny"
    make_site(root)
    server = serve_dir(root)
    crawl = write_crawl(
        server.url, name="tiny", source={"sitemaps": []}, embedder={"kind": "fake", "dimension": 256}
    )
    return root, crawl


def variant(crawl: Path, folder: Path, **changes: Any) -> Path:
    """The same crawl (same name, same ledger) with other settings, as another YAML file."""
    data = yaml.safe_load(crawl.read_text())
    data.update(changes)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / crawl.name
    path.write_text(yaml.safe_dump(data))
    return path


def live_store(cfg: CrawlConfig) -> VectorStore:
    db = StateDB(cfg.state_url())
    try:
        return make_store(cfg.store, cfg.name, live_version_number(cfg, db))
    finally:
        db.close()


Hits = list[tuple[str, float]]


def nearest(store: VectorStore, vector: np.ndarray) -> Hits:
    return [(hit.id, hit.score) for hit in store.query(vector, K)]


def assert_same_hits(got: Hits, want: Hits) -> None:
    """Same scores rank by rank, and the same ids, except in any order among equal scores (the
    sample's templated prose gives the fake embedder exact ties) and within the tie cut at rank K."""
    assert [round(s, 4) for _, s in got] == [round(s, 4) for _, s in want], (got, want)
    last = round(want[-1][1], 4)
    for score in {round(s, 4) for _, s in want} - {last}:
        assert {i for i, s in got if round(s, 4) == score} == {i for i, s in want if round(s, 4) == score}


def lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def one_error_line(result: subprocess.CompletedProcess[str], *words: str) -> None:
    assert result.returncode == 2, (result.stdout, result.stderr)
    err = result.stderr.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:"), result.stderr
    for word in words:
        assert word in err[0], err[0]


def test_every_format_answers_like_the_live_store(
    tiny: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import faiss
    import pyarrow.parquet as pq
    from annoy import AnnoyIndex

    _root, crawl = tiny
    summary = ingest(crawl)
    cfg = load_crawl(crawl)
    store = live_store(cfg)
    ids = set(store.list_ids())
    assert summary["vectors_written"] == len(ids) > 10
    embedder = make_embedder(cfg.embedder)
    queries = embedder.embed(QUERIES)
    expected = [nearest(store, q) for q in queries]

    monkeypatch.chdir(tmp_path)  # a relative --to is taken from the current directory
    made = {fmt: export_snapshot(cfg, fmt, "snaps") for fmt in FORMATS}
    folders = {fmt: tmp_path / "snaps" / "tiny" / m["snapshot_id"] for fmt, m in made.items()}
    for fmt, folder in folders.items():
        assert made[fmt]["location"] == str(folder)
        manifest = json.loads((folder / "manifest.json").read_text())
        assert manifest["format"] == fmt and manifest["crawl"] == "tiny" and manifest["version"] == 1
        assert manifest["count"] == len(ids) and manifest["dimension"] == 256
        assert manifest["metric"] == "cosine" and manifest["model_key"] == batch_keys(cfg, embedder).model_key
        assert manifest["embedder"] == "fake" and manifest["webvec_version"] and manifest["created_at"]
        assert sorted(manifest["files"]) == sorted(
            p.name for p in folder.iterdir() if p.name != "manifest.json"
        )
        for name, entry in manifest["files"].items():
            assert hashlib.sha256((folder / name).read_bytes()).hexdigest() == entry["sha256"]
    assert not [p for p in (tmp_path / "snaps" / "tiny").iterdir() if p.name.startswith(".")]  # no leftovers
    assert [m["snapshot_id"] for m in list_snapshots(cfg, "snaps")] == sorted(
        m["snapshot_id"] for m in made.values()
    )

    # FAISS: a plain read_index; item N is line N of items.jsonl. Cosine = inner product of unit vectors.
    items = [r["id"] for r in lines(folders["faiss"] / "items.jsonl")]
    assert set(items) == ids
    index = faiss.read_index(str(folders["faiss"] / "index.faiss"))
    assert index.ntotal == len(ids) and index.d == 256
    x = np.array(queries, dtype=np.float32)
    faiss.normalize_L2(x)
    scores, labels = index.search(x, K)
    for row, row_scores, want in zip(labels, scores, expected, strict=True):
        assert_same_hits([(items[i], float(s)) for i, s in zip(row, row_scores, strict=True)], want)

    # Annoy: a plain AnnoyIndex(dim, 'angular').load.
    items = [r["id"] for r in lines(folders["annoy"] / "items.jsonl")]
    ann = AnnoyIndex(256, "angular")
    ann.load(str(folders["annoy"] / "index.ann"))
    assert ann.get_n_items() == len(ids)
    for q, want in zip(queries, expected, strict=True):
        labels, distances = ann.get_nns_by_vector(q.tolist(), K, include_distances=True)
        # Annoy's angular distance is sqrt(2 - 2 cos).
        assert_same_hits([(items[i], 1 - d * d / 2) for i, d in zip(labels, distances, strict=True)], want)

    # Parquet and JSONL: the same records, vectors bit for bit, text and metadata beside them.
    table = pq.read_table(str(folders["parquet"] / "records.parquet")).to_pylist()
    records = {r["id"]: r for r in lines(folders["jsonl"] / "records.jsonl")}
    assert {r["id"] for r in table} == set(records) == ids
    for row in table:
        same = records[row["id"]]
        assert np.array_equal(np.asarray(row["vector"], np.float32), np.asarray(same["vector"], np.float32))
        assert row["text"] == same["text"] and json.loads(row["metadata"]) == same["metadata"]
        assert same["metadata"]["url"].endswith((".html", "/")) and "text" not in same["metadata"]
    hit = store.query(queries[0], 1)[0]
    assert hit.metadata["text"] == records[hit.id]["text"]
    vector = np.asarray(records[hit.id]["vector"], np.float32)
    assert store.query(vector, 1)[0].id == hit.id


@pytest.fixture
def s3(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Any]:
    """A moto S3 server on 127.0.0.1 (a real HTTP server, in a thread) with a bucket ``snaps``."""
    import boto3
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    # Nothing of this machine's own AWS settings may leak in.
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("WEBVEC_S3_ENDPOINT_URL", f"http://{host}:{port}")
    client = boto3.client("s3", endpoint_url=f"http://{host}:{port}")
    client.create_bucket(Bucket="snaps")
    yield client
    server.stop()


def test_s3_export_then_import_into_other_stores_embeds_nothing(
    tiny: tuple[Path, Path], s3: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _root, crawl = tiny
    ingest(crawl)
    cfg = load_crawl(crawl)
    ids = set(live_store(cfg).list_ids())

    result = webvec("export", str(crawl), "--format", "parquet", "--to", "s3://snaps/team/", "--json")
    assert result.returncode == 0, result.stderr
    made = json.loads(result.stdout)
    prefix = f"team/tiny/{made['snapshot_id']}/"
    keys = {o["Key"] for o in s3.list_objects_v2(Bucket="snaps", Prefix="team/")["Contents"]}
    assert keys == {prefix + "manifest.json", prefix + "records.parquet"}
    listed = webvec("snapshots", str(crawl), "--at", "s3://snaps/team", "--json")
    assert listed.returncode == 0, listed.stderr
    assert [m["snapshot_id"] for m in json.loads(listed.stdout)] == [made["snapshot_id"]]

    # Into another store kind, same crawl and ledger: every vector, nothing embedded, same answers.
    memory = load_crawl(variant(crawl, tmp_path / "memory", store={"kind": "memory"}))
    loaded = import_snapshot(memory, "s3://snaps/team")
    assert loaded["snapshot"] == made["snapshot_id"] and loaded["texts_embedded"] == 0
    assert loaded["vectors_written"] == len(ids)
    store = live_store(memory)
    assert set(store.list_ids()) == ids
    for q in make_embedder(cfg.embedder).embed(QUERIES):
        assert_same_hits(nearest(store, q), nearest(live_store(cfg), q))
    assert verify_crawl(memory)["ok"]

    # Into a fresh home (no ledger, no cache): queryable at once, and the first run embeds nothing.
    monkeypatch.setenv("WEBVEC_HOME", str(tmp_path / "elsewhere"))
    loaded = import_snapshot(cfg, "s3://snaps/team", made["snapshot_id"])
    assert loaded["vectors_written"] == len(ids)
    assert set(live_store(cfg).list_ids()) == ids
    query = webvec("query", str(crawl), QUERIES[0], "--json")
    assert query.returncode == 0, query.stderr
    assert json.loads(query.stdout)[0]["id"] in ids
    again = ingest(crawl)
    assert again["texts_embedded"] == 0 and again["cache_hits"] == len(ids)
    # A fresh home's ledger knows no page title or heading path, and under a context template a
    # chunk's vector depends on them: each is written once more, from the cache.
    assert again["vectors_written"] == len(ids)
    assert ingest(crawl)["vectors_written"] == 0
    assert verify_crawl(cfg)["ok"]


def test_versions_are_kept_and_the_older_is_restored(tiny: tuple[Path, Path], tmp_path: Path) -> None:
    root, crawl = tiny
    snaps = tmp_path / "snaps"
    ingest(crawl)
    cfg = load_crawl(crawl)
    before = set(live_store(cfg).list_ids())
    older = export_snapshot(cfg, "jsonl", str(snaps))["snapshot_id"]
    page = root / "rivers.html"
    page.write_text(page.read_text().replace("In part 1, sentence 3 about rivers", "Rivers, revised"))
    ingest(crawl)
    after = set(live_store(cfg).list_ids())
    assert before != after
    newer = export_snapshot(cfg, "jsonl", str(snaps))["snapshot_id"]
    # An unfinished snapshot (no manifest: a crash mid-export) is never listed nor picked.
    partial = snaps / "tiny" / "29990101T000000.000Z-00000000"
    partial.mkdir()
    (partial / "records.jsonl").write_text("{}\n")
    assert older < newer
    assert [m["snapshot_id"] for m in list_snapshots(cfg, str(snaps))] == [older, newer]

    other = variant(crawl, tmp_path / "other", store={"kind": "chroma", "path": "other"})
    result = webvec("import", str(other), "--from", str(snaps), "--snapshot", older)
    assert result.returncode == 0, result.stderr
    assert f"snapshot {older} imported" in result.stdout and "0 texts embedded" in result.stdout
    other_cfg = load_crawl(other)
    assert set(live_store(other_cfg).list_ids()) == before

    # The newest, over it: --replace makes the store hold exactly that snapshot.
    refused = webvec("import", str(other), "--from", str(snaps))
    one_error_line(refused, "already holds", "--replace")
    result = webvec("import", str(other), "--from", str(snaps), "--replace", "--json")
    assert result.returncode == 0, result.stderr
    loaded = json.loads(result.stdout)
    assert loaded["snapshot"] == newer and loaded["vectors_deleted"] == len(before - after) >= 1
    assert set(live_store(other_cfg).list_ids()) == after
    assert verify_crawl(other_cfg)["ok"]


def test_damaged_snapshots_and_bad_input_are_refused_with_one_line(
    tiny: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from typer.testing import CliRunner

    from flows.cli import app

    for name in QUIET_ENV:  # the CLI sets them in this process: put back as they were afterwards
        monkeypatch.setenv(name, os.environ.get(name, ""))
        if not os.environ[name]:
            monkeypatch.delenv(name)
    runner = CliRunner(env={"COLUMNS": "200"})

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        # In this process: a subprocess costs seconds here (the other tests run the real command).
        result = runner.invoke(app, list(args))
        return subprocess.CompletedProcess(args, result.exit_code, result.stdout, result.stderr)

    _root, crawl = tiny
    snaps = tmp_path / "snaps"
    empty = tmp_path / "empty"
    empty.mkdir()
    # Before anything is ingested: nothing to export (exit 1, as `query`).
    result = cli("export", str(crawl), "--to", str(snaps))
    assert result.returncode == 1 and "nothing ingested" in result.stderr
    ingest(crawl)
    cfg = load_crawl(crawl)
    faiss_id = export_snapshot(cfg, "faiss", str(snaps))["snapshot_id"]
    jsonl_id = export_snapshot(cfg, "jsonl", str(snaps))["snapshot_id"]
    other = variant(crawl, tmp_path / "other", store={"kind": "chroma", "path": "other"})

    one_error_line(cli("export", str(crawl), "--format", "hnsw", "--to", str(snaps)), "hnsw", "parquet")
    one_error_line(cli("export", str(crawl), "--format", "jsonl"), "--to is required")
    one_error_line(cli("export", str(crawl), "--to", "gs://bucket/x"), "s3://bucket/prefix")
    one_error_line(cli("export", str(crawl), "--to", "s3:///x"), "no bucket")
    one_error_line(cli("snapshots", str(crawl)), "--at is required")
    one_error_line(cli("import", str(other)), "--from is required")
    one_error_line(cli("import", str(other), "--from", str(empty)), "no snapshot of tiny")
    one_error_line(cli("import", str(other), "--from", str(snaps), "--snapshot", "nope"), "no snapshot nope")
    one_error_line(
        cli("import", str(other), "--from", str(snaps), "--snapshot", faiss_id), "cannot be imported"
    )
    # Another embedder (another model_key, another dimension): refused before anything is written.
    changed = variant(other, tmp_path / "changed", embedder={"kind": "fake", "dimension": 128})
    one_error_line(cli("import", str(changed), "--from", str(snaps)), "model_key")

    # A byte changed in a data file: the checksum catches it, and nothing is loaded.
    records = snaps / "tiny" / jsonl_id / "records.jsonl"
    records.write_text(records.read_text().replace("rivers", "rivets", 1))
    with pytest.raises(ConfigError, match=r"records\.jsonl does not match its checksum"):
        import_snapshot(load_crawl(other), str(snaps))
    one_error_line(webvec("import", str(other), "--from", str(snaps)), "checksum", "refusing")
    assert live_store(load_crawl(other)).count() == 0
