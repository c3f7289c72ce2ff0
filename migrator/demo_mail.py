"""`migrator demo`'s Graph/EWS part (Application Access Policies): the apps it adds to the sample tenant, and what
it checks of them at the end.

Added to the Contoso sample before the sandbox starts:
- Contoso Mail Archiver: Microsoft Graph Mail.Read and Mail.Send, fenced by a RestrictAccess policy on
  "Archive Scope", a security group holding two mailboxes and the Legal Notices Senders group (nested). The plan
  moves it to `Application Mail.Read` and `Application Mail.Send` on one flat group of the 11 mailboxes;
- Contoso EWS Sync: Office 365 Exchange Online full_access_as_app with a DenyAccess policy on Legal Notices Senders:
  reported, never touched (RBAC for Applications has no deny).
The sample's CRM Sync Service already holds Graph Mail.Send with no policy (tenant-wide): reported, never touched.
"""

from __future__ import annotations

import copy

GRAPH = "Microsoft Graph"
EXCHANGE = "Office 365 Exchange Online"
ARCHIVER = "a7c41e00-5eed-4d3a-9c1b-0000000000a1"
EWS_SYNC = "a7c41e00-5eed-4d3a-9c1b-0000000000a2"
CRM_SYNC = "4bc4cc06-e755-4e26-b57c-152b978feafb"  # in the Contoso sample: Graph Mail.Send, no policy
ARCHIVE_SCOPE = "archive-scope@contoso.com"
NESTED = "legal-notices-senders@contoso.com"  # a security group of the sample, nested in Archive Scope
ARCHIVE_DIRECT = ("renee.robbins@contoso.com", "jana.soto@contoso.com")
MIGRATED = (ARCHIVER,)
# plan.json mail_access statuses (planner/aap_report.py) in the story's words
STATUS_WORDS = {"deny": "DenyAccess", "tenant_wide": "no policy: tenant-wide", "no_permission": "fences nothing",
                "unknown": "not read", "migrate": "nothing to scope"}
REPORTED = (EWS_SYNC, CRM_SYNC)


def with_mail_apps(fixture: dict) -> dict:
    """A copy of the sample fixture with the two apps, the nested scope group and the two policies."""
    data = copy.deepcopy(fixture)

    def app(app_id: str, name: str, *roles: tuple[str, str]) -> dict:
        return {"app_id": app_id, "display_name": name, "exchange_pointer": True,
                "app_roles": [{"resource": res, "permission": perm} for res, perm in roles]}

    data["apps"] = [*data.get("apps", []),
                    app(ARCHIVER, "Contoso Mail Archiver", (GRAPH, "Mail.Read"), (GRAPH, "Mail.Send")),
                    app(EWS_SYNC, "Contoso EWS Sync", (EXCHANGE, "full_access_as_app"))]
    data["groups"] = [*data.get("groups", []),
                      {"name": "Archive Scope", "alias": "archive-scope", "primary_smtp": ARCHIVE_SCOPE,
                       "type": "Security", "members": [*ARCHIVE_DIRECT, NESTED]}]
    data["application_access_policies"] = [
        *(data.get("application_access_policies") or []),
        {"app_id": ARCHIVER, "scope": ARCHIVE_SCOPE, "access_right": "RestrictAccess",
         "description": "Mail Archiver: archive mailboxes only"},
        {"app_id": EWS_SYNC, "scope": NESTED, "access_right": "DenyAccess", "description": "no EWS on legal"}]
    return data


def describe_tenant() -> str:
    """Chapter 1's line about the Graph/EWS apps."""
    return ("Graph/EWS: Contoso Mail Archiver (Graph Mail.Read, Mail.Send) fenced by a RestrictAccess policy on "
            "Archive Scope, which nests Legal Notices Senders; Contoso EWS Sync (EWS full_access_as_app) with a "
            "DenyAccess policy; CRM Sync Service (Graph Mail.Send) with no policy")


