"""A site on 127.0.0.1 whose routes misbehave on purpose, for the spider's politeness tests.

``FaultSite(routes)`` maps a path to one :class:`Reply` or a list of them: the n-th request of a path
gets the n-th reply, and the last one repeats. A reply is a status with headers and a body, or a fault:

- ``Reply.reset()``: read the request, then close the connection with a TCP RST (``SO_LINGER`` 0), as a
  crashing server or a middlebox does;
- ``Reply.hang()``: read the request and never answer (until the server stops), for client timeouts.

Header values may be callables of the wall-clock time the request arrived, e.g. a ``Retry-After``
HTTP date a few seconds ahead. Unknown paths answer 404. Every request is recorded, on arrival, as a
:class:`Hit` in ``hits``, so tests can assert what was (not) requested and how far apart.

Usage::

    with FaultSite({"/robots.txt": Reply(503), "/": Reply.page("Home", "/a.html")}) as site:
        ...  # crawl site.url
        assert site.count("/") == 0
"""

from __future__ import annotations

import socket
import struct
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from contextlib import suppress
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Literal, Self

HeaderValue = str | Callable[[float], str]


@dataclass(frozen=True)
class Reply:
    """One answer of a route: ``status``, ``headers`` and ``body``, or a ``fault``."""

    status: int = 200
    body: str = ""
    headers: Mapping[str, HeaderValue] = field(default_factory=dict)
    content_type: str = "text/html; charset=utf-8"
    fault: Literal["reset", "hang"] | None = None

    @classmethod
    def page(cls, title: str, *links: str) -> Reply:
        """A small HTML page linking to ``links``."""
        anchors = "".join(f'<a href="{href}">{href}</a>\n' for href in links)
        body = f"<html><head><title>{title}</title></head><body><h1>{title}</h1>\n{anchors}</body></html>"
        return cls(200, body)

    @classmethod
    def text(cls, body: str, status: int = 200) -> Reply:
        """A text/plain answer (robots.txt)."""
        return cls(status, body, content_type="text/plain; charset=utf-8")

    @classmethod
    def redirect(cls, location: str, status: int = 302) -> Reply:
        """A redirect to ``location``."""
        return cls(status, headers={"Location": location})

    @classmethod
    def reset(cls) -> Reply:
        """Close the connection with a TCP reset instead of answering."""
        return cls(fault="reset")

    @classmethod
    def hang(cls) -> Reply:
        """Never answer."""
        return cls(fault="hang")


@dataclass(frozen=True)
class Hit:
    """A request as it arrived: its path, ``time.monotonic()`` and ``time.time()``."""

    path: str
    at: float
    wall: float


class _Handler(BaseHTTPRequestHandler):
    site: FaultSite

    def log_message(self, format: str, *args: Any) -> None:  # quiet: tests read their own output
        return

    def do_GET(self) -> None:
        reply = self.site._arrive(self.path.split("?", 1)[0])
        if reply.fault == "reset":
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.connection.close()
            self.close_connection = True
            return
        if reply.fault == "hang":
            self.site._stopping.wait(120)
            self.close_connection = True
            return
        data = reply.body.encode()
        now = time.time()
        self.send_response(reply.status)
        self.send_header("Content-Type", reply.content_type)
        self.send_header("Content-Length", str(len(data)))
        for name, value in reply.headers.items():
            self.send_header(name, value(now) if callable(value) else value)
        self.end_headers()
        self.wfile.write(data)

    def finish(self) -> None:
        with suppress(OSError, ValueError):  # the socket may be gone (reset) or closed by the client
            super().finish()


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False

    def handle_error(self, request: Any, client_address: Any) -> None:  # a client hung up: not news
        return


class FaultSite:
    """A running fault site: ``url`` is its base (``http://127.0.0.1:PORT/``), ``hits`` its requests."""

    def __init__(self, routes: Mapping[str, Reply | Sequence[Reply]]) -> None:
        self.routes = {path: [r] if isinstance(r, Reply) else list(r) for path, r in routes.items()}
        self.hits: list[Hit] = []
        self._served: dict[str, int] = {}
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        handler = type("Handler", (_Handler,), {"site": self})
        self.httpd = _Server(("127.0.0.1", 0), handler)
        self.port = self.httpd.server_address[1]
        self.netloc = f"127.0.0.1:{self.port}"
        self.url = f"http://{self.netloc}/"
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def _arrive(self, path: str) -> Reply:
        with self._lock:
            self.hits.append(Hit(path, time.monotonic(), time.time()))
            n = self._served.get(path, 0)
            self._served[path] = n + 1
        replies = self.routes.get(path)
        if not replies:
            return Reply.text("not found", 404)
        return replies[min(n, len(replies) - 1)]

    def count(self, path: str) -> int:
        """How many requests ``path`` got."""
        return sum(1 for hit in self.hits if hit.path == path)

    def times(self, path: str) -> list[float]:
        """Monotonic arrival times of the requests of ``path``."""
        return [hit.at for hit in self.hits if hit.path == path]

    def start(self) -> Self:
        """Serve in a background thread."""
        self._thread.start()
        return self

    def stop(self) -> None:
        """Release hanging requests, stop serving and close the socket."""
        self._stopping.set()
        self.httpd.shutdown()
        self.httpd.server_close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
