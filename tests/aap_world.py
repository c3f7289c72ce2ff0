"""A seeded sandbox tenant for the Graph/EWS chaos runs (issue 16): every app shape the migration meets, small
enough that a killed-and-resumed `execute --all` stays within seconds per seed.

Apps (the mailbox sets are drawn from the seed; every mailbox is a UserMailbox, so any may scope a policy):
- RELAY: SMTP only, SendAs on a set;
- NOTIFIER: SMTP only, FullAccess used for SMTP (a relay set up as field guides do; removed with
  --remove-fullaccess);
- ARCHIVER: Graph Mail.Read and Calendars.Read, RestrictAccess on a nested group (Archive Scope holds Archive Team
  and a mailbox of its own: the reach is the flattened set);
- TWIN: Graph Mail.Read, RestrictAccess on a flat group whose direct members are exactly ARCHIVER's flattened set
  (equal reach: the two apps share the same cover);
- MIXED: SMTP SendAs on a set, Graph Mail.Send and Calendars.ReadWrite, EWS full_access_as_app, RestrictAccess on
  a nested group (Mixed Scope holds Mixed Team);
- DENIED: Graph Mail.Read, DenyAccess on a group (reach: every mailbox but the group's): reported, never migrated;
- OPEN: Graph Contacts.Read, no policy (tenant-wide): reported, never migrated.
"""

from __future__ import annotations

import random

from migrator.model import AAP_PERMISSIONS
from sandbox_world import ADMIN, EXO, SUFFIX, TENANT_ID, _uuid

GRAPH = "Microsoft Graph"
DOMAIN = "contoso.com"
APP_NAMES = {"relay": "Relay Mailer", "notifier": "Notifier", "archiver": "Mail Archiver",
             "twin": "Archive Indexer", "mixed": "Helpdesk Suite", "denied": "Legacy Reader",
             "open": "Contact Sync"}
# the apps whose Graph/EWS access a plan migrates, and the two it must only report
MIGRATED_MAIL_APPS = ("archiver", "twin", "mixed")
REPORTED_MAIL_APPS = ("denied", "open")


def _addr(name: str) -> str:
    return f"{name}@{DOMAIN}"


