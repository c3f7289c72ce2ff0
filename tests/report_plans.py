"""Small plans for the report and PowerShell tests, hostile names included, written by the planner's own
write_plan (so load_plan accepts them: hashes, counts and exactness)."""

from __future__ import annotations

from pathlib import Path

from migrator.planner.plan import (
    Plan,
    PlanAssignment,
    PlanBatch,
    PlanGrant,
    PlanGroup,
    PlanScope,
    render_filter,
    scope_kind,
    write_plan,
)

APP_ONEIL = "11111111-1111-4111-8111-111111111111"
APP_DOLLAR = "22222222-2222-4222-8222-222222222222"
APP_PLAIN = "33333333-3333-4333-8333-333333333333"

# Names chosen to break naive quoting: a quote, a typographic quote, a variable, a subexpression, backticks,
# a double quote, a Mermaid/HTML-significant mix and a newline.
HOSTILE_APP = "O'Neil Mailer"
HOSTILE_APP2 = 'Ops $x `whoami` "quoted" ‘smart’ $(Get-Date) <b>&amp;</b> [x](y) | #1'
HOSTILE_GROUP = "Senders O'Neil $x `t"
REUSED_GROUP = 'Fin "Ops" `$(calc)` O’Brien'
REUSED_DN = ("CN=Fin O'Brien $x,OU=contoso.onmicrosoft.com,OU=Microsoft Exchange Hosted Organizations,"
             "DC=NAMPR03A001,DC=prod,DC=outlook,DC=com")
ATTR_VALUE = "O'Neil $x `t \"q\""


ROLE = "Application SMTP.SendAsApp"


def _meta(lower_bound: int | None) -> dict:
    return {"format": 1, "created": "2026-11-26T12:00:00Z",
            "source": {"inventory": "inventory/test", "sha256": "0" * 64}, "role": ROLE, "options": {},
            "cover": {"strategy": "exact", "sets": None, "lower_bound": lower_bound, "optimal": True}}


def _scope(key, name, group_keys, attributes, groups, batch):
    return PlanScope(key, name, render_filter(group_keys, attributes, groups), tuple(group_keys),
                     scope_kind(group_keys, attributes), tuple(attributes), batch)


def hostile_plan(out: Path) -> Path:
    """Three apps in two batches: a new group, a reused group and an attribute scope, all with hostile names."""
    oneil = ["o'neil@contoso.com", "adele.vance@contoso.com"]
    fin = ["$x@contoso.com", "megan.bowen@contoso.com", "alex.wilber@contoso.com"]
    attr = ["nestor.wilke@contoso.com"]
    grants = [PlanGrant(APP_ONEIL, HOSTILE_APP, m, "SendAs", "migrate", "", 1) for m in oneil]
    grants += [PlanGrant(APP_ONEIL, HOSTILE_APP, "adele.vance@contoso.com", "FullAccess", "keep",
                         "IMAP/POP need FullAccess", None)]
    grants += [PlanGrant(APP_DOLLAR, HOSTILE_APP2, m, "SendAs", "migrate", "", 2) for m in fin + attr]
    grants += [PlanGrant(APP_PLAIN, "Plain App", m, "SendAs", "migrate", "", 2) for m in fin]
    groups = {
        "G0001": PlanGroup("G0001", HOSTILE_GROUP, "new", "", frozenset(oneil), "senders-oneil",
                           "senders-oneil@contoso.com", 1, 1),
        "G0002": PlanGroup("G0002", REUSED_GROUP, "reuse", REUSED_DN, frozenset(fin), "fin-ops",
                           "fin-ops@contoso.com", 2, 2),
    }
    scopes = [
        _scope("S0001", "migrator-S0001 O'Neil", ["G0001"], [], groups, 1),
        _scope("S0002", "migrator-S0002", ["G0002"], [], groups, 2),
        _scope("S0003", "migrator-S0003 $x", [], [("CustomAttribute1", ATTR_VALUE)], groups, 2),
    ]
    assignments = [
        PlanAssignment("A00001", APP_ONEIL, HOSTILE_APP, ROLE, "S0001", 1, "migrator-A00001"),
        PlanAssignment("A00002", APP_DOLLAR, HOSTILE_APP2, ROLE, "S0002", 2, "migrator-A00002"),
        PlanAssignment("A00003", APP_DOLLAR, HOSTILE_APP2, ROLE, "S0003", 2, "migrator-A00003 `$x'"),
        PlanAssignment("A00004", APP_PLAIN, "Plain App", ROLE, "S0002", 2, "migrator-A00004"),
    ]
    batches = [PlanBatch(1, (APP_ONEIL,), 2, "pilot", 2, 1, 1, 1),
               PlanBatch(2, (APP_DOLLAR, APP_PLAIN), 7, "wave 1 <script>alert(1)</script>", 4, 0, 2, 3)]
    plan = Plan(_meta(3), tuple(grants), tuple(groups.values()), tuple(scopes), tuple(assignments),
                tuple(batches), (("CustomAttribute1", ATTR_VALUE, attr[0]),))
    return write_plan(plan, out)


