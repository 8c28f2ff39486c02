"""Loading crawl definitions: finding the file, parsing YAML, one-line errors, the JSON Schema for
editors, and the starter definition ``webvec init`` writes."""

from __future__ import annotations

import json
import os
from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from ingest.config._base import _check_name, _check_page_url, crawls_dir
from ingest.config.crawl import CrawlConfig
from ingest.errors import ConfigError

SCHEMA_FILE = "webvec-crawl.schema.json"  # written next to crawl definitions by `webvec init`


# The discriminator tags pydantic inserts into union locations ("embedder.openai.model").
_UNION_TAGS = (
    "local",
    "openai",
    "fake",
    "static",
    "chroma",
    "pinecone",
    "pgvector",
    "qdrant",
    "milvus",
    "memory",
    "web",
    "apify_dataset",
)


def _format_validation_error(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors():
        # Drop the discriminator tag pydantic inserts into union locations ("embedder.openai.model").
        loc = ".".join(str(p) for p in err["loc"] if p not in _UNION_TAGS)
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = "unknown key"
        elif err["type"] == "missing":
            msg = "required key is missing"
        elif err["type"] == "union_tag_invalid":
            ctx = err.get("ctx") or {}
            msg = f"kind: unknown kind {ctx.get('tag')!r} (one of {ctx.get('expected_tags')})"
        parts.append(f"{loc or '(top level)'}: {msg}")
    return "; ".join(parts)


def parse_crawl(data: Any, source: str = "<crawl>") -> CrawlConfig:
    """Validate already-loaded YAML data; raises ConfigError naming ``source`` and the field."""
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: a mapping of keys (name, source, ...) is expected at the top level")
    try:
        return CrawlConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(f"{source}: {_format_validation_error(exc)}") from None


def resolve_crawl_path(crawl: str | os.PathLike[str]) -> Path:
    """A path to a YAML file, or the name of one under crawls/."""
    path = Path(crawl)
    if path.suffix in (".yaml", ".yml") or path.exists():
        if not path.is_file():
            raise ConfigError(f"{crawl}: no such crawl definition file")
        return path
    for suffix in (".yaml", ".yml"):
        candidate = crawls_dir() / f"{crawl}{suffix}"
        if candidate.is_file():
            return candidate
    raise ConfigError(f"{crawl}: no crawl definition of that name in {crawls_dir()} (and no such file)")


def load_crawl(crawl: str | os.PathLike[str]) -> CrawlConfig:
    """Load and validate a crawl definition by name or path; one-line ConfigError on any problem."""
    path = resolve_crawl_path(crawl)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1} column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"{path}:{where}: invalid YAML: {problem}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read: {exc}") from None
    return parse_crawl(data, str(path))


def list_crawls() -> list[Path]:
    """Crawl definition files under crawls/."""
    folder = crawls_dir()
    if not folder.is_dir():
        return []
    return sorted([*folder.glob("*.yaml"), *folder.glob("*.yml")])


def crawl_json_schema() -> dict[str, Any]:
    """JSON Schema of a crawl definition, for editors (``webvec schema``).

    Draft-07 with ``definitions``: the YAML language server (VS Code, Neovim, JetBrains' plugin) fully
    supports draft-07 only, and pydantic's output otherwise uses nothing newer than ``$defs``.
    """
    schema = CrawlConfig.model_json_schema(ref_template="#/definitions/{model}")
    definitions = schema.pop("$defs", {})
    return {
        "$schema": "http://json-schema.org/draft-07/schema#",
        "title": "webvec crawl definition",
        **{k: v for k, v in schema.items() if k != "title"},
        "definitions": definitions,
    }


def starter_crawl(name: str, url: str, *, allow_private_networks: bool) -> str:
    """The commented crawl definition ``webvec init`` writes; ConfigError naming NAME or --url when bad.

    The text comes from ``ingest/templates/crawl.yaml``; the result is validated before it is returned,
    so what is written always loads.
    """
    for label, check, value in (("NAME", _check_name, name), ("--url", _check_page_url, url)):
        try:
            check(value)
        except ValueError as exc:
            raise ConfigError(f"{label}: {exc}") from None
    template = resources.files("ingest").joinpath("templates/crawl.yaml").read_text(encoding="utf-8")
    private = (
        "true  # set by webvec init: the start URL is a private or loopback address"
        if allow_private_networks
        else "false  # true is needed to crawl 127.0.0.1, 10.x, 192.168.x, ..."
    )
    # JSON strings are valid YAML double-quoted scalars: no URL character can break the file.
    text = (
        template.replace("{{schema_file}}", SCHEMA_FILE)
        .replace("{{name}}", name)
        .replace("{{url}}", json.dumps(url))
        .replace("{{allow_private_networks}}", private)
    )
    parse_crawl(yaml.safe_load(text), f"{name}.yaml")
    return text
