"""Reuse what the tenant already has instead of creating a group: an existing group, or an attribute value.

A group is reused only when its direct membership is exactly the needed set and it has no other members (a nested
group, contact or user without a mailbox would be invisible to us and, being out of RBAC's reach anyway, is a sign
the group serves another purpose). RBAC scopes see direct members only, so direct membership is what counts.

With attribute scopes allowed, an attribute value (model.FILTERABLE_ATTRIBUTES) whose mailboxes in the inventory
are exactly the needed set becomes a filter with no group. Unlike a group it is open-ended: a mailbox given that
value later is in scope too, which the plan says in the scope's note. Exchange compares `-eq` case-insensitively,
so values are matched case-insensitively here as well.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from migrator.model import FILTERABLE_ATTRIBUTES, Group, Mailbox

# Recipient types a MemberOfGroup scope works with (docs/exchange.md §2); empty = not reported, assumed mail-enabled.
REUSABLE_TYPES = frozenset({"", "MailUniversalSecurityGroup", "MailUniversalDistributionGroup", "GroupMailbox",
                            "MailNonUniversalGroup"})


@dataclass(frozen=True)
class Existing:
    """How a needed mailbox set is met without creating a group."""

    kind: str  # "group" or "attribute"
    group: Group | None = None
    attribute: tuple[str, str] | None = None  # (attribute, value as found on a mailbox)


def reusable_groups(groups: Iterable[Group]) -> dict[frozenset[str], Group]:
    """Member set -> the group to reuse for it (several candidates: the first by address, for determinism)."""
    by_set: dict[frozenset[str], Group] = {}
    for g in sorted(groups, key=lambda g: g.address):
        if g.members and g.other_members == 0 and g.dn and g.recipient_type in REUSABLE_TYPES:
            by_set.setdefault(frozenset(g.members), g)
    return by_set


def _usable_value(value: str) -> bool:
    # `;` and `=` would be ambiguous in scopes.csv's `attributes` cell; padded or control characters are
    # too easy to get wrong in a filter typed by a person later.
    return bool(value) and value == value.strip() and not any(c in value for c in ";=") and value.isprintable()


def attribute_sets(mailboxes: Iterable[Mailbox]) -> dict[frozenset[str], tuple[str, str]]:
    """Mailbox set -> the (attribute, value) whose holders are exactly that set (first in FILTERABLE_ATTRIBUTES
    order, then by value, when several match)."""
    holders: dict[tuple[str, str], set[str]] = defaultdict(set)
    spelling: dict[tuple[str, str], str] = {}
    for mb in mailboxes:
        for attribute, value in mb.attributes:
            key = (attribute, value.casefold())
            holders[key].add(mb.address)
            spelling[key] = min(spelling.get(key, value), value)
    order = {a: i for i, a in enumerate(FILTERABLE_ATTRIBUTES)}
    by_set: dict[frozenset[str], tuple[str, str]] = {}
    for key in sorted(holders, key=lambda k: (order.get(k[0], len(order)), k[1])):
        if key[0] in order and _usable_value(spelling[key]):
            # a value spelled two ways that casefold alike is still one filter: -eq matches both
            by_set.setdefault(frozenset(holders[key]), (key[0], spelling[key]))
    return by_set


def attribute_holders(mailboxes: Iterable[Mailbox], terms: Iterable[tuple[str, str]]) -> list[tuple[str, str, str]]:
    """(attribute, value as on the mailbox, mailbox) for every mailbox an attribute term matches (for the plan's
    attributes.csv), sorted."""
    wanted = {(a, v.casefold()) for a, v in terms}
    rows = []
    for mb in mailboxes:
        for attribute, value in mb.attributes:
            if (attribute, value.casefold()) in wanted:
                rows.append((attribute, value, mb.address))
    return sorted(rows)


def candidates(groups: Iterable[Group], mailboxes: Iterable[Mailbox], *,
               allow_attributes: bool) -> dict[frozenset[str], Existing]:
    """Every mailbox set the tenant already has as a reusable group (preferred) or an attribute value."""
    found: dict[frozenset[str], Existing] = {}
    if allow_attributes:
        for members, term in attribute_sets(mailboxes).items():
            found[members] = Existing("attribute", attribute=term)
    for members, g in reusable_groups(groups).items():
        found[members] = Existing("group", group=g)  # a group wins: it does not widen by itself
    return found


def useful(found: Mapping[frozenset[str], Existing], app_sets: Iterable[frozenset[str]]) -> list[frozenset[str]]:
    """The candidate sets that fit inside at least one app's set (only those can be part of an exact cover)."""
    if not found:
        return []
    app_sets = list(app_sets)
    by_mailbox: dict[str, list[int]] = defaultdict(list)
    for i, s in enumerate(app_sets):
        for m in s:
            by_mailbox[m].append(i)
    out = []
    for members in found:
        first = next(iter(members))
        if any(members <= app_sets[i] for i in by_mailbox.get(first, ())):
            out.append(members)
    return sorted(out, key=lambda s: (len(s), sorted(s)))
