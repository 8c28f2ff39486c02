"""Small generated sites for re-run tests (pages are edited between runs)."""

from __future__ import annotations

from pathlib import Path

TOPICS = ["rivers", "glaciers", "deserts", "forests", "volcanoes", "coasts", "caves", "prairies"]


def prose(topic: str, section: int, sentences: int = 8, salt: str = "") -> str:
    """Distinct, punctuated sentences about a topic (enough to count as main text)."""
    return " ".join(
        f"In part {section}, sentence {i} about {topic}{salt} notes how {topic} shape the land, "
        f"the water and the life around them over long periods of time."
        for i in range(sentences)
    )


def page_html(title: str, sections: list[tuple[str, str]], links: list[str] = ()) -> str:  # type: ignore[assignment]
    """A page with chrome (nav/footer) around an article of sections."""
    nav = "".join(f'<li><a href="{href}">{href}</a></li>' for href in links)
    body = "".join(f"<h2>{h}</h2><p>{p}</p>" for h, p in sections)
    return (
        f'<html lang="en"><head><title>{title}</title></head><body>'
        f"<header>Atlas of Landforms</header><nav><ul>{nav}</ul></nav>"
        f"<article><h1>{title}</h1>{body}</article>"
        f"<footer>Copyright 2026 Atlas of Landforms. All rights reserved.</footer></body></html>"
    )


def make_site(root: Path, shared: str | None = None, extra_links: list[str] = ()) -> list[str]:  # type: ignore[assignment]
    """Write index.html + one page per topic; ``shared`` adds one identical section to every page.
    Returns the page paths."""
    root.mkdir(parents=True, exist_ok=True)
    paths = [f"{t}.html" for t in TOPICS]
    for topic, path in zip(TOPICS, paths, strict=True):
        sections = [(f"{topic.title()} part {i}", prose(topic, i)) for i in range(3)]
        if shared:
            sections.append(("About this atlas", shared))
        (root / path).write_text(page_html(topic.title(), sections, ["index.html", *paths]))
    (root / "index.html").write_text(
        page_html("Atlas", [("Welcome", prose("landforms", 0))], [*paths, *extra_links])
    )
    (root / "robots.txt").write_text("User-agent: *\nAllow: /\n")
    return paths


def topic_site(root: Path, pages: int) -> None:
    """Write an index linking ``pages`` distinct pages of three sections each (each page links back to
    the index only), and a robots.txt allowing all: the site of the Dask tests and bench."""
    root.mkdir(parents=True, exist_ok=True)
    names = [f"topic-{i}.html" for i in range(pages)]
    for i, name in enumerate(names):
        sections = [(f"Part {j}", prose(f"topic {i}", j, salt=f" number {i}")) for j in range(3)]
        (root / name).write_text(page_html(f"Topic {i}", sections, ["index.html"]))
    (root / "index.html").write_text(page_html("Index", [("Welcome", prose("index", 0))], names))
    (root / "robots.txt").write_text("User-agent: *\nAllow: /\n")