def describe_plan(plan) -> str:
    """Chapter 3's line: what the plan moves, what it reports only."""
    block = (plan.meta or {}).get("mail_access") or {}
    reported = [a for a in block.get("apps") or () if isinstance(a, dict) and not a.get("planned")]
    moved = ", ".join(f"{_name(plan, app)} ({len(plan.mail_reach.get(app, ()))} mailboxes, batch "
                      f"{next(m.batch for m in plan.mail_access if m.app_id == app)})" for app in plan.mail_apps())
    roles = sum(1 for a in plan.assignments if a.kind == "graph-ews")
    told = ", ".join(f"{a.get('app_name') or a.get('app_id')} "
                     f"({STATUS_WORDS.get(str(a.get('status')), str(a.get('status')))})" for a in reported)
    return (f"Graph/EWS: {moved or 'no app'} -> {roles} Application role assignment(s); reported only, not "
            f"touched: {told or 'none'}")


def _name(plan, app_id: str) -> str:
    return next((m.app_name for m in plan.mail_access if m.app_id == app_id), app_id)


class MailWatch:
    """What the Graph/EWS apps reached and held when the sandbox started, and the checks against it."""

    def __init__(self, sb) -> None:
        self.reach = sb.mail_access()  # app -> permission -> mailboxes a token reaches (None: every mailbox)
        self.config = sb.mail_config([*MIGRATED, *REPORTED])

    def migrated_problems(self, sb, plan, applied: set[int]) -> list[str]:
        """Each migrated app of an applied batch: every permission served on exactly its original mailboxes, by
        RBAC alone (consent gone, policy gone); of a batch not applied (rolled back): consent and policy as at the
        start, with the same reach."""
        now_reach = sb.mail_access(plan.mail_apps())
        now_config = sb.mail_config(plan.mail_apps())
        problems: list[str] = []
        for app in plan.mail_apps():
            batch = next(m.batch for m in plan.mail_access if m.app_id == app)
            name = _name(plan, app)
            for perm in sorted({m.permission for m in plan.mail_access if m.app_id == app}):
                had, has = self.reach.get(app, {}).get(perm), now_reach.get(app, {}).get(perm)
                if has != had:
                    problems.append(f"{name} {perm}: reaches {_size(has)} mailbox(es), had {_size(had)}")
            config = now_config.get(app, {})
            want = {"consents": [], "policies": []} if batch in applied else self.config.get(app)
            if config != want:
                problems.append(f"{name} (batch {batch}): consents {config.get('consents')} and policies "
                                f"{config.get('policies')}, expected {want}")
        return problems

    def untouched_problems(self, sb) -> list[str]:
        """The reported apps (DenyAccess, no policy): consents, policies and reach exactly as at the start."""
        now_config = sb.mail_config(REPORTED)
        now_reach = sb.mail_access(REPORTED)
        problems = [f"app {app}: {now_config.get(app)} now, {self.config.get(app)} at the start"
                    for app in REPORTED if now_config.get(app) != self.config.get(app)]
        problems += [f"app {app}: reaches {now_reach.get(app)} now" for app in REPORTED
                     if now_reach.get(app) != self.reach.get(app)]
        return problems


def timeline_problems(report) -> list[str]:
    """The sandbox's per-permission Graph/EWS timeline check (mailaccess.check_mail) as problems."""
    out = [f"gap: app {i.app_id} {i.permission} on {i.mailbox} ({i.reason})" for i in report.mail_gaps]
    out += [f"over-grant: app {i.app_id} {i.permission} on {i.mailbox} ({i.reason})" for i in report.mail_overgrants]
    return out


def _size(reach) -> str:
    return "every" if reach is None else str(len(reach))


def describe_batches(plan, numbers: list[int]) -> str:
    """A line for the chapter that runs `numbers`: the Graph/EWS apps they move, and in what order ("" if none)."""
    apps = [app for app in plan.mail_apps() if next(m.batch for m in plan.mail_access if m.app_id == app) in numbers]
    if not apps:
        return ""
    which = ", ".join(f"{_name(plan, app)} (batch {next(m.batch for m in plan.mail_access if m.app_id == app)})"
                      for app in apps)
    return (f"Graph/EWS: {which} moves too: its Application roles with the SMTP ones, its Entra consent removed at "
            "the cut-over, its access policy only after the token wait")
