"""The CLI around crawl definitions: init, schema, validate's preflight, --version, readable --help.

Through typer's CliRunner (no subprocess, no Prefect, no model).
"""

from __future__ import annotations

import json
import re
from importlib.metadata import version
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from flows.cli import app
from ingest.config import SCHEMA_FILE, crawl_json_schema, load_crawl, parse_crawl
from tests.conftest import REPO

runner = CliRunner(env={"COLUMNS": "200"})


def test_version() -> None:
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.stdout == f"webvec {version('webvec')}\n"


@pytest.mark.parametrize("command", ["run", "query", "plan", "verify", "init", "validate", "--"])
def test_help_shows_readable_placeholders(command: str) -> None:
    args = ["--help"] if command == "--" else [command, "--help"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "<bool>" not in result.stdout and "<list[" not in result.stdout
    if command == "run":
        assert re.search(r"--url\s+URL\s+Re-fetch", result.stdout)
        assert re.search(r"--json\s+Print", result.stdout)  # a flag has no placeholder
        assert "{CRAWL}" in result.stdout
    if command == "query":
        assert re.search(r"-k\s+INTEGER", result.stdout)
    if command == "init":
        assert re.search(r"--url\s+URL", result.stdout) and re.search(r"--dir\s+DIR", result.stdout)


def test_schema_has_a_description_on_every_field() -> None:
    result = runner.invoke(app, ["schema"])
    assert result.exit_code == 0
    schema = json.loads(result.stdout)
    assert schema == json.loads(json.dumps(crawl_json_schema()))
    assert schema["$schema"] == "http://json-schema.org/draft-07/schema#"
    models = {"CrawlConfig": schema, **schema["definitions"]}
    assert {"SourceConfig", "OpenAIEmbedderConfig", "PineconeStoreConfig", "SyncConfig"} <= set(models)
    missing = [
        f"{model}.{name}"
        for model, node in models.items()
        for name, prop in node.get("properties", {}).items()
        if not prop.get("description")
    ]
    assert missing == []
    assert all(node.get("description") for node in models.values())


def test_schema_accepts_the_shipped_demo_and_refuses_unknown_keys() -> None:
    jsonschema = pytest.importorskip("jsonschema")
    validator = jsonschema.Draft7Validator(crawl_json_schema())
    demo = yaml.safe_load((REPO / "crawls" / "demo.yaml").read_text(encoding="utf-8"))
    assert list(validator.iter_errors(demo)) == []
    assert list(validator.iter_errors({**demo, "sync": {"delete_after": "36h"}})) == []
    assert list(validator.iter_errors({**demo, "source": {**demo["source"], "max_dept": 3}}))
    assert list(validator.iter_errors({**demo, "source": {**demo["source"], "download_delay": 3600}}))


def test_init_writes_a_definition_that_validates(tmp_path: Path) -> None:
    folder = tmp_path / "crawls"
    result = runner.invoke(app, ["init", "docs", "--url", "https://example.org/docs/", "--dir", str(folder)])
    assert result.exit_code == 0, result.output
    target = folder / "docs.yaml"
    text = target.read_text(encoding="utf-8")
    assert text.startswith(f"# yaml-language-server: $schema={SCHEMA_FILE}\n")
    assert json.loads((folder / SCHEMA_FILE).read_text(encoding="utf-8")) == json.loads(
        json.dumps(crawl_json_schema())
    )
    # Every value written is the default, but for the int8 local model (as fast again, the same recall
    # on the evaluation sets: new crawls get it, existing ones keep the fp32 default and its model_key).
    written = load_crawl(target)
    assert written == parse_crawl(
        {
            "name": "docs",
            "source": {"start_urls": ["https://example.org/docs/"]},
            "embedder": {"kind": "local", "precision": "int8"},
        }
    )
    assert not written.source.allow_private_networks
    # Every commonly changed key is there, each with its comment.
    for key in (
        "max_depth",
        "max_pages",
        "concurrency",
        "allow_private_networks",
        "download_delay",
        "delete_after",
    ):
        line = next(line for line in text.splitlines() if line.strip().startswith(f"{key}:"))
        assert "#" in line, line
    validated = runner.invoke(app, ["validate", str(target)])
    assert validated.exit_code == 0 and validated.stderr == "", validated.output
    assert validated.stdout.startswith("ok: docs")


def test_init_sets_the_private_flag_only_for_a_private_url(tmp_path: Path) -> None:
    result = runner.invoke(app, ["init", "local", "--url", "http://127.0.0.1:8765/", "--dir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    text = (tmp_path / "local.yaml").read_text(encoding="utf-8")
    assert re.search(r"^  allow_private_networks: true\s+# set by webvec init", text, re.M)
    assert load_crawl(tmp_path / "local.yaml").source.allow_private_networks
    assert runner.invoke(app, ["validate", str(tmp_path / "local.yaml")]).exit_code == 0


def test_init_refuses_to_overwrite_without_force(tmp_path: Path) -> None:
    target = tmp_path / "docs.yaml"
    target.write_text("name: docs\n# my own edits\n", encoding="utf-8")
    result = runner.invoke(app, ["init", "docs", "--url", "https://example.org/", "--dir", str(tmp_path)])
    assert result.exit_code == 2
    assert result.stderr == f"error: {target} exists; use --force to overwrite it\n"
    assert target.read_text(encoding="utf-8") == "name: docs\n# my own edits\n"
    result = runner.invoke(
        app, ["init", "docs", "--url", "https://example.org/", "--dir", str(tmp_path), "--force"]
    )
    assert result.exit_code == 0 and load_crawl(target).source.start_urls == ["https://example.org/"]


def test_init_uses_the_crawls_dir_by_default(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WEBVEC_CRAWLS_DIR", str(tmp_path / "defs"))
    assert runner.invoke(app, ["init", "site", "--url", "https://example.org/"]).exit_code == 0
    assert load_crawl("site").name == "site"


@pytest.mark.parametrize(
    ("name", "url", "expected"),
    [
        ("Docs", "https://example.org/", "error: NAME: invalid name 'Docs'"),
        ("../x", "https://example.org/", "error: NAME: invalid name '../x'"),
        ("docs", "example.org", "error: --url: not an http(s) URL with a host: 'example.org'"),
        (
            "docs",
            "https://me:hunter2@example.org/",
            "error: --url: credentials (user:password@) are not allowed",
        ),
    ],
)
def test_init_bad_input_is_one_line_and_writes_nothing(
    tmp_path: Path, name: str, url: str, expected: str
) -> None:
    folder = tmp_path / "crawls"
    result = runner.invoke(app, ["init", name, "--url", url, "--dir", str(folder)])
    assert result.exit_code == 2
    assert result.stderr.startswith(expected) and result.stderr.count("\n") == 1
    assert "hunter2" not in result.stderr
    assert not folder.exists()


def test_validate_refuses_a_loopback_start_url_without_the_flag(tmp_path: Path) -> None:
    path = tmp_path / "loop.yaml"
    path.write_text("name: loop\nsource:\n  start_urls: [http://127.0.0.1:9/]\n", encoding="utf-8")
    result = runner.invoke(app, ["validate", str(path)])
    assert result.exit_code == 2
    assert result.stderr.startswith(f"error: {path}: source.start_urls.0: 127.0.0.1 is a private or loopback")
    assert result.stderr.count("\n") == 1 and result.stdout == ""


def test_validate_prints_warnings_and_passes(tmp_path: Path) -> None:
    path = tmp_path / "far.yaml"
    path.write_text(
        f"name: far\nsource:\n  start_urls: [http://93.184.216.34/]\n  include: ['/[a-z]+/']\n"
        f"store: {{kind: chroma, path: {tmp_path / 'vectors'}}}\n",
        encoding="utf-8",
    )
    result = runner.invoke(app, ["validate", str(path)])
    assert result.exit_code == 0, result.output
    assert result.stderr.startswith(
        f"warning: {path}: store.path: {tmp_path / 'vectors'} is outside $WEBVEC_HOME"
    )
    assert result.stdout.startswith("ok: far")


def test_error_lines_keep_brackets(tmp_path: Path) -> None:
    # Rich would take '[a-z]' for markup and print '(+)+$'.
    path = tmp_path / "rx.yaml"
    path.write_text("name: rx\nsource:\n  start_urls: [https://example.org/]\n  include: ['([a-z]+)+$']\n")
    result = runner.invoke(app, ["validate", str(path)])
    assert result.exit_code == 2 and "regex '([a-z]+)+$' can take exponential time" in result.stderr
