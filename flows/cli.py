"""The ``webvec`` command: run, plan, query, eval, status, report, verify, snapshots, the crawl
definitions.

Exit codes: 0 success, 1 a run failed (summary still printed), 2 bad input (one line on stderr).

Without ``PREFECT_API_URL`` the runs happen right here, in this process: no Prefect server is started
for them (a temporary one costs seconds). With it, ``run`` and ``reembed`` go through the Prefect
flows, so they show up in the Prefect UI; deployments always do.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as package_version
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlsplit

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from typer.core import TyperArgument, TyperCommand, TyperGroup, TyperOption
from typer.models import CommandFunctionType

from ingest.config import CrawlConfig, crawls_dir, list_crawls, load_crawl, resolve_crawl_path
from ingest.errors import ConfigError, WebvecError

# Placeholders in --help: Typer shows the Python type (`--url <list[str]>`, `--json <bool>`); these show
# the option's name in capitals (`--url URL`), nothing for a flag, and click's type words otherwise.
_TYPE_WORDS = {"str": "TEXT", "int": "INTEGER", "float": "NUMBER", "Path": "PATH"}


def _readable(params: list[Any]) -> list[Any]:
    """Give every parameter without an explicit metavar a readable one (in place)."""
    for param in params:
        if param.metavar is not None:
            continue
        if isinstance(param, TyperArgument):
            param.metavar = param.name.upper()
        elif isinstance(param, TyperOption):
            if param.is_flag:
                param.metavar = ""
                continue
            long_names = [opt for opt in param.opts if opt.startswith("--")]
            annotation = param.type_descriptor.annotation
            type_name = annotation.__name__ if isinstance(annotation, type) else ""
            if long_names:
                param.metavar = long_names[0][2:].upper().replace("-", "_")
            else:
                param.metavar = _TYPE_WORDS.get(type_name, "VALUE")
    return params


class _ReadableCommand(TyperCommand):
    def get_params(self, ctx: Any) -> list[Any]:
        return _readable(super().get_params(ctx))


class _ReadableGroup(TyperGroup):
    def get_params(self, ctx: Any) -> list[Any]:
        return _readable(super().get_params(ctx))


class _App(typer.Typer):
    """typer.Typer whose commands show readable placeholders in --help (see ``_readable``)."""

    def command(self, *args: Any, **kwargs: Any) -> Callable[[CommandFunctionType], CommandFunctionType]:
        kwargs.setdefault("cls", _ReadableCommand)
        return super().command(*args, **kwargs)


app = _App(
    cls=_ReadableGroup,
    add_completion=False,
    no_args_is_help=True,
    help="Turn websites into a vector database.",
)


def _console(stderr: bool = False) -> Console:
    # When the output is not a terminal (a pipe, a file, CI), rich assumes 80 columns and would cut
    # tables and wrap error lines; nothing needs wrapping there.
    stream = sys.stderr if stderr else sys.stdout
    width = None if stream.isatty() or os.environ.get("COLUMNS") else 10_000
    return Console(stderr=stderr, width=width, soft_wrap=width is not None)


out = _console()
err = _console(stderr=True)


def _quiet(verbose: bool = False) -> None:
    # Set before Prefect or transformers are imported: their logs, banners and telemetry notices
    # would print into the progress display; a plain run shows the bars and the summary.
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("DO_NOT_TRACK", "1")
    # A failed run is reported by our own summary and one line; Prefect would add a traceback.
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "INFO" if verbose else "CRITICAL")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def _use_prefect() -> bool:
    return bool(os.environ.get("PREFECT_API_URL"))


def _fail(message: str, code: int = 2) -> typer.Exit:
    # escape(): messages quote regexes and paths, whose [...] Rich would take for markup.
    err.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    return typer.Exit(code)


def _code(exc: WebvecError) -> int:
    return 2 if isinstance(exc, ConfigError) else 1


def _load(crawl: str) -> CrawlConfig:
    try:
        return load_crawl(crawl)
    except ConfigError as exc:
        raise _fail(str(exc)) from None


def _preflight(crawl: str, cfg: CrawlConfig) -> None:
    """Configuration problems that need the environment (DNS, variables) stop a run before it starts:
    one line, exit 2; warnings are printed and the run goes on."""
    from ingest.preflight import check

    source = str(resolve_crawl_path(crawl))
    try:
        warnings = check(cfg, source)
    except ConfigError as exc:
        raise _fail(str(exc)) from None
    for warning in warnings:
        err.print(f"[yellow]warning:[/] {escape(warning.line(source))}", highlight=False, soft_wrap=True)


def _summary_table(summary: dict[str, Any]) -> Table:
    from ingest.summary import RunSummary

    fields = {k: v for k, v in summary.items() if k in RunSummary.__dataclass_fields__}
    view = RunSummary(**fields)
    table = Table(title=view.title(), show_header=False)
    table.add_column("what", style="bold")
    table.add_column("value", justify="right")
    for what, value in view.rows():
        table.add_row(what, value)
    return table


def _progress(disabled: bool) -> tuple[Any, Callable[[str, int, int], None]]:
    """Progress bars: pages fetched (as they come), texts embedded and pages written (of what is known
    so far: totals grow as the crawl finds pages, and the embedding bar moves per embedding batch)."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        SpinnerColumn,
        TextColumn,
        TimeElapsedColumn,
    )

    bars = Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err,
        disable=disabled,
        transient=True,
    )
    ids = {
        "fetched": bars.add_task("pages fetched", total=None),
        "embedded": bars.add_task("texts embedded", total=0),
        "written": bars.add_task("pages written", total=0),
    }

    def listener(event: str, advance: int, total: int) -> None:
        if event in ids:
            task = ids[event]
            if total:
                bars.update(task, total=(bars.tasks[task].total or 0) + total)
            if advance:
                bars.advance(task, advance)

    return bars, listener


