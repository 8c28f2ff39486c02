"""include/exclude regexes that backtrack exponentially are refused at load time (ingest.redos)."""

from __future__ import annotations

import pytest

from ingest.config import parse_crawl
from ingest.errors import ConfigError
from ingest.redos import backtracking_problem

# Each is exponential in CPython's re (or a close cousin of one that is).
CATASTROPHIC = [
    r"(a+)+$",
    r"(a|a)*$",  # re factors it into 'a' + two empty branches: still 2^n ways
    r"(.*)*",
    r"(a*)*$",
    r"(a|aa)+$",
    r"^(\d+)*$",
    r"(x+x+)+y",
    r"(?:\s*,\s*)*$",
    r"(a|b|ab)*c",
    r"((ab)*c?)+",
    r"(.+/)*$",  # '.' matches the separator too
    r"(\w+/?)*$",  # the separator is optional
    r"(a*a*/)*$",  # two variable counts between separators
    r"((?:a|a)/)*$",
    r"([a-z]+|\d+|x)*$",
    r"(?i)(x|X)(?:[a-z]+|K)*",
    r"(a)(\1b?)*",
]

# Common URL patterns, and the escape hatches the message names.
SAFE = [
    r"^https://example\.org/docs/",
    r"\.pdf$",
    r"/(?:blog|news)/\d{4}/",
    r"(\w+/)*",
    r"(/[a-z0-9-]+)*",
    r"([^/]+/)+",
    r"(\d+\.){3}\d+",
    r"(?:[a-z]+-)*[a-z]+",
    r"\?(?:[^&]*&)*utm_",
    r"(?i)(?:/[A-Z]+)+",
    r"(?:https?://)?x",
    r"(ab?)*",
    r"(a|b)*",
    r"(foo|bar)*",
    r"(?:\w|-)+",
    r"(a+)++$",
    r"(a+)*+$",
    r"(?>a+)+$",
    r".*",
]


@pytest.mark.parametrize("pattern", CATASTROPHIC)
def test_nested_quantifiers_and_overlapping_alternatives_are_found(pattern: str) -> None:
    assert backtracking_problem(pattern)


@pytest.mark.parametrize("pattern", SAFE)
def test_common_url_patterns_pass(pattern: str) -> None:
    assert backtracking_problem(pattern) is None


@pytest.mark.parametrize(
    ("key", "pattern"), [("include", r"(a+)+$"), ("exclude", r"(a|a)*"), ("include", r"(.*)*")]
)
def test_the_crawl_definition_names_the_regex(key: str, pattern: str) -> None:
    data = {"name": "docs", "source": {"start_urls": ["https://example.org/"], key: ["/docs/", pattern]}}
    with pytest.raises(ConfigError) as info:
        parse_crawl(data, "crawls/x.yaml")
    message = str(info.value)
    assert message.startswith(f"crawls/x.yaml: source.{key}.1: regex {pattern!r} can take exponential time")
    assert "possessive" in message and "\n" not in message
