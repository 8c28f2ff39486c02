"""JavaScript rendering: which pages need a browser (``source.render: auto``), and which browser.

The spider (``spiders/render.py``) does the rendering through scrapy-playwright; what is decided here
is pure and shared: :func:`looks_like_app_shell` tells a single-page-application shell (an almost empty
``<body>`` whose content a script inserts) from a page that merely has little text, and
:func:`browser_path` says which Chromium to launch.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Mapping
from typing import TYPE_CHECKING

from lxml import etree
from lxml import html as lxml_html

if TYPE_CHECKING:
    from ingest.config import SourceConfig

# The environment variable naming the Chromium binary when source.browser_path is not set.
BROWSER_ENV = "WEBVEC_CHROMIUM"
# Debian's `chromium` package (apt-get install chromium); Playwright's own browser download needs the
# internet, which a webvec machine may not have.
DEFAULT_BROWSER = "/usr/bin/chromium"

# Visible body text below this many characters counts as "near-empty". An app shell carries at most a
# "Loading…" or "You need to enable JavaScript to run this app." line (~50 characters); 200 leaves
# room for a cookie notice or a bare navigation bar, and stays far below the shortest real article
# (trafilatura wants a few hundred characters of prose to call something main text).
SHELL_MAX_TEXT_CHARS = 200
# Elements whose text is not shown to the reader (or only without JavaScript).
_INVISIBLE = frozenset({"script", "style", "noscript", "template", "head", "title", "meta", "link"})


def browser_path(configured: str | None, environ: Mapping[str, str] | None = None) -> str:
    """The Chromium binary to launch: ``source.browser_path``, else ``$WEBVEC_CHROMIUM``, else Debian's."""
    env = os.environ if environ is None else environ
    return configured or env.get(BROWSER_ENV) or DEFAULT_BROWSER


def renderer_problem(source: SourceConfig, environ: Mapping[str, str] | None = None) -> str | None:
    """What keeps ``source.render`` from working on this machine (one line saying what to do), or None.

    Checked before a crawl starts (``webvec validate``, the run's preflight, the spider process), so a
    missing browser is one clear error rather than every page failing with Playwright's launch error.
    """
    if source.render == "never":
        return None
    if importlib.util.find_spec("scrapy_playwright") is None:
        return f"{source.render} needs scrapy-playwright: pip install 'webvec[render]'"
    path = browser_path(source.browser_path, environ)
    if not (os.path.isfile(path) and os.access(path, os.X_OK)):
        return (
            f"{source.render} needs Chromium, and {path} is not an executable file: "
            f"apt-get install chromium, or set source.browser_path (or ${BROWSER_ENV}) to a Chromium binary"
        )
    return None


def _visible_text_length(element: etree._Element, budget: int = SHELL_MAX_TEXT_CHARS) -> int:
    """Characters of text a reader sees inside ``element`` (whitespace runs count as one), counted
    until ``budget`` is passed. The text of invisible elements and their descendants is skipped; the
    tail (text after an element) belongs to its parent and is counted."""
    total = 0
    tag = element.tag
    if isinstance(tag, str) and tag.lower() not in _INVISIBLE and element.text:
        total += len(" ".join(element.text.split()))
    if isinstance(tag, str) and tag.lower() in _INVISIBLE:
        return 0
    for child in element:
        if total > budget:
            break
        total += _visible_text_length(child, budget - total)
        if child.tail:
            total += len(" ".join(child.tail.split()))
    return total


def looks_like_app_shell(body: bytes) -> bool:
    """True when an HTML page is most likely filled in by JavaScript: its ``<body>`` shows almost no
    text (fewer than :data:`SHELL_MAX_TEXT_CHARS` characters outside ``<script>``, ``<style>`` and
    ``<noscript>``) and the page has at least one script (inline or ``<script src>``).

    A short page without scripts is just short: rendering it would not add text. Unparseable bytes
    are not a shell either (the extraction reports them).
    """
    if not body.strip():
        return False
    try:
        doc = lxml_html.document_fromstring(body)
    except (etree.ParserError, ValueError):
        return False
    if not doc.xpath("//script[@src or normalize-space(text())]"):
        return False
    bodies = doc.xpath("//body")
    if not bodies:
        return True  # scripts and no body at all: everything the reader sees comes from them
    return _visible_text_length(bodies[0]) < SHELL_MAX_TEXT_CHARS
