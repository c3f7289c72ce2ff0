"""The report's Graph/EWS section (Application Access Policies, issue 16), gathered from a Plan and its journal.

Two kinds of apps:
- migrated: the plan's mail_access.csv rows (an Entra permission fenced by RestrictAccess policies, served from
  the app's batch on by `Application <permission>` roles scoped to exactly the mailboxes the policies allow),
  with the policies the batch removes and, once the batch has run, what the journal says of its consent and
  policy removals;
- reported only: every other app plan.json's `mail_access` block lists (a DenyAccess policy, no policy at all,
  a policy fencing no permission, a part not read), with what an admin could do. The plan never touches them.
Pure: reads the plan (and a journal the caller opened); renderers only format it.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from functools import partial

from migrator.model import norm_id
from migrator.planner.plan import KIND_GRAPH_EWS

# plan.json `mail_access.apps[].status` (planner/aap_report.py) as the report names it
STATUS_TEXT = {
    "deny": "DenyAccess policy: RBAC has no deny",
    "tenant_wide": "no policy: already reaches every mailbox",
    "no_permission": "policy fences no permission the app holds",
    "unknown": "not known: a part was not read",
    "migrate": "not planned: its policies allow no mailbox, nothing to scope",
}


@dataclass(frozen=True)
class MailAppRow:
    """An app whose Graph/EWS access the plan moves off its access policies."""

    app_id: str
    name: str
    batch: int
    permissions: tuple[str, ...]  # the Entra permissions whose consent the batch removes
    roles: tuple[str, ...]        # the Application roles that serve them
    mailboxes: int                # what its policies allow today (nested groups flattened)
    groups: tuple[str, ...]       # groups (and attribute terms) its Application role assignments are scoped to
    policies: tuple[str, ...]     # "RestrictAccess <scope>": removed last
    state: str = "planned"        # from the journal: consent and policy removals


@dataclass(frozen=True)
class MailReportedRow:
    """An app an access policy or a fenced permission concerns that the plan does not migrate."""

    app_id: str
    name: str
    status: str                   # planner/aap_report.py STATUSES
    permissions: tuple[str, ...]
    mailboxes: str                # "every mailbox", "unknown" or a count
    policies: tuple[str, ...]
    advice: str                   # what an admin could do (or what is missing)

    @property
    def status_text(self) -> str:
        return STATUS_TEXT.get(self.status, self.status)


@dataclass(frozen=True)
class MailSection:
    migrated: tuple[MailAppRow, ...] = ()
    reported: tuple[MailReportedRow, ...] = ()
    not_read: tuple[str, ...] = ()  # why the inventory could not tell (the read block's why_* notes)


def mail_section(plan, journal_states: dict[str, str] | None = None) -> MailSection | None:
    """The section's facts; None when the plan says nothing about Graph/EWS access (a plan made before it)."""
    block = (plan.meta or {}).get("mail_access")
    block = block if isinstance(block, dict) else {}
    if not block and not plan.mail_access:
        return None
    read = block.get("read")
    read = read if isinstance(read, dict) else {}
    not_read = tuple(str(v) for k, v in read.items() if k.startswith("why_") and v)
    return MailSection(_migrated(plan, journal_states or {}), _reported(plan, block), not_read)


def _migrated(plan, states: dict[str, str]) -> tuple[MailAppRow, ...]:
    scopes = {s.key: s for s in plan.scopes}
    group_name = {g.key: g.name for g in plan.groups}
    perms: dict[str, list[str]] = defaultdict(list)
    roles: dict[str, list[str]] = defaultdict(list)
    batch: dict[str, int] = {}
    names: dict[str, str] = {}
    for m in plan.mail_access:
        perms[m.app_id].append(permission_text(m.permission, m.resource))
        roles[m.app_id].append(m.role)
        batch.setdefault(m.app_id, m.batch)
        names.setdefault(m.app_id, m.app_name)
    groups: dict[str, list[str]] = defaultdict(list)
    for a in plan.assignments:
        scope = scopes.get(a.scope)
        if a.kind != KIND_GRAPH_EWS or scope is None:
            continue
        groups[a.app_id] += [group_name.get(k, k) for k in scope.groups]
        groups[a.app_id] += [f"{attr} = {value}" for attr, value in scope.attributes]
    policies: dict[str, list[str]] = defaultdict(list)
    for p in plan.policies:
        policies[p.app_id].append(f"{p.access_right} {p.scope}")
    rows = [MailAppRow(app, names[app], batch[app], tuple(perms[app]), tuple(dict.fromkeys(roles[app])),
                       len(plan.mail_reach.get(app, ())), tuple(dict.fromkeys(groups[app])), tuple(policies[app]),
                       states.get(norm_id(app), "planned"))
            for app in perms]
    return tuple(sorted(rows, key=lambda r: (r.batch, r.name.lower(), r.app_id)))


