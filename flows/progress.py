"""In-process progress events from a running Prefect flow (the CLI draws them as rich progress bars).

Runs without Prefect take their listener directly (:class:`ingest.run.Hooks`); a flow is called by
Prefect, so its hooks reach the CLI through this module instead.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

Listener = Callable[[str, int, int], None]
_listeners: list[Listener] = []


def subscribe(listener: Listener) -> None:
    """Receive ``(event, advance, total)`` calls: events are ``fetched``, ``embedded``, ``written``."""
    _listeners.append(listener)


@contextlib.contextmanager
def subscribed(listener: Listener) -> Iterator[None]:
    """Receive events while inside the ``with`` block."""
    subscribe(listener)
    try:
        yield
    finally:
        unsubscribe(listener)


def unsubscribe(listener: Listener) -> None:
    """Stop receiving events."""
    if listener in _listeners:
        _listeners.remove(listener)


def emit(event: str, advance: int = 0, total: int = 0) -> None:
    """Tell every listener; a failing listener never breaks a run."""
    for listener in list(_listeners):
        with contextlib.suppress(Exception):  # progress display is best effort
            listener(event, advance, total)
