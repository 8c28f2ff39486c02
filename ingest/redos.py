"""Catastrophic-backtracking check for the URL regexes of a crawl (``source.include`` / ``exclude``).

Python's ``re`` is a backtracking matcher. ``(a+)+$`` tried against ``"aaaa…a!"`` tries every way of
sharing the a's between the inner and the outer ``+`` (2^n ways), so one long URL can hold the spider
for hours. :func:`backtracking_problem` finds such patterns before a crawl starts.

Method: the pattern is parsed with ``re._parser`` (the parser ``re.compile`` itself uses, so the tree
is exactly what will run) and every *repeated* construct is checked: a greedy or lazy quantifier whose
maximum is above 1 (``*``, ``+``, ``{2,}``, ``{3}``...). Its body is *ambiguous* when it contains

- a quantifier whose count is not fixed (``?``, ``*``, ``+``, ``{m,n}`` with n > m): ``(a+)+``,
  ``(.*)*``, ``(\\s*,\\s*)*``;
- an alternation whose branches may begin with the same character, or may be empty: ``(a|a)*``,
  ``(a|ab)*``, ``(x|\\w)+`` (``re`` factors ``a|a`` into ``a`` followed by two empty branches);
- a backreference.

An ambiguous body can match one piece of text in several ways, and the repetition around it multiplies
those ways: this is the "nested quantifier" / star-height rule of safe-regex and of the ReDoS
literature. A repeated body that is not ambiguous is deterministic (each branch is chosen by the next
character, every count is fixed), so the repetition has one way to match and cannot blow up. The rule
is therefore sound for exponential blow-up (no such pattern passes) and errs on the safe side: a few
harmless patterns are refused too, e.g. ``(a|ab)*`` or ``(\\w+-\\w+/)*``.

One exception keeps common URL patterns usable: a body that ends (``(\\w+/)*``, ``([^/]+/)+``,
``(\\d+\\.){3}``) or begins (``(/[a-z-]+)*``) with a *separator*, one character from a small explicit
set that nothing else in the body can match, and whose other part is a run of single characters with at
most one variable quantifier. Then each repetition ends (or starts) exactly at a separator and the
variable count is fixed by the length, so there is still only one way to match.

Not covered (polynomial, not exponential, on URLs of a few hundred characters): adjacent overlapping
quantifiers such as ``\\d+\\d+$`` or ``.*a.*a.*a``. Possessive quantifiers (``*+``, ``++``) and atomic
groups (``(?>...)``), both available since Python 3.11, never backtrack, so they are the way to keep a
pattern this check refuses.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from re import _constants as sre  # type: ignore[attr-defined]
from re import _parser  # type: ignore[attr-defined]
from typing import Any

_Item = tuple[Any, Any]  # (opcode, argument) as in re._parser's SubPattern

_REPEATS = (sre.MAX_REPEAT, sre.MIN_REPEAT)  # quantifiers that backtrack (greedy and lazy)
_ZERO_WIDTH = (sre.AT, sre.ASSERT, sre.ASSERT_NOT)  # anchors and lookarounds consume nothing
_ONE_CHAR = (sre.LITERAL, sre.NOT_LITERAL, sre.ANY, sre.IN)  # atoms that consume exactly one character
_LARGEST_EXPLICIT_SET = 256  # a character class with more members is treated as "any character"

# A category (\d, \w, \s and negations) matches a character when either its Unicode or its ASCII
# meaning does: the (?a) flag may be set anywhere, and "may match" must err on the side of yes.
_CATEGORIES = {
    sre.CATEGORY_DIGIT: r"\d",
    sre.CATEGORY_NOT_DIGIT: r"\D",
    sre.CATEGORY_SPACE: r"\s",
    sre.CATEGORY_NOT_SPACE: r"\S",
    sre.CATEGORY_WORD: r"\w",
    sre.CATEGORY_NOT_WORD: r"\W",
}


def backtracking_problem(pattern: str) -> str | None:
    """Why ``pattern`` may backtrack exponentially, or None when it cannot. It must already compile."""
    tree = _parser.parse(pattern)
    if _scan(list(tree), bool(tree.state.flags & re.IGNORECASE)):
        return (
            "can take exponential time on some URLs: a repeated group holds a quantifier or alternatives "
            "that match the same text (like '(a+)+' or '(a|a)*'); remove the nesting, or make the outer "
            "quantifier possessive ('++', '*+') or the group atomic ('(?>...)')"
        )
    return None


def _scan(items: Sequence[_Item], icase: bool) -> bool:
    """True when a repeated construct anywhere in ``items`` has an ambiguous body."""
    for op, av in items:
        if op in _REPEATS and av[1] > 1:
            body = list(av[2])
            if _ambiguous(body, icase) and not _separated(body, icase):
                return True
        if any(_scan(child, child_icase) for child, child_icase in _children(op, av, icase)):
            return True
    return False


def _children(op: Any, av: Any, icase: bool) -> Iterator[tuple[list[_Item], bool]]:
    """The sub-sequences of one node, with the IGNORECASE state that applies inside them."""
    if op in (*_REPEATS, sre.POSSESSIVE_REPEAT):
        yield list(av[2]), icase
    elif op is sre.SUBPATTERN:
        _group, add_flags, del_flags, body = av
        yield list(body), (icase or bool(add_flags & re.IGNORECASE)) and not del_flags & re.IGNORECASE
    elif op is sre.ATOMIC_GROUP:
        yield list(av), icase
    elif op is sre.BRANCH:
        for alternative in av[1]:
            yield list(alternative), icase
    elif op in (sre.ASSERT, sre.ASSERT_NOT):
        yield list(av[1]), icase
    elif op is sre.GROUPREF_EXISTS:
        for alternative in av[1:]:
            if alternative is not None:
                yield list(alternative), icase


def _ambiguous(items: Sequence[_Item], icase: bool) -> bool:
    """True when ``items`` may match one text in more than one way (see the module docstring)."""
    for op, av in items:
        if op in _REPEATS:
            if av[0] != av[1] or _ambiguous(list(av[2]), icase):
                return True
        elif op is sre.SUBPATTERN:
            if _ambiguous(list(av[3]), icase):
                return True
        elif op is sre.BRANCH:
            alternatives = [list(alt) for alt in av[1]]
            firsts = [first for first in map(_first, alternatives) if first is not None]
            if len(firsts) < len(alternatives):  # a branch that may match nothing
                return True
            for i, mine in enumerate(firsts):
                for theirs in firsts[i + 1 :]:
                    if not all(_disjoint(a, b, icase) for a in mine for b in theirs):
                        return True
            if any(_ambiguous(alt, icase) for alt in alternatives):
                return True
        elif op in (sre.GROUPREF, sre.GROUPREF_EXISTS):
            return True
        # Possessive quantifiers and atomic groups never give back what they matched, and
        # lookarounds are atomic in Python: none of them adds a second way to match.
    return False


def _first(items: Sequence[_Item]) -> list[_Item] | None:
    """The one-character atoms a match of ``items`` may begin with; None when it may match nothing."""
    for op, av in items:
        if op in _ZERO_WIDTH:
            continue
        if op in _ONE_CHAR:
            return [(op, av)]
        if op is sre.SUBPATTERN or op is sre.ATOMIC_GROUP:
            return _first(list(av[3] if op is sre.SUBPATTERN else av))
        if op in (*_REPEATS, sre.POSSESSIVE_REPEAT):
            return _first(list(av[2])) if av[0] >= 1 else None
        if op is sre.BRANCH:
            atoms: list[_Item] = []
            for alternative in av[1]:
                first = _first(list(alternative))
                if first is None:
                    return None
                atoms += first
            return atoms
        return None  # backreferences and anything unknown: assume the worst
    return None


def _explicit_chars(atom: _Item, icase: bool) -> set[str] | None:
    """The characters a one-character atom matches, when it is a small explicit set; else None."""
    op, av = atom
    chars: set[str] = set()
    if op is sre.LITERAL:
        chars.add(chr(av))
    elif op is sre.IN:
        for item_op, item_av in av:
            if item_op is sre.LITERAL:
                chars.add(chr(item_av))
            elif item_op is sre.RANGE and item_av[1] - item_av[0] < _LARGEST_EXPLICIT_SET:
                chars.update(chr(c) for c in range(item_av[0], item_av[1] + 1))
            else:  # NEGATE, CATEGORY, a wide RANGE: not a small explicit set
                return None
        if len(chars) > _LARGEST_EXPLICIT_SET:
            return None
    else:
        return None
    if icase:
        chars |= {c.swapcase() for c in chars} | {c.lower() for c in chars} | {c.upper() for c in chars}
    return chars


def _may_match(atom: _Item, char: str, icase: bool) -> bool:
    """Whether a one-character atom may match ``char`` (errs on the side of yes)."""
    variants = {char, char.lower(), char.upper(), char.swapcase()} if icase else {char}
    return any(_matches(atom, c) for c in variants)


def _matches(atom: _Item, char: str) -> bool:
    op, av = atom
    if op is sre.LITERAL:
        return chr(av) == char
    if op is sre.NOT_LITERAL:
        return chr(av) != char
    if op is sre.IN:
        negated = bool(av) and av[0][0] is sre.NEGATE
        hit = False
        for item_op, item_av in av[1:] if negated else av:
            if item_op is sre.LITERAL:
                hit = hit or chr(item_av) == char
            elif item_op is sre.RANGE:
                hit = hit or item_av[0] <= ord(char) <= item_av[1]
            elif item_op is sre.CATEGORY and item_av in _CATEGORIES:
                cls = _CATEGORIES[item_av]
                hit = hit or bool(re.fullmatch(cls, char) or re.fullmatch(cls, char, re.ASCII))
            else:
                return True  # unknown member: assume it matches
        return hit != negated
    return True  # ANY, and anything unknown


def _disjoint(a: _Item, b: _Item, icase: bool) -> bool:
    """True when two one-character atoms provably never match the same character."""
    explicit_a = _explicit_chars(a, icase)
    if explicit_a is not None:
        return not any(_may_match(b, c, icase) for c in explicit_a)
    explicit_b = _explicit_chars(b, icase)
    if explicit_b is not None:
        return not any(_may_match(a, c, icase) for c in explicit_b)
    return False


def _separated(body: list[_Item], icase: bool) -> bool:
    """The separator exception (module docstring): ``X S`` or ``S X``, ``S`` matching nothing in X."""
    while len(body) == 1 and body[0][0] is sre.SUBPATTERN:
        _group, add_flags, del_flags, inner = body[0][1]
        icase = (icase or bool(add_flags & re.IGNORECASE)) and not del_flags & re.IGNORECASE
        body = list(inner)
    items = [item for item in body if item[0] not in _ZERO_WIDTH]
    if len(items) < 2:
        return False
    for separator, rest in ((items[-1], items[:-1]), (items[0], items[1:])):
        chars = _explicit_chars(separator, icase)
        atoms = _simple_run(rest)
        if chars is None or atoms is None:
            continue
        if not any(_may_match(atom, c, icase) for atom in atoms for c in chars):
            return True
    return False


def _simple_run(items: Sequence[_Item]) -> list[_Item] | None:
    """The atoms of a run of one-character atoms (each possibly quantified) with at most one variable
    count; None for anything else. Such a run matches a given text in at most one way."""
    atoms: list[_Item] = []
    variable = 0
    for op, av in items:
        if op in _ONE_CHAR:
            atoms.append((op, av))
        elif op in (*_REPEATS, sre.POSSESSIVE_REPEAT) and len(av[2]) == 1 and av[2][0][0] in _ONE_CHAR:
            atoms.append(av[2][0])
            variable += op in _REPEATS and av[0] != av[1]
        else:
            return None
    return atoms if variable <= 1 else None
