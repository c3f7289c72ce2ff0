"""OPATH recipient filters for management scopes: quoting, building, and filling in new groups' DNs.

A scope on a group filters `MemberOfGroup -eq '<DistinguishedName>'` (docs/exchange.md §2: a name or address there
matches nothing, silently). A group the plan creates has no DN until the executor creates it and reads it back,
so the plan's filter for it holds the placeholder `{dn:G0001}` inside the quotes; `fill_dns()` replaces each
placeholder with the real DN (quoted) once it is known, and refuses a filter that still has one left.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

from migrator.model import FILTERABLE_ATTRIBUTES

MEMBER_OF = "MemberOfGroup"
_PLACEHOLDER = re.compile(r"\{dn:([A-Za-z0-9_-]+)\}")


def quote(value: str) -> str:
    """An OPATH string literal: single quotes, an inner quote doubled (O'Brien -> 'O''Brien')."""
    return "'" + value.replace("'", "''") + "'"


def dn_placeholder(group_key: str) -> str:
    return "{dn:" + group_key + "}"


def member_of(dn: str) -> str:
    """`MemberOfGroup -eq '<DN>'` for a group whose DistinguishedName is known."""
    if not dn:
        raise ValueError("MemberOfGroup needs the group's DistinguishedName; an empty one matches nothing")
    return f"{MEMBER_OF} -eq {quote(dn)}"


def member_of_new(group_key: str) -> str:
    """`MemberOfGroup -eq '{dn:G0001}'`: a new group's DN is filled in by the executor after creation."""
    return f"{MEMBER_OF} -eq {quote(dn_placeholder(group_key))}"


def attribute_eq(attribute: str, value: str) -> str:
    """`CustomAttribute1 -eq 'x'` (Exchange compares case-insensitively)."""
    if attribute not in FILTERABLE_ATTRIBUTES:
        raise ValueError(f"{attribute!r} is not a filterable mailbox attribute")
    if not value:
        raise ValueError(f"{attribute}: an empty value would match every mailbox without the attribute")
    return f"{attribute} -eq {quote(value)}"


def any_of(terms: Iterable[str]) -> str:
    """Join terms with -or. A single term is returned as is; several are parenthesised for readability."""
    terms = list(terms)
    if not terms:
        raise ValueError("a scope filter needs at least one term")
    if len(terms) == 1:
        return terms[0]
    return " -or ".join(f"({t})" for t in terms)


def _literals(text: str) -> Iterable[tuple[int, int, str]]:
    """(start, end, unescaped content) of each single-quoted literal in an OPATH filter."""
    i, n = 0, len(text)
    while i < n:
        if text[i] != "'":
            i += 1
            continue
        start, j, content = i, i + 1, []
        while True:
            if j >= n:
                raise ValueError(f"unterminated quoted value in filter: {text!r}")
            if text[j] == "'":
                if j + 1 < n and text[j + 1] == "'":
                    content.append("'")
                    j += 2
                    continue
                break
            content.append(text[j])
            j += 1
        yield start, j + 1, "".join(content)
        i = j + 1


def placeholders(text: str) -> list[str]:
    """Group keys whose DN placeholder occurs as a whole quoted value after `MemberOfGroup -eq`."""
    keys = []
    for start, _end, content in _literals(text):
        m = _PLACEHOLDER.fullmatch(content)
        if m and text[:start].rstrip().endswith(f"{MEMBER_OF} -eq"):
            keys.append(m.group(1))
    return keys


def fill_dns(text: str, dns: Mapping[str, str]) -> str:
    """Replace every `'{dn:KEY}'` after `MemberOfGroup -eq` with the quoted DN from `dns`.

    Only whole quoted placeholders are replaced, so an attribute value that happens to contain `{dn:...}`
    is left alone. KeyError (naming the key) when a DN is missing or empty: a scope must never be created
    with a placeholder or an empty DN in it.
    """
    out, last = [], 0
    for start, end, content in _literals(text):
        m = _PLACEHOLDER.fullmatch(content)
        if not (m and text[:start].rstrip().endswith(f"{MEMBER_OF} -eq")):
            continue
        dn = dns.get(m.group(1), "")
        if not dn:
            raise KeyError(f"no DistinguishedName known for group {m.group(1)}")
        out.append(text[last:start])
        out.append(quote(dn))
        last = end
    out.append(text[last:])
    return "".join(out)


def member_of_anywhere(text: str) -> list[str]:
    """The DNs of every `MemberOfGroup -eq|-ne '<DN>'` term of a filter of any shape (-and, -not included): the
    groups the filter depends on. An unreadable filter names none."""
    try:
        return [content for start, _end, content in _literals(text)
                if re.search(MEMBER_OF + r"\s+-(?:eq|ne)\s*$", text[:start], re.IGNORECASE)]
    except ValueError:
        return []


def member_of_dns(text: str) -> list[str] | None:
    """The DNs of a filter made only of `MemberOfGroup -eq '<DN>'` terms joined by -or (parentheses allowed): the
    shape the tool writes and the usual hand-made one. None for any other shape (then the caller cannot read the
    filter's reach from group members alone)."""
    dns: list[str] = []
    last = 0
    try:
        for start, end, content in _literals(text):
            lead = r"[\s()]*" if not dns else r"[\s()]*-or[\s()]*"
            if not content or not re.fullmatch(lead + MEMBER_OF + r"\s+-eq\s*", text[last:start], re.IGNORECASE):
                return None
            dns.append(content)
            last = end
    except ValueError:
        return None
    return dns if dns and re.fullmatch(r"[\s()]*", text[last:]) else None
