"""What a migration of Application Access Policies to RBAC for Applications would do, per app (issue 16): a
read-only report from the inventory. Pure: no tenant I/O; nothing here is wired into a plan or the executor.

For each app holding permissions an access policy fences (model.AAP_PERMISSIONS), or named by a policy:
- the mailboxes its Entra permissions reach today, by Microsoft's rules over the policy groups' *flattened*
  members (docs/exchange.md §8): a DenyAccess policy containing a mailbox denies it, a RestrictAccess policy
  containing it grants it, an app with RestrictAccess policies reaches nothing else, an app with none of its
  policies matching reaches every mailbox;
- a status:
  `migrate`       RestrictAccess only, every part known: per permission, the `Application <P>` role scoped to
                  exactly that set (RBAC sees direct members only, hence the flattened set); an existing group
                  whose direct members are exactly the set could be reused (`reuse_group`);
  `deny`          a DenyAccess policy: no RBAC equivalent; reported with what an admin could do, never migrated;
  `tenant_wide`   no policy: the consent already reaches every mailbox; reported with what an admin could do;
  `no_permission` policies but no fenced permission consented: the policy fences nothing today;
  `unknown`       a part was not read (policies, the groups' members, the permissions) or a policy's scope was
                  not found: nothing is guessed.
Apps with equal sets are listed together (`shared_with`): a plan would give them one group through the same
minimal cover as the SMTP apps.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

from migrator.inventory.mailaccess import AccessPolicy, MailAccess
from migrator.model import AAP_PERMISSIONS, Group

MIGRATE = "migrate"
DENY = "deny"
TENANT_WIDE = "tenant_wide"
NO_PERMISSION = "no_permission"
UNKNOWN = "unknown"
STATUSES = (MIGRATE, DENY, TENANT_WIDE, NO_PERMISSION, UNKNOWN)

ADVICE = {
    DENY: ("keep the DenyAccess policy while Application Access Policies are served", "or scope the app yourself: "
           "a flat group of the mailboxes it may reach (or a management scope with -not (MemberOfGroup -eq "
           "'<flat group of the denied mailboxes>')), the Application roles on it, then remove the consent and the "
           "policy, in that order; mailboxes created later are then outside (or inside) by your choice"),
    TENANT_WIDE: ("the consent reaches every mailbox today and stays so if nothing is done",
                  "to scope it: decide the mailboxes it needs, put them in a group, assign the Application roles on "
                  "it, then remove the Entra consent (no policy to remove)"),
    NO_PERMISSION: ("the policy fences no permission the app holds today: it could be removed, after checking "
                    "the app needs none (a later consent would be fenced by it)",),
    UNKNOWN: ("re-run the inventory with what is missing (the export script's access-policies, group members "
              "and app-role-assigned-to files, or a live inventory)",),
}


@dataclass(frozen=True)
class RoleTarget:
    permission: str  # the Entra permission today
    resource: str  # Microsoft Graph | Office 365 Exchange Online
    role: str  # the Application role that replaces it


@dataclass(frozen=True)
class AppAccessReport:
    app_id: str
    app_name: str
    status: str  # STATUSES
    reach: frozenset[str] | None  # mailboxes the consent reaches today (None: unknown or every mailbox)
    targets: tuple[RoleTarget, ...]  # one per fenced permission held
    policies: tuple[AccessPolicy, ...]
    reuse_group: str = ""  # an existing group whose direct members are exactly `reach`
    shared_with: tuple[str, ...] = ()  # other apps (status migrate) with the same reach
    why: str = ""  # for unknown: what is missing
    advice: tuple[str, ...] = ()

    @property
    def tenant_wide(self) -> bool:
        return self.status == TENANT_WIDE


def report_apps(access: MailAccess, mailboxes: frozenset[str], groups: tuple[Group, ...] = (), *,
                names: dict[str, str] | None = None) -> tuple[AppAccessReport, ...]:
    """One report per app, sorted by app id. `mailboxes`: every mailbox of the inventory (what no policy, or a
    DenyAccess, leaves reachable); `groups`: the inventory's groups (their direct members, for reuse)."""
    names = dict(names or {})
    held: dict[str, list[RoleTarget]] = defaultdict(list)
    for p in access.permissions:
        held[p.app_id].append(RoleTarget(p.permission, p.resource, AAP_PERMISSIONS[p.permission][1]))
        names.setdefault(p.app_id, p.app_name)
    by_app: dict[str, list[AccessPolicy]] = defaultdict(list)
    for pol in access.policies:
        by_app[pol.app_id].append(pol)
    scopes = access.scope_mailboxes() if access.members_read else {}
    reports = []
    for app in sorted(set(held) | set(by_app)):
        targets = tuple(sorted(set(held.get(app, ())), key=lambda t: (t.resource, t.permission)))
        pols = tuple(by_app.get(app, ()))
        reports.append(_one(app, names.get(app, ""), targets, pols, access, scopes, mailboxes))
    return _with_sharing(tuple(reports), groups)