def _print_summary(summary: dict[str, Any], as_json: bool, code: int) -> None:
    if as_json:
        print(json.dumps(summary, default=str))
    else:
        out.print(_summary_table(summary))
    if code:
        err.print(f"[bold red]run failed:[/] {summary['message']}", highlight=False)
        if summary.get("spider_log") and "spider log" not in summary["message"]:
            err.print(f"spider log: {summary['spider_log']}", highlight=False)


@app.command()
def run(
    crawl: Annotated[str, typer.Argument(help="Name under crawls/ or a YAML path.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as one JSON object.")] = False,
    url: Annotated[
        list[str] | None, typer.Option("--url", metavar="URL", help="Re-fetch only this URL (repeatable).")
    ] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Show Prefect's logs.")] = False,
) -> None:
    """Crawl a site and bring its vectors up to date; prints the run summary."""
    cfg = _load(crawl)  # bad input: one line, exit 2, before anything is written
    _preflight(crawl, cfg)
    _quiet(verbose)
    _ingest(crawl, as_json, urls=url or None, dry_run=False)


@app.command()
def plan(
    crawl: Annotated[str, typer.Argument(help="Name under crawls/ or a YAML path.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the plan as one JSON object.")] = False,
) -> None:
    """Dry run: what a run would fetch, embed, write and delete, and its estimated cost. Crawls (with
    conditional requests) but writes nothing: no vector, no ledger row, no file."""
    cfg = _load(crawl)
    _preflight(crawl, cfg)
    _quiet()
    _ingest(crawl, as_json, urls=None, dry_run=True)


def _shipper(crawl: str, dry_run: bool) -> AbstractContextManager[Any]:
    """Where a run's batches go without a Prefect API: this process (None), or with
    ``scale.task_runner: dask`` the crawl's Dask cluster; a plan always runs here."""
    if dry_run or load_crawl(resolve_crawl_path(crawl)).scale.task_runner != "dask":
        return nullcontext(None)
    from flows.scale import dask_shipper

    return dask_shipper(load_crawl(resolve_crawl_path(crawl)))


