"""In-process progress events from a running flow (the CLI draws them as rich progress bars)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable

Listener = Callable[[str, int], None]
_listeners: list[Listener] = []


def subscribe(listener: Listener) -> None:
    """Receive ``(event, amount)`` calls: events are ``fetched``, ``chunked``, ``embedded``, ``written``."""
    _listeners.append(listener)


def unsubscribe(listener: Listener) -> None:
    """Stop receiving events."""
    if listener in _listeners:
        _listeners.remove(listener)


def emit(event: str, amount: int = 1) -> None:
    """Tell every listener; a failing listener never breaks a run."""
    for listener in list(_listeners):
        with contextlib.suppress(Exception):  # progress display is best effort
            listener(event, amount)
