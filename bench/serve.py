"""A small static HTTP server for demos, benchmarks and tests (127.0.0.1 only).

It adds what real sites send and ``http.server`` lacks: a strong ETag per file and answers 304 to
If-None-Match / If-Modified-Since, so incremental re-crawls can be exercised. ``overrides`` lets
tests answer chosen paths with another status (404, 410, 500) without touching the files.
In ``robots.txt`` and ``*.xml`` files the placeholder ``http://__BASE__/`` is replaced by the server's
own base URL, so a sample site's sitemap works on whatever port it is served.

Run: ``python -m bench.serve FOLDER [--port 8000]``.
"""

from __future__ import annotations

import argparse
import email.utils
import hashlib
import json
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from functools import partial
from http import HTTPStatus
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any


class _Handler(SimpleHTTPRequestHandler):
    overrides: dict[str, int]
    counter: dict[str, int]

    def log_message(self, format: str, *args: Any) -> None:  # quiet: tests read their own output
        return

    def _count(self) -> None:
        with _LOCK:
            self.counter[self.path] = self.counter.get(self.path, 0) + 1

    def send_head(self):  # type: ignore[no-untyped-def]
        self._count()
        path_only = self.path.split("?", 1)[0]
        status = self.overrides.get(path_only)
        if status is not None:
            self.send_error(status)
            return None
        fs_path = Path(self.translate_path(self.path))
        if fs_path.is_dir():
            index = fs_path / "index.html"
            if not index.is_file():
                return super().send_head()
            fs_path = index
            if not path_only.endswith("/"):
                return super().send_head()  # lets http.server send its 301 to the slash form
        if not fs_path.is_file():
            return super().send_head()
        data = fs_path.read_bytes()
        if fs_path.suffix == ".xml" or fs_path.name == "robots.txt":
            host, port = self.server.server_address[:2]
            data = data.replace(b"http://__BASE__/", f"http://{host}:{port}/".encode())
        etag = '"' + hashlib.sha1(data).hexdigest() + '"'
        mtime = fs_path.stat().st_mtime
        last_modified = email.utils.formatdate(mtime, usegmt=True)
        inm = self.headers.get("If-None-Match")
        ims = self.headers.get("If-Modified-Since")
        not_modified = False
        if inm is not None:
            not_modified = etag in [t.strip() for t in inm.split(",")]
        elif ims is not None:
            try:
                since = email.utils.parsedate_to_datetime(ims).timestamp()
                not_modified = int(mtime) <= int(since)
            except (TypeError, ValueError):
                not_modified = False
        if not_modified:
            self.send_response(HTTPStatus.NOT_MODIFIED)
            self.send_header("ETag", etag)
            self.send_header("Last-Modified", last_modified)
            self.end_headers()
            return None
        self.send_response(HTTPStatus.OK)
        self.send_header("Content-Type", self.guess_type(str(fs_path)))
        self.send_header("Content-Length", str(len(data)))
        self.send_header("ETag", etag)
        self.send_header("Last-Modified", last_modified)
        self.end_headers()
        import io

        return io.BytesIO(data)


_LOCK = threading.Lock()


class StaticServer:
    """A running server: ``url`` is its base (``http://127.0.0.1:PORT/``)."""

    def __init__(self, root: str | os.PathLike[str], port: int = 0) -> None:
        self.root = Path(root).resolve()
        self.overrides: dict[str, int] = {}
        self.requests: dict[str, int] = {}
        handler = type("Handler", (_Handler,), {"overrides": self.overrides, "counter": self.requests})
        self.httpd = ThreadingHTTPServer(("127.0.0.1", port), partial(handler, directory=str(self.root)))
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}/"
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def start(self) -> StaticServer:
        """Serve in a background thread."""
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the socket."""
        self.httpd.shutdown()
        self.httpd.server_close()


@contextmanager
def serve(root: str | os.PathLike[str], port: int = 0) -> Iterator[StaticServer]:
    """Serve ``root`` on 127.0.0.1 for the duration of the block."""
    server = StaticServer(root, port).start()
    try:
        yield server
    finally:
        server.stop()


class StandInProcess:
    """The OpenAI stand-in (``python -m tests.servers.openai_server``) in a process of its own, as
    OpenAI's server is: inside the benchmark's process its threads would wait for the GIL while the
    run chunks and writes, answer late and count requests into its rate-limit window in bunches.
    :meth:`stop` returns what it answered (``ok_requests``, ``statuses``)."""

    def __init__(self, *, latency_s: float, tpm: int | None, api_key: str = "bench-key") -> None:
        self.cmd = [sys.executable, "-m", "tests.servers.openai_server", "--api-key", api_key]
        self.cmd += ["--latency", str(latency_s)] + (["--tpm", str(tpm)] if tpm else [])
        self.base_url = ""
        self._proc: subprocess.Popen[str] | None = None
        self._answered: dict[str, Any] = {}

    def start(self) -> StandInProcess:
        """Start it and wait for its address."""
        root = Path(__file__).resolve().parents[1]
        self._proc = subprocess.Popen(self.cmd, stdout=subprocess.PIPE, text=True, cwd=root)
        assert self._proc.stdout is not None
        self.base_url = self._proc.stdout.readline().strip()
        if not self.base_url.startswith("http"):
            self._proc.kill()
            raise RuntimeError(f"the OpenAI stand-in did not start: {' '.join(self.cmd)}")
        return self

    def stop(self) -> dict[str, Any]:
        """Stop it (once); its counters: ``{"ok_requests": n, "statuses": {"429": n, ...}}``."""
        proc = self._proc
        if proc is not None and proc.poll() is None and proc.stdout is not None:
            proc.send_signal(signal.SIGTERM)
            line = proc.stdout.readline()  # printed first, before its server waits for open connections
            self._answered = json.loads(line) if line.startswith("{") else {"ok_requests": 0, "statuses": {}}
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        return self._answered


def main() -> None:
    """Command line: serve a folder until interrupted."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder")
    parser.add_argument("--port", type=int, default=8000)
    args = parser.parse_args()
    server = StaticServer(args.folder, args.port)
    print(f"serving {server.root} on {server.url}", flush=True)
    with suppress(KeyboardInterrupt):
        server.httpd.serve_forever()


if __name__ == "__main__":
    main()
