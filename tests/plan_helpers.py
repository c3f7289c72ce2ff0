"""Small inventories for the planner's tests, built from readable specs."""

from __future__ import annotations

from pathlib import Path

from migrator.inventory.store import Inventory, write_inventory
from migrator.model import Grant, Group, Mailbox, Right, ServicePrincipal

DOMAIN = "contoso.com"
DN_SUFFIX = "OU=contoso.onmicrosoft.com,OU=Microsoft Exchange Hosted Organizations,DC=NAMPR03A001,DC=prod,DC=outlook,DC=com"


def addr(local: str) -> str:
    return local if "@" in local else f"{local}@{DOMAIN}"


def make_inventory(sendas: dict[str, list[str]], *, fullaccess: dict[str, list[str]] | None = None,
                   groups: dict[str, list[str]] | None = None, other_members: dict[str, int] | None = None,
                   attributes: dict[str, dict[str, str]] | None = None, extra_mailboxes: list[str] = (),
                   permissions: list[tuple[str, str, str]] = (), names: dict[str, str] | None = None,
                   permissions_known: bool = True) -> Inventory:
    """sendas: app id -> mailbox local parts; groups: group local part -> member local parts;
    attributes: mailbox local part -> {attribute: value}. `permissions` are the apps' Entra app roles, all of them
    unless `permissions_known` is False (exports without the app-role file)."""
    fullaccess = fullaccess or {}
    groups = groups or {}
    other_members = other_members or {}
    attributes = attributes or {}
    names = names or {}
    apps = sorted(set(sendas) | set(fullaccess))
    sps = tuple(ServicePrincipal(a, f"00000000-0000-0000-0000-{i:012d}", names.get(a, f"App {a}"))
                for i, a in enumerate(apps, start=1))
    grants = [Grant(a, addr(m), Right.SEND_AS) for a, ms in sendas.items() for m in ms]
    grants += [Grant(a, addr(m), Right.FULL_ACCESS) for a, ms in fullaccess.items() for m in ms]
    locals_ = sorted({m for ms in [*sendas.values(), *fullaccess.values(), *groups.values()] for m in ms}
                     | set(attributes) | set(extra_mailboxes))
    mailboxes = tuple(Mailbox(addr(m), name=m.split("@")[0], alias=m.split("@")[0], display_name=m.title(),
                              dn=f"CN={m},{DN_SUFFIX}",
                              attributes=tuple(sorted(attributes.get(m, {}).items())))
                      for m in locals_)
    group_objs = tuple(Group(addr(g), name=g, dn=f"CN={g},{DN_SUFFIX}", recipient_type="MailUniversalSecurityGroup",
                             members=frozenset(addr(m) for m in ms), other_members=other_members.get(g, 0))
                       for g, ms in groups.items())
    return Inventory(sps, mailboxes, tuple(grants), group_objs, tuple(permissions),
                     {"format": 1, "source": "exports", "created": "2026-01-01T00:00:00Z"},
                     app_permissions_known=permissions_known)


def write(inv: Inventory, folder: Path) -> Path:
    return write_inventory(inv, folder)
