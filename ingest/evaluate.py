"""Retrieval quality as numbers: recall@1, recall@5, recall@k and MRR over a set of questions.

A question file lists questions with the pages that answer them (``webvec eval CRAWL QUESTIONS``):

- JSONL, one object a line, or JSON, one list of objects: ``{"question": "...", "urls": [...]}``
  (``expected``, ``expected_path`` or ``answers`` are read as ``urls`` too; a string is one URL);
- TSV or CSV: ``question`` then one column of URLs, several separated by ``|``; a first row whose
  first cell is ``question`` is a header.

Each acceptable URL is a full URL or a path relative to the site, and may hold globs (``*``, ``?``,
``[...]``): ``library/os.html``, ``tutorial/*``, ``https://docs.python.org/3/library/os.*``. A path
matches a result whose URL path ends with it at a ``/`` (the crawl may be served under a prefix);
fragments are ignored.

Pure: :func:`evaluate` takes the search as a function, so it runs against any crawl, mode or
embedder, and in tests without one.
"""

from __future__ import annotations

import csv
import fnmatch
import io
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from ingest.errors import ConfigError

URL_KEYS = ("urls", "expected", "expected_path", "answers")
# The most questions one file may hold: far beyond any hand-written set; a bigger file is a mistake.
MAX_QUESTIONS = 100_000

Search = Callable[[str, int], Sequence[str]]  # (question, k) → result URLs, best first


@dataclass(frozen=True)
class Question:
    """One question and the URLs (or globs) of the pages that answer it."""

    text: str
    urls: tuple[str, ...]


@dataclass
class Report:
    """What :func:`evaluate` measured; ``ranks`` holds each question's first matching rank (0: none
    in the top k)."""

    k: int
    questions: int
    recall_at_1: float
    recall_at_5: float
    recall_at_k: float
    mrr: float
    ranks: list[int] = field(default_factory=list)
    misses: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (``--json``)."""
        return {
            "k": self.k,
            "questions": self.questions,
            "recall_at_1": self.recall_at_1,
            "recall_at_5": self.recall_at_5,
            "recall_at_k": self.recall_at_k,
            "mrr": self.mrr,
            "misses": self.misses,
        }


def _pattern_matches(pattern: str, url: str) -> bool:
    pattern = pattern.split("#", 1)[0].strip()
    url = url.split("#", 1)[0]
    if urlsplit(pattern).scheme:
        return fnmatch.fnmatchcase(url, pattern)
    path = urlsplit(url).path
    pattern = pattern.lstrip("/")
    return fnmatch.fnmatchcase(path.lstrip("/"), pattern) or fnmatch.fnmatchcase(path, "*/" + pattern)


def matches(question: Question, url: str) -> bool:
    """Whether ``url`` is one of the question's acceptable pages."""
    return any(_pattern_matches(p, url) for p in question.urls)


def _question(item: Any, where: str) -> Question:
    if not isinstance(item, dict):
        raise ConfigError(f"{where}: expected an object with question and urls, got {type(item).__name__}")
    text = item.get("question")
    if not isinstance(text, str) or not text.strip():
        raise ConfigError(f"{where}: no question (a non-empty string under 'question')")
    raw = next((item[key] for key in URL_KEYS if key in item), None)
    urls = [raw] if isinstance(raw, str) else raw
    if not isinstance(urls, list) or not urls or not all(isinstance(u, str) and u.strip() for u in urls):
        raise ConfigError(f"{where}: no acceptable URLs (a string or a list of strings under 'urls')")
    return Question(text.strip(), tuple(u.strip() for u in urls))


def parse_questions(text: str, name: str) -> list[Question]:
    """Questions from the text of a question file; ``name``'s extension says the format
    (.jsonl, .json, .tsv, .csv). ConfigError, naming the line, for anything else."""
    suffix = Path(name).suffix.lower()
    out: list[Question] = []
    if suffix == ".jsonl":
        for n, line in enumerate(text.splitlines(), 1):
            if line.strip():
                try:
                    item = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise ConfigError(f"{name}:{n}: not JSON ({exc.msg})") from None
                out.append(_question(item, f"{name}:{n}"))
    elif suffix == ".json":
        try:
            items = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{name}:{exc.lineno}: not JSON ({exc.msg})") from None
        if not isinstance(items, list):
            raise ConfigError(f"{name}: expected a JSON list of questions")
        out = [_question(item, f"{name}: item {i}") for i, item in enumerate(items, 1)]
    elif suffix in (".tsv", ".csv"):
        rows = csv.reader(io.StringIO(text), delimiter="\t" if suffix == ".tsv" else ",")
        for n, row in enumerate(rows, 1):
            cells = [c.strip() for c in row]
            if not any(cells) or (n == 1 and cells[0].lower() == "question"):
                continue
            urls = [u.strip() for c in cells[1:] for u in c.split("|") if u.strip()]
            out.append(_question({"question": cells[0], "urls": urls}, f"{name}:{n}"))
    else:
        raise ConfigError(
            f"{name}: unknown question file type {suffix or '(none)'}: use .jsonl, .json, .tsv or .csv"
        )
    if not out:
        raise ConfigError(f"{name}: no questions")
    if len(out) > MAX_QUESTIONS:
        raise ConfigError(f"{name}: {len(out)} questions, more than {MAX_QUESTIONS}")
    return out


def load_questions(path: Path) -> list[Question]:
    """Questions of a question file; ConfigError (one line) when it cannot be read or parsed."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read the question file ({exc})") from None
    return parse_questions(text, str(path))


def evaluate(questions: Sequence[Question], search: Search, k: int = 5) -> Report:
    """Ask every question (the top ``max(k, 5)`` results) and measure: recall@1, @5 and @k (the share
    of questions with an acceptable page at rank ≤ 1, 5, k) and MRR (mean of 1/rank within the top k,
    0 when none). ``misses`` are the questions with no acceptable page in the top k, with what came
    back instead."""
    if k < 1:
        raise ConfigError("k must be at least 1")
    ranks: list[int] = []
    misses: list[dict[str, Any]] = []
    for q in questions:
        got = list(search(q.text, max(k, 5)))
        rank = next((i for i, url in enumerate(got, 1) if matches(q, url)), 0)
        ranks.append(rank)
        if not rank or rank > k:
            misses.append({"question": q.text, "expected": list(q.urls), "got": got[:k]})
    n = len(questions) or 1

    def share(limit: int) -> float:
        return round(sum(1 for r in ranks if 0 < r <= limit) / n, 4)

    mrr = round(sum(1 / r for r in ranks if 0 < r <= k) / n, 4)
    return Report(k, len(questions), share(1), share(5), share(k), mrr, ranks, misses)
