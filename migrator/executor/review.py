"""What a batch run is about to change, for the question asked before its first write (docs/design.md §2).

`pending_change(ctx, ...)` is built after the preflight (so the service principals are resolved and drift is
ruled out) and before the first write of the invocation; `PendingChange.text()` is what `execute` and `rollback`
show. Counts come from the plan (execute) or from the journal (rollback: what this batch actually changed).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from migrator.executor.states import BatchState
from migrator.model import norm_id
from migrator.planner.plan import NEW


@dataclass(frozen=True)
class AppChange:
    app_id: str
    name: str
    mailboxes: int  # SendAs mailboxes that move to RBAC (execute) or whose grants are restored (rollback)


@dataclass(frozen=True)
class PendingChange:
    phase: str  # execute | rollback
    tenant: str
    plan: str
    batch: int
    resuming: bool  # the batch was started before: this run continues it
    apps: tuple[AppChange, ...]
    counts: dict[str, int] = field(default_factory=dict)
    steps: tuple[str, ...] = ()  # the steps still to run, in order

    def text(self) -> str:
        c = self.counts
        verb = "Roll back" if self.phase == "rollback" else "Apply"
        again = " (resuming where it stopped)" if self.resuming else ""
        lines = [f"Tenant: {self.tenant}",
                 f"{verb} batch {self.batch} of {self.plan}{again}: {len(self.apps)} app(s)"]
        unit = "SendAs grant(s) to restore" if self.phase == "rollback" else "mailbox(es) to move to RBAC"
        for app in self.apps:
            lines.append(f"  {app.name or '(no name)'}  [{app.app_id}]  {app.mailboxes} {unit}")
        if self.phase == "rollback":
            lines.append(f"  restore {c.get('sendas', 0)} SendAs and {c.get('fullaccess', 0)} FullAccess grant(s) "
                         "this batch removed")
            if c.get("policies"):
                lines.append(f"  restore {c['policies']} Application Access Policy(ies) this batch removed, then wait "
                             "for them to apply")
            if c.get("entra"):
                lines.append(f"  re-grant {c['entra']} Entra SMTP.SendAsApp assignment(s), then wait the token "
                             "lifetime")
            if c.get("mail_consents"):
                lines.append(f"  re-grant {c['mail_consents']} Entra Graph/EWS consent(s) (after the policies "
                             "apply), then wait the token lifetime")
            lines.append(f"  remove {c.get('assignments', 0)} role assignment(s), {c.get('scopes', 0)} scope(s), "
                         f"{c.get('groups', 0)} group(s), {c.get('pointers', 0)} service-principal pointer(s) this "
                         "tool created")
        else:
            lines.append(f"  create or check {c.get('groups_new', 0)} group(s) (reuse {c.get('groups_reused', 0)}), "
                         f"{c.get('scopes', 0)} scope(s), {c.get('assignments', 0)} role assignment(s)")
            if c.get("cutover"):
                lines.append(f"  after the propagation wait: remove {c['cutover']} Entra SMTP.SendAsApp "
                             "assignment(s) (the cut-over)")
            if c.get("mail_consents"):
                lines.append(f"  after the propagation wait: remove {c['mail_consents']} Entra Graph/EWS consent(s) "
                             "now served by RBAC")
            full = f" and {c['fullaccess']} FullAccess grant(s)" if c.get("fullaccess") else ""
            lines.append(f"  after the token wait: remove {c.get('sendas', 0)} legacy SendAs grant(s){full}")
            if c.get("policies"):
                lines.append(f"  after the token wait: remove {c['policies']} Application Access Policy(ies), once "
                             "their app's consents read back gone")
        if self.steps:
            lines.append("Steps to run: " + ", ".join(s.replace("_", " ") for s in self.steps))
        return "\n".join(lines)

    def as_json(self) -> dict:
        return {"phase": self.phase, "tenant": self.tenant, "plan": self.plan, "batch": self.batch,
                "resuming": self.resuming, "counts": dict(self.counts), "steps": list(self.steps),
                "apps": [{"app_id": a.app_id, "name": a.name, "mailboxes": a.mailboxes} for a in self.apps]}


def tenant_label(profile) -> str:
    """How the question names the tenant: its id (or domain) and the profile's name."""
    if profile is None:
        return "(unknown tenant)"
    tenant = str(getattr(profile, "tenant_id", "") or "")
    name = str(getattr(profile, "name", "") or "")
    return f"{tenant} (profile {name})" if name and name != tenant else tenant or "(unknown tenant)"


def pending_change(ctx, *, tenant: str, state: str, steps: list[str]) -> PendingChange:
    view = ctx.view
    if ctx.phase == "rollback":
        return _rollback_change(ctx, tenant=tenant, state=state, steps=steps)
    apps = tuple(AppChange(a, view.app_names.get(a, ""), len(view.rbac_mailboxes(a))) for a in view.apps)
    counts = {
        "groups_new": sum(1 for g in view.groups if g.status == NEW),
        "groups_reused": sum(1 for g in view.groups if g.status != NEW),
        "scopes": len(view.scopes),
        "assignments": len(view.assignments),
        "cutover": len(view.smtp_apps) if ctx.settings.cutover else 0,
        "sendas": len(view.migrate_grants("SendAs")),
        "fullaccess": len(view.migrate_grants("FullAccess")),
        "mail_consents": len(view.mail_access) if ctx.settings.cutover else 0,
        "policies": len(view.policies) if ctx.settings.cutover else 0,
    }
    return PendingChange("execute", tenant, str(ctx.plan.path), view.number, state != BatchState.NEW, apps, counts,
                         tuple(steps))


def _rollback_change(ctx, *, tenant: str, state: str, steps: list[str]) -> PendingChange:
    view, journal = ctx.view, ctx.journal

    def removed(kind: str) -> list:
        return [a for a in journal.actions(batch=view.number, generation=ctx.generation, phase="execute", kind=kind)
                if a.op in ("remove", "delete")]

    sendas = removed("sendas")
    per_app: dict[str, int] = {}
    for action in sendas:
        app_id = norm_id(action.key.split("|", 1)[0])
        per_app[app_id] = per_app.get(app_id, 0) + 1
    created = [o for o in journal.objects() if o.created_batch == view.number and o.state != "removed"]
    kinds = {k: sum(1 for o in created if o.kind == k) for k in ("assignment", "scope", "group", "sp_pointer")}
    apps = tuple(AppChange(a, view.app_names.get(a, ""), per_app.get(a, 0)) for a in view.apps)
    counts = {"sendas": len(sendas), "fullaccess": len(removed("fullaccess")),
              "entra": len(removed("entra_assignment")), "assignments": kinds["assignment"],
              "mail_consents": len(removed("mail_consent")), "policies": len(removed("access_policy")),
              "scopes": kinds["scope"], "groups": kinds["group"], "pointers": kinds["sp_pointer"]}
    return PendingChange("rollback", tenant, str(ctx.plan.path), view.number, state == "rolling_back", apps, counts,
                         tuple(steps))