def _ingest(crawl: str, as_json: bool, *, urls: list[str] | None, dry_run: bool) -> None:
    """``run`` and ``plan``: the run in this process (or, for a run with PREFECT_API_URL set, the
    Prefect flow), progress bars, then the summary; exits 1 when it failed."""
    from ingest.bookkeeping import Hooks, RunFailed

    bars, listener = _progress(disabled=as_json or not err.is_terminal)
    code = 0
    try:
        with bars:
            if _use_prefect() and not dry_run:
                from flows import progress
                from flows.ingest import ingest_flow_for

                with progress.subscribed(listener):
                    summary = ingest_flow_for(crawl)(crawl, urls=urls)
            else:
                from ingest.run import run_ingest
                from spiders.process import crawl_source_for

                hooks = Hooks(listener)
                with _shipper(crawl, dry_run) as shipper:
                    launcher = shipper.launch_spider if shipper is not None else None  # spiders on Dask
                    summary = run_ingest(
                        crawl,
                        crawl_source_for(crawl, launcher=launcher),
                        urls=urls,
                        hooks=hooks,
                        dry_run=dry_run,
                        shipper=shipper,
                    ).to_dict()
    except RunFailed as exc:
        summary, code = exc.summary.to_dict(), 1
    except WebvecError as exc:
        raise _fail(str(exc), _code(exc)) from None
    _print_summary(summary, as_json, code)
    raise typer.Exit(code)


_MODE_HELP = "dense (vectors), lexical (full-text, BM25) or hybrid (both, fused); default: search.mode."


def _mode(value: str | None) -> Any:
    """``--mode`` checked (click's Choice would print a usage block, not our one line)."""
    if value is not None and value not in ("dense", "lexical", "hybrid"):
        raise _fail(f"--mode: {value!r} is not one of dense, lexical, hybrid")
    return value


@app.command()
def query(
    crawl: Annotated[str, typer.Argument(help="Name under crawls/ or a YAML path.")],
    text: Annotated[str, typer.Argument(help="The question or text to search for.")],
    k: Annotated[int, typer.Option("-k", min=1, max=1000, help="How many results.")] = 5,
    mode: Annotated[str | None, typer.Option("--mode", help=_MODE_HELP)] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print results as a JSON list.")] = False,
) -> None:
    """Best passages for a text, from the live version. Exit 1 when nothing was ingested yet."""
    cfg = _load(crawl)
    _quiet()
    from ingest.query import search

    try:
        hits = search(cfg, text, k, mode=_mode(mode))
    except WebvecError as exc:
        raise _fail(str(exc), _code(exc)) from None
    if as_json:
        print(json.dumps(hits, default=str))
        return
    for i, hit in enumerate(hits, 1):
        out.print(f"[bold]{i}. {hit['title'] or hit['url']}[/]  score {hit['score']:.3f}", highlight=False)
        out.print(f"   {hit['url']}" + (f"  §  {hit['heading']}" if hit["heading"] else ""), highlight=False)
        snippet = " ".join(hit["text"].split())
        out.print(f"   {snippet[:300]}{'…' if len(snippet) > 300 else ''}\n", highlight=False)


