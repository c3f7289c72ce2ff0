"""OPATH recipient filters as Exchange's RecipientRestrictionFilter accepts them.

Grammar (operators and property names case-insensitive):
    expr    := and ( "-or" and )*
    and     := not ( "-and" not )*
    not     := ("-not" | "!") not | "(" expr ")" | compare
    compare := Property ("-eq" | "-ne" | "-like" | "-notlike") value
    value   := 'single quoted, '' for a quote' | "double quoted" | $null | $true | $false | bareword
A `-like` pattern may not start with `*` (Exchange refuses leading wildcards).

Evaluation is set-based over an index (see `FilterIndex`): `MemberOfGroup -eq '<DN>'` is a lookup of the group's
*direct* members by DistinguishedName; a name, address or GUID in its place parses but matches nothing, as in Exchange.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Protocol

OPERATORS = ("-eq", "-ne", "-like", "-notlike")


class OpathError(ValueError):
    """A filter Exchange would refuse; `position` is the 0-based character offset of the problem."""

    def __init__(self, message: str, position: int | None = None) -> None:
        super().__init__(message)
        self.position = position


@dataclass(frozen=True)
class Compare:
    prop: str  # as written
    op: str  # one of OPERATORS, lower case
    value: object  # str, None ($null) or bool

    @property
    def key(self) -> str:
        return self.prop.lower()


@dataclass(frozen=True)
class And:
    parts: tuple


@dataclass(frozen=True)
class Or:
    parts: tuple


@dataclass(frozen=True)
class Not:
    part: object


_TOKEN = re.compile(r"""
    \s*(?:
      (?P<lp>\()|(?P<rp>\))|(?P<bang>!)
    | (?P<op>-[A-Za-z]+)
    | '(?P<sq>(?:[^']|'')*)'
    | "(?P<dq>(?:[^"]|"")*)"
    | (?P<var>\$[A-Za-z_]+)
    | (?P<word>[^\s()'"!]+)
    )""", re.VERBOSE)


def _tokens(text: str) -> list[tuple[str, object, int]]:
    out, pos = [], 0
    while pos < len(text):
        if text[pos:].strip() == "":
            break
        m = _TOKEN.match(text, pos)
        if not m or m.end() == pos:
            raise OpathError(f"Invalid filter syntax at position {pos}: unterminated quote or stray character", pos)
        kind = m.lastgroup
        assert kind is not None  # every alternative of _TOKEN is a named group
        start = m.start(kind)
        if kind == "sq":
            out.append(("str", m.group("sq").replace("''", "'"), start))
        elif kind == "dq":
            out.append(("str", m.group("dq").replace('""', '"'), start))
        elif kind == "var":
            name = m.group("var").lower()
            values = {"$null": None, "$true": True, "$false": False}
            if name not in values:
                raise OpathError(f"Invalid filter syntax: unknown variable {m.group('var')}", start)
            out.append(("const", values[name], start))
        else:
            out.append((kind, m.group(kind), start))
        pos = m.end()
    return out


class _Parser:
    def __init__(self, text: str, known: frozenset[str] | None) -> None:
        self.text = text
        self.toks = _tokens(text)
        self.i = 0
        self.known = known

    def peek(self):
        return self.toks[self.i] if self.i < len(self.toks) else ("end", None, len(self.text))

    def take(self):
        tok = self.peek()
        self.i += 1
        return tok

    def parse(self):
        if not self.toks:
            raise OpathError("Invalid filter syntax: the filter is empty", 0)
        node = self.expr()
        kind, value, pos = self.peek()
        if kind != "end":
            raise OpathError(f"Invalid filter syntax at position {pos}: unexpected {value!r}", pos)
        return node

    def expr(self):
        parts = [self.conj()]
        while self._is_op("-or"):
            self.take()
            parts.append(self.conj())
        return parts[0] if len(parts) == 1 else Or(tuple(parts))

    def conj(self):
        parts = [self.neg()]
        while self._is_op("-and"):
            self.take()
            parts.append(self.neg())
        return parts[0] if len(parts) == 1 else And(tuple(parts))

    def neg(self):
        kind, _value, _pos = self.peek()
        if kind == "bang" or self._is_op("-not"):
            self.take()
            return Not(self.neg())
        if kind == "lp":
            self.take()
            node = self.expr()
            kind, _value, pos = self.take()
            if kind != "rp":
                raise OpathError(f"Invalid filter syntax at position {pos}: ')' expected", pos)
            return node
        return self.compare()

    def compare(self):
        kind, prop, pos = self.take()
        if kind != "word":
            raise OpathError(f"Invalid filter syntax at position {pos}: a property name expected", pos)
        if self.known is not None and prop.lower() not in self.known:
            raise OpathError(f"'{prop}' is not a recognized filterable property.", pos)
        kind, op, opos = self.take()
        if kind != "op" or op.lower() not in OPERATORS:
            raise OpathError(f"Invalid filter syntax at position {opos}: a comparison operator "
                             f"(-eq, -ne, -like, -notlike) expected after {prop!r}", opos)
        kind, value, vpos = self.take()
        if kind not in ("str", "const", "word"):
            raise OpathError(f"Invalid filter syntax at position {vpos}: a value expected after {op}", vpos)
        op = op.lower()
        if op in ("-like", "-notlike"):
            if not isinstance(value, str):
                raise OpathError(f"Invalid filter syntax at position {vpos}: -like needs a string", vpos)
            if value.startswith("*") and value != "*":
                raise OpathError("Wildcards cannot be used as the first character. Please revise the filter "
                                 "criteria.", vpos)
        return Compare(prop, op, value)

    def _is_op(self, name: str) -> bool:
        kind, value, _ = self.peek()
        return kind == "op" and value.lower() == name


def parse(text: str, *, known_properties: Iterable[str] | None = None):
    """Parse a filter into a tree of Compare/And/Or/Not; OpathError when Exchange would refuse it."""
    known = frozenset(p.lower() for p in known_properties) if known_properties is not None else None
    return _Parser(text or "", known).parse()


def group_dns(node) -> set[str]:
    """The values (lower case) a filter compares MemberOfGroup with: what a group change can affect."""
    out: set[str] = set()
    if isinstance(node, Compare):
        if node.key == "memberofgroup" and isinstance(node.value, str):
            out.add(node.value.lower())
    elif isinstance(node, (And, Or)):
        for p in node.parts:
            out |= group_dns(p)
    elif isinstance(node, Not):
        out |= group_dns(node.part)
    return out


class FilterIndex(Protocol):
    """What evaluation needs from the tenant. Items are opaque hashable keys (the sandbox uses recipient GUIDs)."""

    def universe(self) -> set: ...

    def values(self, item, prop_key: str) -> list[str]: ...  # the item's values of a property (lower-case key)

    def direct_members(self, dn_lower: str) -> set: ...  # direct members of the group with this DN, or empty

    def lookup(self, prop_key: str, value_lower: str) -> set | None: ...  # indexed -eq, or None to scan


def _like(pattern: str) -> Callable[[str], bool]:
    rx = re.compile(fnmatch.translate(pattern.lower().replace("[", "[[]").replace("?", "[?]")), re.S)
    return lambda v: bool(rx.match(v.lower()))


def evaluate(node, index: FilterIndex) -> set:
    """The set of items the filter selects."""
    if isinstance(node, And):
        common: set | None = None
        for part in node.parts:
            s = evaluate(part, index)
            common = s if common is None else common & s
            if not common:
                return set()
        return common or set()
    if isinstance(node, Or):
        either: set = set()
        for part in node.parts:
            either |= evaluate(part, index)
        return either
    if isinstance(node, Not):
        return index.universe() - evaluate(node.part, index)
    assert isinstance(node, Compare)
    if node.op == "-ne":
        return index.universe() - _equal(node, index)
    if node.op == "-eq":
        return _equal(node, index)
    like = _like(str(node.value))
    hit = {item for item in index.universe() if any(like(v) for v in index.values(item, node.key))}
    return hit if node.op == "-like" else index.universe() - hit


def _equal(node: Compare, index: FilterIndex) -> set:
    if node.key == "memberofgroup":
        # Exchange compares with the group's DistinguishedName only; anything else silently matches nothing.
        return set(index.direct_members(node.value.lower())) if isinstance(node.value, str) else set()
    if node.value is None or node.value == "":  # -eq $null (or ''): the property is unset
        return {item for item in index.universe() if not index.values(item, node.key)}
    want = str(node.value).lower()  # a bool compares as "true"/"false"
    hit = index.lookup(node.key, want)
    if hit is not None:
        return set(hit)
    return {item for item in index.universe() if want in (v.lower() for v in index.values(item, node.key))}


def quote(value: str) -> str:
    """A value as an OPATH single-quoted literal (quotes doubled)."""
    return "'" + value.replace("'", "''") + "'"
