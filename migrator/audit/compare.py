"""Compare what the tenant holds with what the applied plans say (pure): findings, and each app's reach.

A finding names the object, what changed, and the apps it affects with the effect on them: an over-grant (an app
can now reach a mailbox it was not given), an under-grant (an app lost one it was given), or a return of the legacy
pattern. Each app's SMTP reach today is its role assignment's scope (the members of the groups it matches) plus its
legacy grants while its token carries the SMTP.SendAsApp claim.
"""

from __future__ import annotations

from dataclasses import dataclass

from migrator.audit.expected import Expected
from migrator.audit.observed import Observed
from migrator.executor.steps import normalise_filter

NEW_LEGACY_GRANT = "new legacy grant"
LEFTOVER_LEGACY_GRANT = "legacy grant left after migration"
LEGACY_GRANT_REMOVED = "legacy grant removed"
MEMBER_ADDED = "group member added"
MEMBER_REMOVED = "group member removed"
GROUP_MISSING = "group missing"
SCOPE_MISSING = "scope missing"
SCOPE_CHANGED = "scope filter changed"
ASSIGNMENT_MISSING = "role assignment missing"
ASSIGNMENT_CHANGED = "role assignment changed"
EXTRA_ASSIGNMENT = "extra role assignment"
CLAIM_BACK = "SMTP.SendAsApp claim re-granted"
MAIL_CONSENT_BACK = "Graph/EWS consent re-granted"
MAIL_POLICY_BACK = "access policy back"
MAIL_ASSIGNMENT_MISSING = "Graph/EWS role assignment missing"
MAIL_ASSIGNMENT_CHANGED = "Graph/EWS role assignment changed"
MAIL_NOT_READ = "Graph/EWS access not read"
ORPHAN = "tool-made object no plan uses"


@dataclass(frozen=True)
class Finding:
    kind: str
    target: str  # the object: a group, scope or assignment name, or "app on mailbox"
    detail: str
    apps: tuple[str, ...]  # app ids affected
    effect: str  # "over-grant" | "under-grant" | "legacy pattern back" | "configuration drift" | "clean-up"

    def to_dict(self) -> dict:
        return {"kind": self.kind, "target": self.target, "detail": self.detail, "apps": list(self.apps),
                "effect": self.effect}


@dataclass(frozen=True)
class Reach:
    app_id: str
    name: str
    planned: int
    now: int
    extra: tuple[str, ...]  # mailboxes reached now that the plan did not give
    missing: tuple[str, ...]  # mailboxes given that it cannot reach now

    def to_dict(self) -> dict:
        return {"app_id": self.app_id, "app_name": self.name, "planned": self.planned, "now": self.now,
                "extra": list(self.extra), "missing": list(self.missing)}


def compare(exp: Expected, obs: Observed) -> list[Finding]:
    return (_legacy(exp, obs) + _groups(exp, obs) + _scopes(exp, obs) + _assignments(exp, obs) + _claims(exp, obs)
            + _mail(exp, obs)
            + _orphans(exp, obs))


def _legacy(exp: Expected, obs: Observed) -> list[Finding]:
    out = []
    for app_id, mailbox, right in sorted(obs.grants):
        entry = exp.apps.get(app_id)
        if entry is not None and (mailbox, right) in entry.legacy:
            continue
        if (app_id, mailbox, right) in exp.source_grants:
            if entry is None:
                continue  # an app the given plans hold but do not judge (batch in progress)
            out.append(Finding(LEFTOVER_LEGACY_GRANT, f"{app_id} on {mailbox}", f"{right} is still granted; the "
                               "migration removed it", (app_id,), "legacy pattern back"))
        else:
            out.append(Finding(NEW_LEGACY_GRANT, f"{app_id} on {mailbox}", f"{right} granted per mailbox since the "
                               "plan was made; give access through `migrator grant` instead", (app_id,),
                               "legacy pattern back"))
    for app_id, entry in sorted(exp.apps.items()):
        for mailbox, right in sorted(entry.legacy):
            if (app_id, mailbox, right) not in obs.grants:
                out.append(Finding(LEGACY_GRANT_REMOVED, f"{app_id} on {mailbox}", f"{right} the plan keeps is gone",
                                   (app_id,), "under-grant"))
    return out