@app.command("eval")
def eval_cmd(
    crawl: Annotated[str, typer.Argument(help="Name under crawls/ or a YAML path.")],
    questions: Annotated[
        Path, typer.Argument(help="Questions with their acceptable URLs: .jsonl, .json, .tsv or .csv.")
    ],
    k: Annotated[int, typer.Option("-k", min=1, max=1000, help="Results per question.")] = 5,
    mode: Annotated[str | None, typer.Option("--mode", help=_MODE_HELP)] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as one JSON object.")] = False,
) -> None:
    """Retrieval quality on a question set: recall@1, recall@5, recall@k, MRR, and the misses."""
    cfg = _load(crawl)
    _quiet()
    from ingest.evaluate import evaluate, load_questions
    from ingest.query import search

    chosen = _mode(mode)
    try:
        asked = load_questions(questions)
        report = evaluate(
            asked,
            lambda q, n: [h["url"] for h in search(cfg, q, n, mode=chosen)],
            k,
        )
    except WebvecError as exc:
        raise _fail(str(exc), _code(exc)) from None
    data = {"crawl": cfg.name, "mode": chosen or cfg.search.mode, **report.to_dict()}
    if as_json:
        print(json.dumps(data, default=str))
        return
    table = Table(title=f"{cfg.name}: {data['mode']}, {report.questions} questions")
    figures = {"recall@1": report.recall_at_1, "recall@5": report.recall_at_5}
    figures |= {f"recall@{k}": report.recall_at_k, "MRR": report.mrr}  # @k replaces @5 when k is 5
    for name in figures:
        table.add_column(name, justify="right")
    table.add_row(*(f"{v:.3f}" for v in figures.values()))
    out.print(table)
    for miss in report.misses:
        out.print(f"[bold]miss:[/] {escape(miss['question'])}", highlight=False)
        out.print(f"   expected {', '.join(miss['expected'])}", highlight=False)
        for url in miss["got"]:
            out.print(f"   got      {url}", highlight=False)


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
def verify(
    crawl: Annotated[str, typer.Argument(help="Name under crawls/ or a YAML path.")],
    repair: Annotated[bool, typer.Option("--repair", help="Fix what is found.")] = False,
    delete_foreign: Annotated[
        bool,
        typer.Option("--delete-foreign", help="With --repair: also delete ids not made by webvec."),
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as one JSON object.")] = False,
) -> None:
    """Compare the ledger with the live vector store; exit 1 when they differ (and were not repaired).
    Records that do not follow webvec's id scheme are reported apart and kept unless --delete-foreign."""
    cfg = _load(crawl)
    _quiet()
    from ingest.ops import verify_crawl

    try:
        report = verify_crawl(cfg, repair=repair, delete_foreign=delete_foreign)
    except WebvecError as exc:
        raise _fail(str(exc), _code(exc)) from None
    _print_json_or_table(report, as_json, f"webvec verify: {cfg.name}")
    raise typer.Exit(0 if report["ok"] or report["repaired"] else 1)


@app.command()
def status(
    crawl: Annotated[str, typer.Argument(help="Name under crawls/ or a YAML path.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the status as one JSON object.")] = False,
) -> None:
    """Last runs, counts, the live version (the collection/namespace queries must use), what is due."""
    cfg = _load(crawl)
    from ingest.ops import status_crawl

    try:
        result = status_crawl(cfg)
    except WebvecError as exc:
        raise _fail(str(exc), 1) from None
    _print_json_or_table(result, as_json, f"webvec status: {cfg.name}")


@app.command()
def report(
    crawl: Annotated[str, typer.Argument(help="Name under crawls/ or a YAML path.")],
    run_id: Annotated[
        str | None, typer.Option("--run", metavar="RUN_ID", help="A run other than the last.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as one JSON object.")] = False,
) -> None:
    """What the last run did with each URL: new, changed, unchanged, not modified, skipped and why,
    failed and why, alias of which page, quarantined, deleted and why."""
    cfg = _load(crawl)
    from ingest.ops import report_crawl

    try:
        result = report_crawl(cfg, run_id)
    except WebvecError as exc:
        raise _fail(str(exc), 1) from None
    if as_json:
        print(json.dumps(result, default=str))
        return
    if "urls" not in result:
        out.print(result["message"])
        return
    table = Table(
        "url",
        "outcome",
        "why",
        title=f"webvec report: {cfg.name} run {result['run_id']} — {result['status']}",
    )
    for row in result["urls"]:
        why = " ".join(x for x in (row["kind"], row["detail"]) if x)
        table.add_row(row["url"], row["outcome"], why)
    out.print(table)
    out.print(", ".join(f"{k} ×{v}" for k, v in sorted(result["counts"].items())), highlight=False)


@app.command()
def reembed(
    crawl: Annotated[str, typer.Argument(help="Name under crawls/ or a YAML path.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as one JSON object.")] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Show Prefect's logs.")] = False,
) -> None:
    """Build a new version with the configured embedder from stored chunks (no crawl), then switch."""
    _load(crawl)
    _quiet(verbose)
    from ingest.bookkeeping import RunFailed

    code = 0
    try:
        if _use_prefect():
            from flows.reembed import reembed_flow

            summary = reembed_flow(crawl)
        else:
            from flows.reembed import reembed as do_reembed

            summary = do_reembed(crawl).to_dict()
    except RunFailed as exc:
        summary, code = exc.summary.to_dict(), 1
    except WebvecError as exc:
        raise _fail(str(exc), _code(exc)) from None
    _print_summary(summary, as_json, code)
    raise typer.Exit(code)


@app.command()
def rollback(crawl: Annotated[str, typer.Argument(help="Name under crawls/ or a YAML path.")]) -> None:
    """Make the previous version live again (pinned until `webvec reembed` or a matching config)."""
    cfg = _load(crawl)
    from ingest.bookkeeping import RunFailed, recorded_run
    from ingest.query import open_ledger
    from ingest.summary import RunSummary
    from ingest.versions import rollback as do_rollback

    try:
        db = open_ledger(cfg)
        with recorded_run(db, RunSummary(crawl=cfg.name, kind="rollback")) as _:
            old, new = do_rollback(cfg, db)
    except RunFailed as exc:
        cause = exc.__cause__
        raise _fail(str(exc), _code(cause) if isinstance(cause, WebvecError) else 1) from None
    except WebvecError as exc:
        raise _fail(str(exc), _code(exc)) from None
    live = db.live_version(cfg.name)
    target = live["target"] if live else "?"
    out.print(f"{cfg.name}: version {new} is live again (was {old}); queries use {target}", highlight=False)


@app.command()
def prune(
    crawl: Annotated[str, typer.Argument(help="Name under crawls/ or a YAML path.")],
    keep_previous: Annotated[
        bool, typer.Option("--keep-previous", help="Keep the newest previous version.")
    ] = False,
) -> None:
    """Delete the collections/indexes of versions that are not live."""
    cfg = _load(crawl)
    from ingest.bookkeeping import RunFailed, recorded_run
    from ingest.query import open_ledger
    from ingest.summary import RunSummary
    from ingest.versions import prune as do_prune

    try:
        db = open_ledger(cfg)
        with recorded_run(db, RunSummary(crawl=cfg.name, kind="prune")) as _:
            dropped = do_prune(cfg, db, keep_previous=keep_previous)
    except (RunFailed, WebvecError) as exc:
        raise _fail(str(exc), 1) from None
    out.print(f"{cfg.name}: dropped versions {dropped}" if dropped else f"{cfg.name}: nothing to prune")


def _needed(value: str | None, option: str) -> str:
    # Required options are checked here, not by click: its usage box is several lines.
    if not value:
        raise _fail(f"{option} is required: a folder or s3://bucket/prefix")
    return value


@app.command("export")
def export_cmd(
    crawl: Annotated[str, typer.Argument(help="Name under crawls/ or a YAML path.")],
    fmt: Annotated[str, typer.Option("--format", help="faiss, annoy, parquet or jsonl.")] = "parquet",
    to: Annotated[str | None, typer.Option("--to", help="A folder or s3://bucket/prefix.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the manifest as one JSON object.")] = False,
) -> None:
    """Write the live version (ids, vectors, text, metadata) as a new snapshot TO/CRAWL/ID/, with a
    manifest (model, dimension, metric, count, checksums). Earlier snapshots are kept."""
    cfg = _load(crawl)
    _quiet()
    from ingest.snapshots import export_snapshot

    try:
        result = export_snapshot(cfg, fmt, _needed(to, "--to"))
    except WebvecError as exc:
        raise _fail(str(exc), _code(exc)) from None
    if as_json:
        print(json.dumps(result, default=str))
        return
    out.print(
        f"{cfg.name}: snapshot {result['snapshot_id']} ({fmt}, {result['count']} vectors of version "
        f"{result['version']}) written to {result['location']}",
        highlight=False,
        markup=False,
    )


@app.command("import")
def import_cmd(
    crawl: Annotated[str, typer.Argument(help="Name under crawls/ or a YAML path.")],
    source: Annotated[str | None, typer.Option("--from", help="A folder or s3://bucket/prefix.")] = None,
    snapshot: Annotated[
        str | None, typer.Option("--snapshot", metavar="ID", help="A snapshot other than the newest.")
    ] = None,
    replace: Annotated[
        bool,
        typer.Option("--replace", help="Overwrite a store that holds vectors: keep only the snapshot's."),
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as one JSON object.")] = False,
) -> None:
    """Load a parquet or jsonl snapshot into the crawl's configured store (any kind), embedding nothing;
    the embedding cache is filled too, so later runs embed nothing the snapshot had."""
    cfg = _load(crawl)
    _quiet()
    from ingest.bookkeeping import RunFailed
    from ingest.snapshots import import_snapshot

    try:
        result = import_snapshot(cfg, _needed(source, "--from"), snapshot, replace=replace)
    except RunFailed as exc:
        raise _fail(str(exc), 1) from None
    except WebvecError as exc:
        raise _fail(str(exc), _code(exc)) from None
    if as_json:
        print(json.dumps(result, default=str))
        return
    out.print(
        f"{cfg.name}: snapshot {result['snapshot']} imported into {result['target']}: "
        f"{result['vectors_written']} vectors written, {result['vectors_deleted']} deleted, 0 texts embedded",
        highlight=False,
        markup=False,
    )


@app.command()
def snapshots(
    crawl: Annotated[str, typer.Argument(help="Name under crawls/ or a YAML path.")],
    at: Annotated[str | None, typer.Option("--at", help="A folder or s3://bucket/prefix.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the manifests as a JSON list.")] = False,
) -> None:
    """The snapshots of a crawl at a folder or S3 prefix, oldest first."""
    cfg = _load(crawl)
    from ingest.snapshots import list_snapshots

    try:
        found = list_snapshots(cfg, _needed(at, "--at"))
    except WebvecError as exc:
        raise _fail(str(exc), _code(exc)) from None
    if as_json:
        print(json.dumps(found, default=str))
        return
    table = Table("snapshot", "format", "version", "model", "vectors", "created", title=f"{cfg.name} at {at}")
    for m in found:
        model = f"{m.get('model', '?')} ({m['model_key']})"
        table.add_row(
            m["snapshot_id"], m["format"], str(m.get("version")), model, str(m["count"]), m.get("created_at")
        )
    out.print(table)


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
    """Check a crawl definition (and its private addresses, locations, environment variables);
    exit 2 with one line naming the problem, print a line for each warning."""
    cfg = _load(crawl)
    from ingest.preflight import check

    source = str(resolve_crawl_path(crawl))
    try:
        warnings = check(cfg, source)
    except ConfigError as exc:
        raise _fail(str(exc)) from None
    for warning in warnings:
        err.print(f"[yellow]warning:[/] {escape(warning.line(source))}", highlight=False, soft_wrap=True)
    out.print(f"ok: {cfg.name} ({cfg.describe_source()}, {cfg.embedder.kind} → {cfg.store.kind})")


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
            ", ".join(cfg.origins),
            f"{cfg.embedder.kind} → {cfg.store.kind}",
            cfg.schedule or "",
        )
    out.print(table)


@app.command()
def init(
    name: Annotated[str, typer.Argument(help="Name of the crawl: 3-63 of a-z, 0-9, '-', '_'.")],
    url: Annotated[str, typer.Option("--url", help="Start URL of the site (http or https).")],
    directory: Annotated[
        Path | None,
        typer.Option("--dir", help="Folder to write NAME.yaml in; default: crawls/ (or $WEBVEC_CRAWLS_DIR)."),
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Overwrite an existing file.")] = False,
) -> None:
    """Write a commented starter crawl definition (every common key, defaults shown) to crawls/NAME.yaml."""
    from ingest.config import SCHEMA_FILE, crawl_json_schema, starter_crawl
    from ingest.urls import is_private_host

    folder = directory or crawls_dir()
    target = folder / f"{name}.yaml"
    try:
        host = (urlsplit(url).hostname or "") if url.startswith(("http://", "https://")) else ""
        text = starter_crawl(name, url, allow_private_networks=bool(host) and is_private_host(host))
    except ConfigError as exc:
        raise _fail(str(exc)) from None
    if target.exists() and not force:
        raise _fail(f"{target} exists; use --force to overwrite it")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        # Editors read the schema through the modeline on the first line of the crawl definition.
        _write_atomically(folder / SCHEMA_FILE, json.dumps(crawl_json_schema(), indent=2) + "\n")
        _write_atomically(target, text)
    except OSError as exc:
        raise _fail(f"{target}: cannot write: {exc}") from None
    out.print(f"wrote {target}; check it with: webvec validate {target}", highlight=False, markup=False)


@app.command()
def distill(
    model: Annotated[
        str,
        typer.Option(
            "--model", help="The sentence-transformers model: a name the local embedder knows, or a folder."
        ),
    ] = "all-MiniLM-L6-v2",
    dimensions: Annotated[
        int, typer.Option("--dimensions", min=8, max=1024, help="Dimensions of the static vectors (8-1024).")
    ] = 256,
    target: Annotated[
        str | None,
        typer.Option(
            "--out",
            help="Folder to write (relative: under $WEBVEC_HOME); default models/m2v-MODEL-DIMENSIONS.",
        ),
    ] = None,
) -> None:
    """Distil the local model into a static model2vec model (offline; minutes on a CPU), for
    embedder: {kind: static, vectors: model2vec, path: FOLDER}."""
    import time

    from ingest.config import under_home
    from ingest.embedders.model2vec import distill_model

    name = target or f"models/m2v-{Path(model).name}-{dimensions}"
    folder = under_home(name)
    started = time.perf_counter()
    try:
        distill_model(model, dimensions, folder)
    except ConfigError as exc:
        raise _fail(str(exc)) from None
    except OSError as exc:  # e.g. a folder that is not a sentence-transformers model
        raise _fail(f"--model {model}: cannot distil it: {exc}") from None
    seconds = time.perf_counter() - started
    out.print(
        f"distilled {model} into {folder} in {seconds:.0f}s; use it with:", highlight=False, markup=False
    )
    out.print(f"embedder: {{kind: static, vectors: model2vec, path: {name}}}", highlight=False, markup=False)


def _write_atomically(path: Path, text: str) -> None:
    """Write a whole file or nothing: a temporary file next to it, then one rename."""
    partial = path.with_name(f".{path.name}.partial")
    partial.write_text(text, encoding="utf-8")
    partial.replace(path)


@app.command()
def schema() -> None:
    """Print the JSON Schema of crawl definitions (for editor completion and checks)."""
    from ingest.config import crawl_json_schema

    print(json.dumps(crawl_json_schema(), indent=2))


def _version(value: bool) -> None:
    if value:
        try:
            print(f"webvec {package_version('webvec')}")
        except PackageNotFoundError:  # run from a source tree that was never installed
            print("webvec (version unknown: not installed as a package)")
        raise typer.Exit(0)


@app.callback()
def _main(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit."),
    ] = False,
) -> None:
    """Turn websites into a vector database."""


def main() -> None:
    """Console-script entry point."""
    try:
        app()
    except KeyboardInterrupt:
        err.print("interrupted")
        sys.exit(130)


if __name__ == "__main__":
    main()
