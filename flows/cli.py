"""The ``webvec`` command: run, query, validate and list crawl definitions.

Exit codes: 0 success, 1 a run failed (summary still printed), 2 bad input (one line on stderr).
"""

from __future__ import annotations

import json
import os
import sys
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from ingest.config import CrawlConfig, crawls_dir, list_crawls, load_crawl
from ingest.errors import ConfigError, WebvecError

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Turn websites into a vector database.")
out = Console()
err = Console(stderr=True)


def _quiet_prefect(verbose: bool) -> None:
    # Set before Prefect is imported: its logs and the temporary-server banner go to stderr, but a
    # plain run should show the progress bars and the summary, not Prefect's chatter.
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    # A failed run is reported by our own summary and one line; Prefect would add a traceback.
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "INFO" if verbose else "CRITICAL")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def _fail(message: str, code: int = 2) -> typer.Exit:
    err.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    return typer.Exit(code)


def _load(crawl: str) -> CrawlConfig:
    try:
        return load_crawl(crawl)
    except ConfigError as exc:
        raise _fail(str(exc)) from None


def _summary_table(summary: dict[str, Any]) -> Table:
    table = Table(
        title=f"webvec {summary['kind']}: {summary['crawl']} — {summary['status']}", show_header=False
    )
    table.add_column("what", style="bold")
    table.add_column("value", justify="right")
    rows = [
        ("pages fetched", summary["pages_fetched"]),
        ("pages not modified (304)", summary["pages_not_modified"]),
        (
            "pages new / changed / unchanged",
            f"{summary['pages_new']} / {summary['pages_changed']} / {summary['pages_unchanged']}",
        ),
        ("pages gone / stale deleted", f"{summary['pages_gone']} / {summary['pages_stale_deleted']}"),
        ("pages skipped", summary["pages_skipped"]),
        ("chunks / tokens", f"{summary['chunks']} / {summary['tokens']}"),
        ("texts embedded / cache hits", f"{summary['texts_embedded']} / {summary['cache_hits']}"),
        ("vectors written / deleted", f"{summary['vectors_written']} / {summary['vectors_deleted']}"),
        ("estimated cost", f"${summary['estimated_cost_usd']:.4f}"),
        ("seconds", f"{summary['seconds']:.1f}"),
    ]
    rows += [(f"  {stage}", f"{secs:.2f}s") for stage, secs in summary["stage_seconds"].items()]
    for what, value in rows:
        table.add_row(what, str(value))
    if summary["skip_reasons"]:
        table.add_row("skip reasons", ", ".join(f"{k} ×{v}" for k, v in summary["skip_reasons"].items()))
    if summary["message"]:
        table.add_row("message", summary["message"])
    table.add_row("target", summary["target"])
    return table


@app.command()
def run(
    crawl: Annotated[str, typer.Argument(help="Name under crawls/ or a YAML path.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as one JSON object.")] = False,
    url: Annotated[
        list[str] | None, typer.Option("--url", help="Re-fetch only this URL (repeatable).")
    ] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Show Prefect's logs.")] = False,
) -> None:
    """Crawl a site and bring its vectors up to date; prints the run summary."""
    _load(crawl)  # bad input: one line, exit 2, before anything is written
    _quiet_prefect(verbose)
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        SpinnerColumn,
        TextColumn,
        TimeElapsedColumn,
    )

    from flows import progress
    from flows.ingest import RunFailed, ingest_flow

    bars = Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err,
        disable=as_json or not err.is_terminal,
        transient=True,
    )
    ids = {
        "fetched": bars.add_task("pages fetched", total=None),
        "chunked": bars.add_task("chunks made", total=None),
        "embedded": bars.add_task("texts embedded", total=None),
        "written": bars.add_task("pages written", total=None),
    }

    def listener(event: str, amount: int) -> None:
        if event in ids:
            bars.advance(ids[event], amount)

    progress.subscribe(listener)
    code = 0
    try:
        with bars:
            summary = ingest_flow(crawl, urls=url or None)
    except RunFailed as exc:
        summary, code = exc.summary.to_dict(), 1
    except ConfigError as exc:
        raise _fail(str(exc)) from None
    except WebvecError as exc:
        raise _fail(str(exc), 1) from None
    finally:
        progress.unsubscribe(listener)
    if as_json:
        print(json.dumps(summary, default=str))
    else:
        out.print(_summary_table(summary))
    if code:
        err.print(f"[bold red]run failed:[/] {summary['message']}", highlight=False)
    raise typer.Exit(code)


