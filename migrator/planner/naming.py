"""Names of the objects a plan creates: deterministic, at most 64 characters, collision-free.

A name is `<prefix>-<key>-<hash6>`, e.g. `migrator-sendas-G0001-3fa2c1`. The key makes it readable next to the
plan files; the hash (of the content: a group's members, a scope's terms, an assignment's app and scope) makes
a name from another plan of the same tenant unlikely to clash and stable when the same plan is made again.
A name that collides with an existing tenant object (any recipient's name, alias or address) or with another
name in the plan gets `-2`, `-3`, ... until it is free. Names use only `[a-z0-9.-]`, so the same string is a
valid Exchange alias and the local part of a valid SMTP address once lower-cased (comparisons ignore case, as
Exchange's do).
"""

from __future__ import annotations

import hashlib
import re
from collections import Counter
from collections.abc import Iterable

from migrator.errors import InputError

MAX_NAME = 64  # New-DistributionGroup -Name, and a safe length for scope and assignment names
MAX_PREFIX = 40  # leaves room for "-A000001-abcdef-99"
DEFAULT_PREFIX = "migrator-sendas"
_PREFIX_RE = re.compile(r"[a-z0-9](?:[a-z0-9-]|\.(?!\.))*")


def check_prefix(prefix: str) -> str:
    """The prefix, lower-cased; InputError when it cannot make valid names and aliases."""
    p = (prefix or "").strip().lower()
    if not p or len(p) > MAX_PREFIX or not _PREFIX_RE.fullmatch(p) or p.endswith("."):
        raise InputError(f"must be 1-{MAX_PREFIX} characters of a-z, 0-9, '-' or single '.', starting with a "
                         "letter or digit", field="--prefix", value=prefix)
    return p


def short_hash(*parts: str) -> str:
    digest = hashlib.sha256("\x1f".join(parts).encode("utf-8")).hexdigest()
    return digest[:6]


def members_hash(members: Iterable[str]) -> str:
    return short_hash(*sorted(members))


class Namer:
    """Hands out unique names; `taken` holds every existing recipient name, alias and address (any case)."""

    def __init__(self, prefix: str, taken: Iterable[str] = (), domain: str = "") -> None:
        self.prefix = check_prefix(prefix)
        self.domain = domain.lower()
        self._taken = {t.strip().lower() for t in taken if t and t.strip()}

    def _free(self, candidate: str) -> bool:
        if candidate in self._taken:
            return False
        return not (self.domain and f"{candidate}@{self.domain}" in self._taken)

    def name(self, key: str, content_hash: str) -> str:
        base = f"{self.prefix}-{key}-{content_hash}"
        candidate, n = base, 1
        while not self._free(candidate.lower()):
            n += 1
            candidate = f"{base}-{n}"
        if len(candidate) > MAX_NAME:  # cannot happen with MAX_PREFIX; a guard, not a truncation
            raise ValueError(f"name too long: {candidate}")
        self._taken.add(candidate.lower())
        if self.domain:
            self._taken.add(f"{candidate.lower()}@{self.domain}")
        return candidate

    @staticmethod
    def alias(name: str) -> str:
        return name.lower()

    def address(self, alias: str) -> str:
        return f"{alias}@{self.domain}" if self.domain else ""


def taken_names(mailboxes, groups) -> set[str]:
    """Every name, alias and address an existing recipient uses (lower case)."""
    taken: set[str] = set()
    for mb in mailboxes:
        taken.update(x.lower() for x in (mb.address, mb.name, mb.alias, mb.display_name) if x)
        taken.add(mb.address.split("@", 1)[0])
    for g in groups:
        taken.update(x.lower() for x in (g.address, g.name) if x)
        taken.add(g.address.split("@", 1)[0])
    return taken


def group_domain(addresses: Iterable[str]) -> str:
    """The most common domain of the given mailbox addresses (ties: alphabetical); new groups' addresses use it.

    Any mailbox's primary domain is an accepted domain of the tenant, so an address there can be created.
    """
    counts = Counter(a.rsplit("@", 1)[1] for a in addresses if "@" in a)
    if not counts:
        return ""
    return min(counts, key=lambda d: (-counts[d], d))