def _reported(plan, block: dict) -> tuple[MailReportedRow, ...]:
    migrated = {m.app_id.lower() for m in plan.mail_access}
    rows = []
    for app in block.get("apps") or ():
        if not isinstance(app, dict) or str(app.get("app_id", "")).lower() in migrated:
            continue
        status = str(app.get("status", ""))
        count = app.get("mailboxes")
        reach = ("every mailbox" if status == "tenant_wide" else "unknown" if count is None else str(count))
        pols = tuple(f"{p.get('access_right', '')} {p.get('scope', '')}" for p in app.get("policies") or ()
                     if isinstance(p, dict))
        rows.append(MailReportedRow(str(app.get("app_id", "")), str(app.get("app_name") or ""), status,
                                    tuple(_permission(str(p)) for p in app.get("permissions") or ()), reach, pols,
                                    str(app.get("note") or "")))
    order = {s: i for i, s in enumerate(STATUS_TEXT)}
    return tuple(sorted(rows, key=lambda r: (order.get(r.status, len(order)), r.name.lower(), r.app_id)))


def permission_text(permission: str, resource: str) -> str:
    return f"{permission} ({resource})" if resource else permission


def _permission(text: str) -> str:
    """plan.json's "Microsoft Graph/Mail.Read" as the report writes it: "Mail.Read (Microsoft Graph)"."""
    resource, _, permission = text.rpartition("/")
    return permission_text(permission, resource)


def journal_states(plan, journal) -> dict[str, str]:
    """Per migrated app (lower-case id): its consent and policy removals as the journal records them (the batch's
    latest generation; executor/aap.py: kind mail_consent, op delete / rollback grant; kind access_policy, op
    remove / rollback restore), in words; "planned" while its batch has not run."""
    from migrator.executor.aap import CONSENT as CONSENT_KIND
    from migrator.executor.aap import POLICY as POLICY_KIND
    from migrator.executor.aap import consent_key

    out: dict[str, str] = {}
    for app in plan.mail_apps():
        perms = [m for m in plan.mail_access if m.app_id == app]
        actions = journal.actions(batch=perms[0].batch)
        if not actions:
            out[norm_id(app)] = "planned"
            continue
        generation = max(a.generation for a in actions)
        latest = [a for a in actions if a.generation == generation and a.status in ("applied", "verified")]
        consents = {consent_key(app, m.permission) for m in perms}
        policies = {norm_id(p.identity) for p in plan.policies if p.app_id == app}
        done = partial(_count, latest)

        text = (f"consent removed: {done(CONSENT_KIND, 'execute', 'delete', consents)} of {len(consents)}; "
                f"policy removed: {done(POLICY_KIND, 'execute', 'remove', policies)} of {len(policies)}")
        restored = (done(POLICY_KIND, "rollback", "restore", policies),
                    done(CONSENT_KIND, "rollback", "grant", consents))
        if any(restored):
            text += (f"; rolled back: policy restored {restored[0]} of {len(policies)}, consent restored "
                     f"{restored[1]} of {len(consents)}")
        out[norm_id(app)] = text
    return out


def _count(actions: list, kind: str, phase: str, op: str, keys: set[str]) -> int:
    return sum(1 for a in actions if (a.kind, a.phase, a.op) == (kind, phase, op) and a.key in keys)
