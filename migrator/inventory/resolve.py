"""Resolve the identities that permission exports show (trustees, mailbox identities) to stable objects.

Exchange shows a trustee or a mailbox by whichever of its names it likes (a service principal usually by its
Exchange pointer's DisplayName, which can differ from the Entra name; some tenants show its ObjectId, Identity or
Sid), so every known name of every object is indexed, case-insensitively. A name that two objects
share is never guessed: resolving it raises, naming the value and both objects.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass

from migrator.model import Group, Mailbox, ServicePrincipal

SID = re.compile(r"^S-1-\d+(-\d+)+$", re.IGNORECASE)
SELF_NAMES = {"nt authority\\self", "s-1-5-10"}


class Ambiguous(Exception):
    """A name that matches more than one object; `candidates` are their labels."""

    def __init__(self, value: str, candidates: list[str]) -> None:
        super().__init__(value)
        self.value, self.candidates = value, candidates


class Index:
    """Name -> set of object keys; names are compared stripped and lower case."""

    def __init__(self) -> None:
        self._by_name: dict[str, set[str]] = defaultdict(set)

    def add(self, key: str, names: Iterable[str]) -> None:
        for name in names:
            name = (name or "").strip().lower()
            if name:
                self._by_name[name].add(key)

    def lookup(self, value: str) -> set[str]:
        return self._by_name.get((value or "").strip().lower(), set())


@dataclass(frozen=True)
class Resolved:
    kind: str  # "self" | "sid" | "sp" | "recipient" | "unknown"
    key: str  # app_id, recipient address, the SID, or the lower-case raw text


class Resolver:
    def __init__(self, sps: Iterable[ServicePrincipal], mailboxes: Iterable[Mailbox],
                 groups: Iterable[Group] = (), *, mailbox_names: dict[str, Iterable[str]] | None = None) -> None:
        self.sps = {sp.app_id: sp for sp in sps}
        self.mailboxes = {mb.address: mb for mb in mailboxes}
        self.groups = {g.address: g for g in groups}
        extra = mailbox_names or {}
        self.sp_index = Index()
        for sp in self.sps.values():
            # every name Exchange may show a pointer by: DisplayName, Identity, Name, Sid, ObjectId, AppId
            self.sp_index.add(sp.app_id, (sp.app_id, sp.object_id, sp.display_name, sp.exchange_identity,
                                          *sp.exchange_names))
        # Strong names identify a mailbox for a permission row; a display name only helps classify a human trustee.
        self.mailbox_index = Index()
        self.recipient_index = Index()
        for mb in self.mailboxes.values():
            names = (mb.address, mb.external_id, mb.guid, mb.name, mb.alias, mb.dn, mb.upn, *extra.get(mb.address, ()))
            self.mailbox_index.add(mb.address, names)
            self.recipient_index.add(mb.address, names)
        for g in self.groups.values():
            self.recipient_index.add(g.address, (g.address, g.name, g.dn, g.guid, g.external_id,
                                                 *extra.get(g.address, ())))
        self.display_index = Index()
        for mb in self.mailboxes.values():
            self.display_index.add(mb.address, (mb.display_name,))

    # -------------------------------------------------------------------------------------------- mailboxes

    def mailbox(self, value: str) -> str | None:
        """The address of the mailbox a permission row's Identity names; None if none. Raises Ambiguous."""
        found = self.mailbox_index.lookup(value)
        if len(found) > 1:
            raise Ambiguous(value, sorted(found))
        return next(iter(found), None)

    def group(self, value: str) -> str | None:
        found = {k for k in self.recipient_index.lookup(value) if k in self.groups}
        if len(found) > 1:
            raise Ambiguous(value, sorted(found))
        return next(iter(found), None)

    # --------------------------------------------------------------------------------------------- trustees

    def trustee(self, value: str) -> Resolved:
        """Classify a Trustee/User cell. Raises Ambiguous for a name two SPs (or an SP and a recipient) share."""
        text = (value or "").strip()
        low = text.lower()
        if low in SELF_NAMES:
            return Resolved("self", "self")
        sps = self.sp_index.lookup(text)
        if SID.match(text) and not sps:  # a SID no service principal answers to: an orphaned (deleted) account
            return Resolved("sid", text.upper())
        recipients = self._recipient(text)
        if len(sps) > 1:
            raise Ambiguous(text, sorted(f"{self.sps[k].display_name} (AppId {k})" for k in sps))
        if sps and recipients:  # never guess between an app and a person: migrating a person's grant over-grants
            sp = self.sps[next(iter(sps))]
            raise Ambiguous(text, [f"service principal {sp.display_name} (AppId {sp.app_id})",
                                   *(f"recipient {r}" for r in sorted(recipients))])
        if sps:
            return Resolved("sp", next(iter(sps)))
        if not recipients:  # a display name is weak evidence, used only to recognise a human delegate
            recipients = self.display_index.lookup(text)
        if recipients:  # which human it is does not matter, only that it is not an app
            return Resolved("recipient", sorted(recipients)[0])
        return Resolved("unknown", low)

    def _recipient(self, text: str) -> set[str]:
        found = self.recipient_index.lookup(text)
        if not found and "\\" in text:  # DOMAIN\alias, the form hybrid and on-premises tenants show
            found = self.recipient_index.lookup(text.split("\\", 1)[1])
        return found