def _groups(exp: Expected, obs: Observed) -> list[Finding]:
    out = []
    for name, members in sorted(exp.groups.items()):
        apps = tuple(sorted(exp.group_apps.get(name, ())))
        now = obs.groups.get(name.lower())
        if now is None:
            out.append(Finding(GROUP_MISSING, name, "the group is gone", apps, "under-grant"))
            continue
        for mailbox in sorted(now - members):
            out.append(Finding(MEMBER_ADDED, name, f"{mailbox} added", apps, "over-grant"))
        for mailbox in sorted(members - now):
            out.append(Finding(MEMBER_REMOVED, name, f"{mailbox} removed", apps, "under-grant"))
    return out


def _scope_apps(exp: Expected, scope: str) -> tuple[str, ...]:
    return tuple(sorted(app for app, _role, s in exp.assignments.values() if s == scope))


def _scopes(exp: Expected, obs: Observed) -> list[Finding]:
    out = []
    for name, wanted in sorted(exp.scopes.items()):
        now = obs.scopes.get(name.lower())
        apps = _scope_apps(exp, name)
        if now is None:
            out.append(Finding(SCOPE_MISSING, name, "the management scope is gone", apps, "under-grant"))
        elif wanted and normalise_filter(now.filter) != normalise_filter(wanted):
            out.append(Finding(SCOPE_CHANGED, name, f"filter is now {now.filter!r}; it was set to {wanted!r}", apps,
                               "configuration drift"))
    return out


def _assignments(exp: Expected, obs: Observed) -> list[Finding]:
    out = []
    for name, (app_id, role, scope) in sorted(exp.assignments.items()):
        now = obs.assignments.get(name.lower())
        if now is None:
            out.append(Finding(ASSIGNMENT_MISSING, name, f"{role} for the app is gone", (app_id,), "under-grant"))
            continue
        holder = obs.principal_app.get(now.assignee, now.assignee)
        changes = []
        if now.scope.lower() != scope.lower():
            changes.append(f"scope {now.scope!r} instead of {scope!r}")
        if holder != app_id:
            changes.append(f"assigned to {now.assignee!r} instead of the app")
        if changes:
            out.append(Finding(ASSIGNMENT_CHANGED, name, "; ".join(changes), (app_id,), "configuration drift"))
    planned = {n.lower() for n in exp.assignments}
    for lower, now in sorted(obs.assignments.items()):
        holder = obs.principal_app.get(now.assignee, now.assignee)
        entry = exp.apps.get(holder)
        if lower not in planned and lower not in exp.existing and entry is not None and not _tool_made(exp, now.name):
            out.append(Finding(EXTRA_ASSIGNMENT, now.name, f"an assignment of {now.role or 'the role'} the plan does "
                               f"not make (scope {now.scope!r})", (holder,), "over-grant"))
    return out


def _claims(exp: Expected, obs: Observed) -> list[Finding]:
    return [Finding(CLAIM_BACK, entry.app_id, "the Entra SMTP.SendAsApp assignment is back (a later 'Grant admin "
                    "consent'?): the app's new tokens take the legacy path again, where its grants are gone",
                    (entry.app_id,), "under-grant")
            for entry in sorted(exp.apps.values(), key=lambda e: e.app_id)
            if entry.migrated and entry.app_id in obs.claims]


