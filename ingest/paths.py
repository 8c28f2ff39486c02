"""Locations under ``$WEBVEC_HOME`` are recorded relative to it, so a ledger can move with its home.

A store target such as ``chroma:/srv/a/.webvec/chroma/docs`` is recorded as
``chroma:$WEBVEC_HOME/chroma/docs``; copy the folder elsewhere, point ``$WEBVEC_HOME`` at the copy, and
the ledger still names the right collection. :func:`expand` gives the real current path for display.
"""

from __future__ import annotations

from pathlib import Path

from ingest.config import webvec_home

HOME_TOKEN = "$WEBVEC_HOME"


def home_relative(path: str | Path) -> str:
    """``path`` (resolved) as ``$WEBVEC_HOME/...`` when it lies under the home, else absolute."""
    resolved = Path(path).expanduser().resolve()
    home = webvec_home()
    try:
        rest = resolved.relative_to(home)
    except ValueError:
        return str(resolved)
    return HOME_TOKEN if rest == Path(".") else f"{HOME_TOKEN}/{rest.as_posix()}"


def expand(location: str) -> str:
    """A recorded location (or a target naming one) with ``$WEBVEC_HOME`` replaced by the real home."""
    return location.replace(HOME_TOKEN, str(webvec_home()))