def _one(app: str, name: str, targets: tuple[RoleTarget, ...], pols: tuple[AccessPolicy, ...], access: MailAccess,
         scopes: dict[str, frozenset[str]], mailboxes: frozenset[str]) -> AppAccessReport:
    def made(status: str, reach: frozenset[str] | None, why: str = "") -> AppAccessReport:
        return AppAccessReport(app, name, status, reach, targets, pols, why=why, advice=ADVICE.get(status, ()))

    missing = [what for what, ok in (("the access policies", access.policies_read),
                                     ("the apps' Entra permissions", access.permissions_read)) if not ok]
    if pols and not access.members_read:
        missing.append("the policy groups' members")
    lost = [p.scope for p in pols if p.scope_kind == "unknown"]
    if lost:
        missing.append(f"the scope of {len(lost)} polic{'y' if len(lost) == 1 else 'ies'} ({', '.join(lost)})")
    if missing:
        return made(UNKNOWN, None, "not read: " + "; ".join(missing))
    if not pols:
        return made(TENANT_WIDE, None)
    denied = frozenset().union(*(scopes.get(p.scope, frozenset()) for p in pols if p.access_right == "DenyAccess"))
    restricts = [p for p in pols if p.access_right == "RestrictAccess"]
    allowed = (frozenset().union(*(scopes.get(p.scope, frozenset()) for p in restricts)) if restricts
               else mailboxes) - denied
    if not targets:
        return made(NO_PERMISSION, allowed)
    return made(DENY if denied or len(restricts) < len(pols) else MIGRATE, allowed)


def _with_sharing(reports: tuple[AppAccessReport, ...], groups: tuple[Group, ...]) -> tuple[AppAccessReport, ...]:
    from dataclasses import replace

    same: dict[frozenset[str], list[str]] = defaultdict(list)
    for r in reports:
        if r.status == MIGRATE and r.reach is not None:
            same[r.reach].append(r.app_id)
    # a flat group only: RBAC sees direct members, and a reviewer would not expect nested members to be ignored
    flat = {g.members: g.address for g in sorted(groups, key=lambda g: g.address)
            if g.members and not g.other_members}
    out = []
    for r in reports:
        if r.status != MIGRATE or r.reach is None:
            out.append(r)
            continue
        out.append(replace(r, shared_with=tuple(a for a in same[r.reach] if a != r.app_id),
                           reuse_group=flat.get(r.reach, "")))
    return tuple(out)


def summary(reports: tuple[AppAccessReport, ...]) -> dict:
    """Counts per status, role assignments a migration would make (one per app and permission) and the distinct
    mailbox sets (groups) it would need at most."""
    per = {s: sum(1 for r in reports if r.status == s) for s in STATUSES}
    migrate = [r for r in reports if r.status == MIGRATE]
    return {"apps": per, "role_assignments": sum(len(r.targets) for r in migrate),
            "distinct_sets": len({r.reach for r in migrate}),
            "reusable_groups": len({r.reuse_group for r in migrate if r.reuse_group})}


def rows(reports: tuple[AppAccessReport, ...]) -> list[dict]:
    """One row per app and permission (one per app when it holds none): what a reviewer reads."""
    out = []
    for r in reports:
        reach = "every mailbox" if r.status == TENANT_WIDE else ("unknown" if r.reach is None else str(len(r.reach)))
        base = {"app_id": r.app_id, "app_name": r.app_name, "status": r.status, "mailboxes": reach,
                "policies": "; ".join(f"{p.access_right} {p.scope}" for p in r.policies),
                "reuse_group": r.reuse_group, "shared_with": ";".join(r.shared_with),
                "note": r.why or " ".join(r.advice)}
        for t in r.targets or (None,):
            out.append({**base, "permission": t.permission if t else "", "resource": t.resource if t else "",
                        "role": t.role if t and r.status == MIGRATE else ""})
    return out