def _mail(exp: Expected, obs: Observed) -> list[Finding]:
    """Graph/EWS apps moved off their access policies: a consent back (with no policy left it reaches every mailbox),
    a removed policy back, their role assignments gone or moved."""
    out = []
    if exp.mail and not obs.mail_read:
        return [Finding(MAIL_NOT_READ, "Graph/EWS", "the access policies or the apps' permissions could not be "
                        "read: the moved apps' consents are not audited", tuple(sorted(exp.mail)), "not audited")]
    for app_id, m in sorted(exp.mail.items()):
        back = sorted(obs.mail_consents.get(app_id, set()) & m.permissions)
        policies = obs.mail_policies.get(app_id, set())
        if back:
            wide = not policies
            out.append(Finding(MAIL_CONSENT_BACK, app_id, f"Entra consent {', '.join(back)} is held again (a later "
                               "'Grant admin consent'?)" + (": with its access policy gone the app reaches EVERY "
                               "mailbox with it; remove the consent" if wide else
                               "; an access policy fences it, but not the one the plan removed"),
                               (app_id,), "over-grant" if wide else "configuration drift"))
        returned = sorted(policies & m.policies)
        if returned:
            out.append(Finding(MAIL_POLICY_BACK, app_id, f"{len(returned)} access polic(ies) the batch removed are "
                               "there again: they fence nothing while the consent is gone, and would fence a later "
                               "consent", (app_id,), "configuration drift"))
        for name, role, scope in m.assignments:
            now = obs.mail_assignments.get(name.lower())
            if now is None:
                out.append(Finding(MAIL_ASSIGNMENT_MISSING, name, f"{role} for the app is gone", (app_id,),
                                   "under-grant"))
            elif now[0] != app_id or now[1].lower() != role.lower() or now[2].lower() != scope.lower():
                out.append(Finding(MAIL_ASSIGNMENT_CHANGED, name, f"now {now[1]} for {now[0]} on {now[2]!r}, the "
                                   f"plan made {role} on {scope!r}", (app_id,), "configuration drift"))
    return out


def _tool_made(exp: Expected, name: str) -> bool:
    lower = name.lower()
    return any(lower.startswith(p + "-") for p in exp.prefixes)


def _orphans(exp: Expected, obs: Observed) -> list[Finding]:
    known = {n.lower() for n in exp.tool_names}
    out = []
    for kind, names in (("group", [obs.group_names[k] for k in obs.groups]),
                        ("scope", [s.name for s in obs.scopes.values()]),
                        ("role assignment", [a.name for a in obs.assignments.values()])):
        for name in sorted(names):
            if _tool_made(exp, name) and name.lower() not in known:
                out.append(Finding(ORPHAN, name, f"a {kind} named like this tool's objects that none of the given "
                                   "plans makes", (), "clean-up"))
    return out


def reach(exp: Expected, obs: Observed) -> list[Reach]:
    """Per migrated app: its SMTP reach today (its scope's groups' members, as long as the scope's filter is the
    one set, plus its legacy grants while it holds the claim) against the reach the plan gave it."""
    rows = []
    for entry in sorted(exp.apps.values(), key=lambda e: e.app_id):
        if not entry.migrated:
            continue
        now: set[str] = set()
        assignment = obs.assignments.get(entry.assignment.lower()) if entry.assignment else None
        if assignment is not None and assignment.scope.lower() == entry.scope.lower():
            for group in entry.groups:
                now |= obs.groups.get(group.lower(), frozenset())
        for name, scope, text, members in entry.held:  # an existing assignment the plan built on, as it was
            found = obs.assignments.get(name.lower())
            scope_now = obs.scopes.get(scope.lower())
            if found is None:
                continue
            if text:  # on a management scope: the same one, its filter as read at the inventory
                if found.scope.lower() == scope.lower() and scope_now is not None \
                        and normalise_filter(scope_now.filter) == normalise_filter(text):
                    now |= members
            else:  # a group (its hidden scope) or the organisation
                now |= members
        if entry.app_id in obs.claims:
            now |= {m for a, m, _r in obs.grants if a == entry.app_id}
        rows.append(Reach(entry.app_id, entry.name, len(entry.reach), len(now), tuple(sorted(now - entry.reach)),
                          tuple(sorted(entry.reach - now))))
    return rows