def large_plan(out: Path, apps: int = 40, mailboxes_per_app: int = 30, per_batch: int = 10) -> Path:
    """Many apps and mailboxes, one new group per app (for summarised diagrams and tables)."""
    grants, groups, scopes, assignments, batch_apps = [], {}, [], [], {}
    for i in range(apps):
        app_id = f"{i:08x}-0000-4000-8000-000000000000"
        name = f"App {i:03d}"
        batch = 1 + i // per_batch
        members = sorted({f"user{(i * 7 + j) % 500:04d}@contoso.com" for j in range(mailboxes_per_app)})
        key, skey, akey = f"G{i + 1:04d}", f"S{i + 1:04d}", f"A{i + 1:05d}"
        grants += [PlanGrant(app_id, name, m, "SendAs", "migrate", "", batch) for m in members]
        groups[key] = PlanGroup(key, f"migrator-{key}", "new", "", frozenset(members), f"migrator-{key.lower()}",
                                f"migrator-{key.lower()}@contoso.com", batch, 1)
        scopes.append(_scope(skey, f"migrator-{skey}", [key], [], groups, batch))
        assignments.append(PlanAssignment(akey, app_id, name, ROLE, skey, batch, f"migrator-{akey}"))
        batch_apps.setdefault(batch, []).append(app_id)
    batches = []
    for number, ids in sorted(batch_apps.items()):
        mine = [g for g in grants if g.batch == number]
        batches.append(PlanBatch(number, tuple(ids), len(mine), "pilot" if number == 1 else "",
                                 len({g.mailbox for g in mine}), len(ids), len(ids), len(ids)))
    plan = Plan(_meta(None), tuple(grants), tuple(groups.values()), tuple(scopes), tuple(assignments),
                tuple(batches))
    return write_plan(plan, out)


APP_ARCHIVER = "44444444-4444-4444-8444-444444444444"
APP_EWS = "55555555-5555-4555-8555-555555555555"
APP_ROOMS = "66666666-6666-4666-8666-666666666666"
APP_IDLE = "77777777-7777-4777-8777-777777777777"
APP_LOST = "88888888-8888-4888-8888-888888888888"
GRAPH, EXO = "Microsoft Graph", "Office 365 Exchange Online"
ARCHIVE_SET = ("adele.vance@contoso.com", "bob.obrien@contoso.com", "carol.diaz@contoso.com")


def _mail_app(app_id, name, status, *, planned=False, batch=None, mailboxes=None, permissions=(), roles=(),
              policies=(), note=""):
    return {"app_id": app_id, "app_name": name, "status": status, "planned": planned, "batch": batch,
            "mailboxes": mailboxes, "permissions": list(permissions), "roles": list(roles),
            "policies": [{"identity": f"contoso\\{app_id}:{scope}", "access_right": right, "scope": scope}
                         for right, scope in policies],
            "reuse_group": "", "shared_with": [], "note": note}