@app.command()
def query(
    crawl: Annotated[str, typer.Argument(help="Name under crawls/ or a YAML path.")],
    text: Annotated[str, typer.Argument(help="The question or text to search for.")],
    k: Annotated[int, typer.Option("-k", min=1, max=1000, help="How many results.")] = 5,
    as_json: Annotated[bool, typer.Option("--json", help="Print results as a JSON list.")] = False,
) -> None:
    """Nearest chunks to a text."""
    cfg = _load(crawl)
    _quiet_prefect(False)
    from ingest.query import search

    try:
        hits = search(cfg, text, k)
    except ConfigError as exc:
        raise _fail(str(exc)) from None
    except WebvecError as exc:
        raise _fail(str(exc), 1) from None
    if as_json:
        print(json.dumps(hits, default=str))
        return
    if not hits:
        out.print("no results")
        return
    for i, hit in enumerate(hits, 1):
        out.print(f"[bold]{i}. {hit['title'] or hit['url']}[/]  score {hit['score']:.3f}", highlight=False)
        out.print(f"   {hit['url']}" + (f"  §  {hit['heading']}" if hit["heading"] else ""), highlight=False)
        snippet = " ".join(hit["text"].split())
        out.print(f"   {snippet[:300]}{'…' if len(snippet) > 300 else ''}\n", highlight=False)


def _print_json_or_table(data: dict[str, Any], as_json: bool, title: str) -> None:
    if as_json:
        print(json.dumps(data, default=str))
        return
    table = Table(title=title, show_header=False)
    table.add_column("what", style="bold")
    table.add_column("value")
    for key, value in data.items():
        if isinstance(value, list) and value and isinstance(value[0], dict):
            value = "\n".join(
                ", ".join(f"{k}={v}" for k, v in item.items() if v not in (None, "")) for item in value
            )
        elif isinstance(value, dict):
            value = ", ".join(f"{k}={v}" for k, v in value.items())
        table.add_row(key.replace("_", " "), str(value))
    out.print(table)


@app.command()
def plan(
    crawl: Annotated[str, typer.Argument(help="Name under crawls/ or a YAML path.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the plan as one JSON object.")] = False,
) -> None:
    """Dry run: what a run would embed, write and delete, and its estimated cost. Writes nothing."""
    cfg = _load(crawl)
    _quiet_prefect(False)
    from flows.ops import plan_crawl

    try:
        result = plan_crawl(crawl, cfg)
    except WebvecError as exc:
        raise _fail(str(exc), 2 if isinstance(exc, ConfigError) else 1) from None
    _print_json_or_table(result, as_json, f"webvec plan: {cfg.name} (dry run, nothing written)")


@app.command()
def verify(
    crawl: Annotated[str, typer.Argument(help="Name under crawls/ or a YAML path.")],
    repair: Annotated[bool, typer.Option("--repair", help="Fix what is found.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as one JSON object.")] = False,
) -> None:
    """Compare the ledger with the live vector store; exit 1 when they differ (and were not repaired)."""
    cfg = _load(crawl)
    _quiet_prefect(False)
    from flows.ops import verify_crawl

    try:
        report = verify_crawl(cfg, repair=repair)
    except WebvecError as exc:
        raise _fail(str(exc), 2 if isinstance(exc, ConfigError) else 1) from None
    _print_json_or_table(report, as_json, f"webvec verify: {cfg.name}")
    raise typer.Exit(0 if report["ok"] or report["repaired"] else 1)


@app.command()
def status(
    crawl: Annotated[str, typer.Argument(help="Name under crawls/ or a YAML path.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the status as one JSON object.")] = False,
) -> None:
    """Last runs, counts, the live version (the collection/namespace queries must use), what is due."""
    cfg = _load(crawl)
    from flows.ops import status_crawl

    try:
        result = status_crawl(cfg)
    except WebvecError as exc:
        raise _fail(str(exc), 1) from None
    _print_json_or_table(result, as_json, f"webvec status: {cfg.name}")