def make_aap_fixture(*, seed: int = 0, mailboxes: int = 12) -> tuple[dict, dict[str, str]]:
    """(fixture, {role: app id}) for the tenant above; the roles are the keys of APP_NAMES."""
    if mailboxes < 8:
        raise ValueError("the tenant needs at least 8 mailboxes")
    rng = random.Random(f"aap-world-{seed}")
    names = [f"user{i:02d}" for i in range(mailboxes)]
    mbx = [{"name": n, "alias": n, "display_name": n.title(), "primary_smtp": _addr(n), "upn": _addr(n),
            "recipient_type_details": "UserMailbox", "attributes": {}} for n in names]
    ids = {role: _uuid(rng) for role in APP_NAMES}

    def app(role: str, *roles: tuple[str, str]) -> dict:
        return {"app_id": ids[role], "display_name": APP_NAMES[role], "exchange_pointer": True,
                "app_roles": [{"resource": res, "permission": perm} for res, perm in roles]}

    smtp = (EXO, "SMTP.SendAsApp")
    apps = [app("relay", smtp), app("notifier", smtp),
            app("archiver", (GRAPH, "Mail.Read"), (GRAPH, "Calendars.Read")),
            app("twin", (GRAPH, "Mail.Read")),
            app("mixed", smtp, (GRAPH, "Mail.Send"), (GRAPH, "Calendars.ReadWrite"), (EXO, "full_access_as_app")),
            app("denied", (GRAPH, "Mail.Read")),
            app("open", (GRAPH, "Contacts.Read"))]

    def pick(lo: int, hi: int) -> list[str]:
        return sorted(rng.sample(names, rng.randint(lo, hi)))

    # nested groups: a team inside a scope group that also holds a direct member of its own
    archive_team = pick(2, 3)
    archive_own = rng.choice([n for n in names if n not in archive_team])
    archive_set = sorted([*archive_team, archive_own])
    mixed_team = pick(2, 4)
    mixed_own = rng.choice([n for n in names if n not in mixed_team])
    denied_set = pick(2, 4)

    def group(name: str, alias: str, members: list[str]) -> dict:
        return {"name": name, "alias": alias, "primary_smtp": _addr(alias), "type": "Security", "members": members}

    groups = [group("Archive Team", "archive-team", [_addr(n) for n in archive_team]),
              group("Archive Scope", "archive-scope", [_addr("archive-team"), _addr(archive_own)]),
              group("Archive Flat", "archive-flat", [_addr(n) for n in archive_set]),
              group("Mixed Team", "mixed-team", [_addr(n) for n in mixed_team]),
              group("Mixed Scope", "mixed-scope", [_addr("mixed-team"), _addr(mixed_own)]),
              group("Legacy Excluded", "legacy-excluded", [_addr(n) for n in denied_set])]
    policies = [{"app_id": ids["archiver"], "scope": _addr("archive-scope"), "access_right": "RestrictAccess",
                 "description": "archive"},
                {"app_id": ids["twin"], "scope": _addr("archive-flat"), "access_right": "RestrictAccess",
                 "description": "indexer"},
                {"app_id": ids["mixed"], "scope": _addr("mixed-scope"), "access_right": "RestrictAccess",
                 "description": "helpdesk"},
                {"app_id": ids["denied"], "scope": _addr("legacy-excluded"), "access_right": "DenyAccess",
                 "description": "keep out"}]
    sendas = [(ids["relay"], n) for n in pick(2, 5)] + [(ids["mixed"], n) for n in pick(1, 4)]
    fullaccess = [(ids["notifier"], n) for n in pick(1, 3)]
    fixture = {
        "format": 1,
        "tenant": {"id": TENANT_ID, "domain": "contoso.onmicrosoft.com", "name": "Contoso", "dn_suffix": SUFFIX},
        "mailboxes": mbx, "apps": apps,
        "admin": {"client_id": ADMIN, "display_name": "migrator", "secret": None,
                  "app_roles": [{"resource": EXO, "permission": "Exchange.ManageAsApp"},
                                {"resource": GRAPH, "permission": "Application.Read.All"},
                                {"resource": GRAPH, "permission": "AppRoleAssignment.ReadWrite.All"},
                                {"resource": GRAPH, "permission": "Policy.Read.All"}],
                  "directory_roles": ["Exchange Administrator"]},
        "groups": groups,
        "recipient_permissions": [{"mailbox": _addr(n), "trustee": {"app": a}, "access_rights": ["SendAs"]}
                                  for a, n in sendas],
        "mailbox_permissions": [{"mailbox": _addr(n), "user": {"app": a}, "access_rights": ["FullAccess"]}
                                for a, n in fullaccess],
        "management_scopes": [], "role_assignments": [], "application_access_policies": policies,
    }
    return fixture, ids


def mail_state(state) -> dict:
    """The Graph/EWS side of the tenant a rollback must restore and the reported apps must keep: every app's
    Entra application permissions of model.AAP_PERMISSIONS, every Application Access Policy (app, scope, right,
    description) and the members of every group the tool did not create (the policy groups among them)."""
    fx = state.snapshot()
    return {
        "groups": sorted((g["primary_smtp"], tuple(sorted(g["members"]))) for g in fx.get("groups", [])
                         if not g["name"].startswith("migrator-")),
        "app_roles": sorted((a["app_id"], r["resource"], r["permission"]) for a in fx["apps"]
                            for r in a.get("app_roles") or () if r["permission"] in AAP_PERMISSIONS),
        "policies": sorted(repr(sorted((k, v) for k, v in p.items() if k not in ("created", "identity")))
                           for p in fx.get("application_access_policies", [])),
    }


def app_mail_state(state, app_id: str) -> dict:
    """mail_state() restricted to one app."""
    full = mail_state(state)
    return {"app_roles": [r for r in full["app_roles"] if r[0] == app_id],
            "policies": [p for p in full["policies"] if app_id in p]}