def aap_plan(out: Path) -> Path:
    """An SMTP app in batch 1 and a Graph app fenced by a RestrictAccess policy (on a nested group) in batch 2,
    moved to `Application Mail.Read` and `Application Mail.Send` on one new group; plan.json's `mail_access` block
    also lists a DenyAccess app, a tenant-wide app, a policy fencing nothing (hostile name) and an app with a part
    not read, all reported only."""
    from migrator.planner.plan import KIND_GRAPH_EWS, PlanMailAccess, PlanPolicy

    plain = ("megan.bowen@contoso.com", "alex.wilber@contoso.com")
    grants = [PlanGrant(APP_PLAIN, "Plain App", m, "SendAs", "migrate", "", 1) for m in plain]
    groups = {
        "G0001": PlanGroup("G0001", "migrator-G0001 Plain", "new", "", frozenset(plain), "migrator-g0001",
                           "migrator-g0001@contoso.com", 1, 1),
        "G0002": PlanGroup("G0002", "migrator-G0002 Archive", "new", "", frozenset(ARCHIVE_SET), "migrator-g0002",
                           "migrator-g0002@contoso.com", 2, 1),
    }
    scopes = [_scope("S0001", "migrator-S0001", ["G0001"], [], groups, 1),
              _scope("S0002", "migrator-S0002", ["G0002"], [], groups, 2)]
    assignments = [
        PlanAssignment("A00001", APP_PLAIN, "Plain App", ROLE, "S0001", 1, "migrator-A00001"),
        PlanAssignment("A00002", APP_ARCHIVER, "Mail Archiver", "Application Mail.Read", "S0002", 2,
                       "migrator-A00002", KIND_GRAPH_EWS),
        PlanAssignment("A00003", APP_ARCHIVER, "Mail Archiver", "Application Mail.Send", "S0002", 2,
                       "migrator-A00003", KIND_GRAPH_EWS),
    ]
    batches = [PlanBatch(1, (APP_PLAIN,), 2, "pilot", 2, 1, 1, 1),
               PlanBatch(2, (APP_ARCHIVER,), 0, "wave", 3, 1, 1, 2)]
    mail_access = (PlanMailAccess(APP_ARCHIVER, "Mail Archiver", "Mail.Read", GRAPH, "Application Mail.Read", 2),
                   PlanMailAccess(APP_ARCHIVER, "Mail Archiver", "Mail.Send", GRAPH, "Application Mail.Send", 2))
    policies = (PlanPolicy(f"contoso\\{APP_ARCHIVER}:archive-scope", APP_ARCHIVER, "Mail Archiver",
                           "RestrictAccess", "archive-scope@contoso.com", 2),)
    meta = _meta(2)
    meta["mail_access"] = {
        "read": {"policies_read": True, "members_read": True, "permissions_read": True},
        "apps": [
            _mail_app(APP_ARCHIVER, "Mail Archiver", "migrate", planned=True, batch=2, mailboxes=3,
                      permissions=(f"{GRAPH}/Mail.Read", f"{GRAPH}/Mail.Send"),
                      roles=("Application Mail.Read", "Application Mail.Send"),
                      policies=(("RestrictAccess", "archive-scope@contoso.com"),)),
            _mail_app(APP_EWS, "EWS Sync", "deny", mailboxes=297, permissions=(f"{EXO}/full_access_as_app",),
                      policies=(("DenyAccess", "legal@contoso.com"),), note="keep the DenyAccess policy"),
            _mail_app(APP_ROOMS, "Room Booker", "tenant_wide", permissions=(f"{GRAPH}/Calendars.ReadWrite",),
                      note="the consent reaches every mailbox today"),
            _mail_app(APP_IDLE, HOSTILE_APP2, "no_permission", mailboxes=2,
                      policies=(("RestrictAccess", "legal@contoso.com"),), note="the policy fences no permission"),
            _mail_app(APP_LOST, "Lost Scope", "unknown", permissions=(f"{GRAPH}/Mail.Read",),
                      policies=(("RestrictAccess", "gone-group"),), note="not read: the scope of 1 policy"),
        ]}
    plan = Plan(meta, tuple(grants), tuple(groups.values()), tuple(scopes), tuple(assignments), tuple(batches),
                mail_access=mail_access, mail_reach={APP_ARCHIVER: frozenset(ARCHIVE_SET)}, policies=policies)
    return write_plan(plan, out)