@app.command()
def reembed(
    crawl: Annotated[str, typer.Argument(help="Name under crawls/ or a YAML path.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as one JSON object.")] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Show Prefect's logs.")] = False,
) -> None:
    """Build a new version with the configured embedder from stored chunks (no crawl), then switch."""
    _load(crawl)
    _quiet_prefect(verbose)
    from flows.ingest import RunFailed
    from flows.reembed import reembed_flow

    code = 0
    try:
        summary = reembed_flow(crawl)
    except RunFailed as exc:
        summary, code = exc.summary.to_dict(), 1
    except WebvecError as exc:
        raise _fail(str(exc), 2 if isinstance(exc, ConfigError) else 1) from None
    if as_json:
        print(json.dumps(summary, default=str))
    else:
        out.print(_summary_table(summary))
    raise typer.Exit(code)


@app.command()
def rollback(crawl: Annotated[str, typer.Argument(help="Name under crawls/ or a YAML path.")]) -> None:
    """Make the previous version live again (pinned until `webvec reembed` or a matching config)."""
    cfg = _load(crawl)
    from ingest.state import StateDB
    from ingest.versions import rollback as do_rollback

    db = StateDB(cfg.state_url())
    try:
        with db.locked_run(cfg.name, "rollback") as result:
            old, new = do_rollback(cfg, db)
            result.update({"from": old, "to": new})
    except WebvecError as exc:
        raise _fail(str(exc), 2 if isinstance(exc, ConfigError) else 1) from None
    live = db.live_version(cfg.name) or {}
    out.print(f"{cfg.name}: version {new} is live again (was {old}); queries use {live.get('target')}")


@app.command()
def prune(
    crawl: Annotated[str, typer.Argument(help="Name under crawls/ or a YAML path.")],
    keep_previous: Annotated[
        bool, typer.Option("--keep-previous", help="Keep the newest previous version.")
    ] = False,
) -> None:
    """Delete the collections/indexes of versions that are not live."""
    cfg = _load(crawl)
    from ingest.state import StateDB
    from ingest.versions import prune as do_prune

    db = StateDB(cfg.state_url())
    try:
        with db.locked_run(cfg.name, "prune") as result:
            dropped = do_prune(cfg, db, keep_previous=keep_previous)
            result["dropped"] = dropped
    except WebvecError as exc:
        raise _fail(str(exc), 1) from None
    out.print(f"{cfg.name}: dropped versions {dropped}" if dropped else f"{cfg.name}: nothing to prune")


@app.command()
def deployments(
    write: Annotated[
        bool, typer.Option("--write", help="Write prefect.yaml instead of printing it.")
    ] = False,
    check: Annotated[
        bool, typer.Option("--check", help="Exit 1 if prefect.yaml differs from crawls/.")
    ] = False,
) -> None:
    """Render prefect.yaml from crawls/*.yaml: ingest/<crawl> and reembed/<crawl> on their crons,
    backfill/<crawl> on demand, all on the `webvec` process work pool with concurrency 1."""
    from flows.deployments import main as render_main

    args = [*(["--write"] if write else []), *(["--check"] if check else [])]
    try:
        code = render_main(args)
    except ConfigError as exc:
        raise _fail(str(exc)) from None
    raise typer.Exit(code)


@app.command()
def validate(crawl: Annotated[str, typer.Argument(help="Name under crawls/ or a YAML path.")]) -> None:
    """Check a crawl definition; exit 2 with one line naming the problem."""
    cfg = _load(crawl)
    out.print(
        f"ok: {cfg.name} ({len(cfg.source.start_urls)} start URL(s), {cfg.embedder.kind} → {cfg.store.kind})"
    )


@app.command("list")
def list_cmd() -> None:
    """The crawl definitions found under crawls/ (or $WEBVEC_CRAWLS_DIR)."""
    files = list_crawls()
    if not files:
        out.print(f"no crawl definitions in {crawls_dir()}")
        return
    table = Table("name", "file", "start URLs", "embedder → store", "schedule")
    for path in files:
        try:
            cfg = load_crawl(path)
        except ConfigError as exc:
            table.add_row("[red]invalid[/]", str(path.name), str(exc).split(": ", 1)[-1], "", "")
            continue
        table.add_row(
            cfg.name,
            path.name,
            ", ".join(cfg.source.start_urls),
            f"{cfg.embedder.kind} → {cfg.store.kind}",
            cfg.schedule or "",
        )
    out.print(table)


def main() -> None:
    """Console-script entry point."""
    try:
        app()
    except KeyboardInterrupt:
        err.print("interrupted")
        sys.exit(130)


if __name__ == "__main__":
    main()
