"""A generated site of any size, rendered on request on 127.0.0.1: no files written.

Page ``n`` (0 ≤ n < pages) is a function of ``(seed, n)`` alone: a title, headings and several
paragraphs of prose drawn from a vocabulary of a few thousand made-up words with Zipf-like
frequencies (so text looks like text to the extractor, the chunker and dedup, and no two pages
share their prose), and 5–20 links to other pages. Page 0 is ``/``; page ``n`` is ``/p/{n}.html``.
Every page links to its children ``2n+1`` and ``2n+2`` (a binary tree: a crawl from ``/`` reaches
all pages within ⌈log2(pages)⌉ clicks) and to its parent, plus random others. About 3 KB of HTML
per page. ``/robots.txt`` allows everything; responses carry a strong ETag and answer
``If-None-Match`` with 304, as :mod:`bench.serve` does.

Run: ``python -m bench.generated --pages 10000 [--seed 1] [--port 0]`` prints ``serving N pages on
URL`` and serves until interrupted. :func:`start_generated` starts it as a subprocess (so its work
and memory stay out of the process that measures a run) and returns the base URL.
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import random
import subprocess
import sys
from contextlib import suppress
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

VOCABULARY = 4000
_ONSETS = ["b", "br", "c", "ch", "d", "dr", "f", "g", "gr", "h", "k", "l", "m", "n", "p", "pl", "r",
           "s", "sh", "st", "t", "tr", "v", "w", "z"]  # fmt: skip
_NUCLEI = ["a", "e", "i", "o", "u", "ai", "ea", "ou", "io"]
_CODAS = ["", "", "n", "r", "s", "t", "l", "nd", "st", "m"]


def _vocabulary(seed: int) -> tuple[list[str], list[float]]:
    """``VOCABULARY`` distinct made-up words in rank order and their cumulative Zipf weights (1/rank)."""
    rng = random.Random(f"vocabulary-{seed}")
    words: list[str] = []
    seen: set[str] = set()
    while len(words) < VOCABULARY:
        syllables = rng.choice((1, 1, 2, 2, 2, 3, 3, 4))
        word = "".join(
            rng.choice(_ONSETS) + rng.choice(_NUCLEI) + rng.choice(_CODAS) for _ in range(syllables)
        )
        if word not in seen:
            seen.add(word)
            words.append(word)
    words.sort(key=len)  # stable: short words are the frequent ones, as in any language
    cumulative = list(itertools.accumulate(1 / rank for rank in range(1, VOCABULARY + 1)))
    return words, cumulative


class GeneratedSite:
    """Renders the pages of one generated site (deterministic in ``seed`` and ``pages``)."""

    def __init__(self, pages: int, seed: int = 1) -> None:
        if pages < 1:
            raise ValueError("a site has at least one page")
        self.pages = pages
        self.seed = seed
        self.words, self.cumulative = _vocabulary(seed)

    @staticmethod
    def path(n: int) -> str:
        """The URL path of page ``n``."""
        return "/" if n == 0 else f"/p/{n}.html"

    def _sentence(self, rng: random.Random) -> str:
        words = rng.choices(self.words, cum_weights=self.cumulative, k=rng.randint(8, 22))
        text = " ".join(words)
        if len(words) > 12 and rng.random() < 0.4:  # a comma now and then
            cut = text.find(" ", len(text) // 2)
            text = text[:cut] + "," + text[cut:]
        return text[0].upper() + text[1:] + rng.choice((".", ".", ".", ".", "?", "!"))

    def _phrase(self, rng: random.Random, lo: int, hi: int) -> str:
        words = rng.choices(self.words, cum_weights=self.cumulative, k=rng.randint(lo, hi))
        return " ".join(w.capitalize() for w in words)

    def links(self, n: int) -> list[int]:
        """The pages page ``n`` links to: its children and parent first, then random others."""
        rng = random.Random(f"links-{self.seed}-{n}")
        out = [c for c in (2 * n + 1, 2 * n + 2) if c < self.pages]
        if n:
            out.append((n - 1) // 2)
        want = rng.randint(5, 20)
        if self.pages > 1:
            for _ in range(want * 3):  # bounded tries: a tiny site has fewer distinct pages than wanted
                if len(out) >= want:
                    break
                other = rng.randrange(self.pages)
                if other != n and other not in out:
                    out.append(other)
        return out

    def render(self, n: int) -> bytes:
        """The HTML of page ``n``."""
        rng = random.Random(f"page-{self.seed}-{n}")
        title = f"{self._phrase(rng, 2, 5)} ({n})"
        sections = []
        for _ in range(rng.randint(3, 5)):
            paragraphs = "".join(
                "<p>" + " ".join(self._sentence(rng) for _ in range(rng.randint(3, 6))) + "</p>"
                for _ in range(rng.randint(1, 2))
            )
            sections.append(f"<h2>{self._phrase(rng, 1, 4)}</h2>{paragraphs}")
        related = "".join(
            f'<li><a href="{self.path(m)}">{self._phrase(rng, 1, 3)}</a></li>' for m in self.links(n)
        )
        return (
            '<!doctype html><html lang="en"><head><meta charset="utf-8">'
            f"<title>{title}</title></head><body>"
            '<header><a href="/">Generated Atlas</a></header>'
            f"<main><article><h1>{title}</h1>{''.join(sections)}</article>"
            f"<aside><h2>Related pages</h2><ul>{related}</ul></aside></main>"
            "<footer>Generated Atlas, a benchmark site. All text is made up.</footer></body></html>"
        ).encode()

    def page_number(self, path: str) -> int | None:
        """The page a URL path names, or None."""
        path = path.split("?", 1)[0].split("#", 1)[0]
        if path in ("/", "/index.html"):
            return 0
        if path.startswith("/p/") and path.endswith(".html"):
            digits = path[3:-5]
            if digits.isdigit() and not digits.startswith("0"):
                n = int(digits)
                return n if n < self.pages else None
        return None


ROBOTS = b"User-agent: *\nAllow: /\n"


class _Handler(BaseHTTPRequestHandler):
    site: GeneratedSite
    protocol_version = "HTTP/1.1"  # keep-alive: Content-Length is always sent

    def log_message(self, format: str, *args: Any) -> None:
        return

    def _send(self, status: HTTPStatus, body: bytes, content_type: str, etag: str | None = None) -> None:
        self.send_response(status)
        if etag:
            self.send_header("ETag", etag)
        if status == HTTPStatus.NOT_MODIFIED:
            self.end_headers()
            return
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def do_GET(self) -> None:
        if self.path.split("?", 1)[0] == "/robots.txt":
            self._send(HTTPStatus.OK, ROBOTS, "text/plain; charset=utf-8")
            return
        n = self.site.page_number(self.path)
        if n is None:
            self._send(HTTPStatus.NOT_FOUND, b"not found\n", "text/plain; charset=utf-8")
            return
        body = self.site.render(n)
        etag = '"' + hashlib.sha1(body).hexdigest() + '"'
        inm = self.headers.get("If-None-Match")
        if inm is not None and etag in [t.strip() for t in inm.split(",")]:
            self._send(HTTPStatus.NOT_MODIFIED, b"", "", etag)
            return
        self._send(HTTPStatus.OK, body, "text/html; charset=utf-8", etag)

    do_HEAD = do_GET


def make_server(pages: int, seed: int = 1, port: int = 0) -> ThreadingHTTPServer:
    """A (not yet serving) threaded server of a generated site on 127.0.0.1."""
    handler = type("Handler", (_Handler,), {"site": GeneratedSite(pages, seed)})
    httpd = ThreadingHTTPServer(("127.0.0.1", port), handler)
    httpd.daemon_threads = True
    return httpd


class GeneratedServer:
    """``python -m bench.generated`` running as a subprocess; ``url`` is its base URL."""

    def __init__(self, pages: int, seed: int = 1) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bench.generated", "--pages", str(pages), "--seed", str(seed)],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line.startswith("serving "):
            self.stop()
            raise RuntimeError(f"the generated site did not start: {line!r}")
        self.url = line.rsplit(" ", 1)[1].strip()

    def stop(self) -> None:
        """Stop the server process."""
        self.proc.terminate()
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def main() -> None:
    """Command line: serve a generated site until interrupted."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pages", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    httpd = make_server(args.pages, args.seed, args.port)
    host, port = httpd.server_address[:2]
    print(f"serving {args.pages} pages on http://{host!s}:{port}/", flush=True)
    with suppress(KeyboardInterrupt):
        httpd.serve_forever()


if __name__ == "__main__":
    main()
