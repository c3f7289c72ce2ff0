"""Large synthetic tenants as fixture dicts (INTERNALS.md §2): seeded, fast, with the overlap real tenants show.

Mailboxes belong to departments and teams (Department, CustomAttribute3 = team code, CustomAttribute1 = region),
so some apps' mailbox sets are exactly an attribute filter; existing groups mirror some teams; apps send as:
- one to three whole teams (an exact attribute scope may cover them),
- the members of an existing group (a group to reuse),
- a random part of a department (needs a new group),
- a handful of shared mailboxes (noreply@, billing@),
- exactly the same set as another app (identical rows the planner merges),
- a whole small department (rare, large).
Noise as in real exports: NT AUTHORITY\\SELF rows, inherited and Deny rows, orphaned SIDs, human delegates.
`python -m migrator.sandbox.synth --mailboxes 100000 --apps 2000 --seed 1 out.json` writes one.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import sys
import uuid
from pathlib import Path
from typing import Any

from migrator.model import EXCHANGE_MANAGE_AS_APP, EXCHANGE_ONLINE_NAME, GRAPH_NAME

EXO = EXCHANGE_ONLINE_NAME
FIRST = ("adele", "alex", "amir", "ana", "ben", "bianca", "carlos", "chen", "dana", "diego", "elena", "emma", "farah",
         "felix", "grace", "hana", "ivan", "jade", "jonas", "kai", "lara", "leo", "maria", "mateo", "nina", "noah",
         "olga", "omar", "priya", "quinn", "rosa", "sam", "sofia", "tariq", "uma", "vera", "wei", "yara", "zoe")
LAST = ("adams", "brown", "costa", "dubois", "evans", "fischer", "garcia", "haddad", "ito", "jensen", "kim",
        "lopez", "muller", "nakamura", "obrien", "patel", "quintero", "rossi", "silva", "tanaka", "ueda", "varga",
        "wang", "xu", "yilmaz", "zhou")
DEPARTMENTS = ("Sales", "Finance", "Engineering", "Support", "Marketing", "Operations", "Legal", "HR", "Logistics",
               "Procurement", "Research", "Facilities", "IT", "Security", "Customer Success", "Partners",
               "Manufacturing", "Quality", "Compliance", "Treasury")
REGIONS = ("emea", "amer", "apac")
APP_NOUNS = ("Mailer", "Notifier", "Relay", "Scanner", "Sync", "Alerts", "Reports", "Gateway", "Bot", "Connector")
APP_AREAS = ("Billing", "CRM", "Payroll", "Ticketing", "Monitoring", "Printing", "Invoices", "HR Portal", "Shipping",
             "Quotes", "Newsletter", "Backup", "Fax", "Survey", "Booking", "Claims", "Orders", "Audit", "Docs")


def _uuid(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def generate(*, mailboxes: int = 100_000, apps: int = 2_000, seed: int = 0, tenant_domain: str = "fabrikam",
             team_size: int = 40, self_row_ratio: float = 0.1) -> dict:
    """A tenant fixture dict. Same arguments, same tenant (byte for byte once dumped)."""
    if mailboxes < 1 or apps < 0:
        raise ValueError("need at least one mailbox and no negative app count")
    rng = random.Random(seed)
    onms = f"{tenant_domain}.onmicrosoft.com"
    mail = f"{tenant_domain}.com"
    tenant_id = _uuid(rng)
    suffix = (f"OU={onms},OU=Microsoft Exchange Hosted Organizations,DC=NAMPR{seed % 100:02d}A001,DC=prod,"
              "DC=outlook,DC=com")

    boxes, addresses, teams, shared = _mailboxes(rng, mailboxes, team_size, mail, onms)
    team_names = sorted(teams)
    depts: dict[str, list[str]] = {}
    for box in boxes:
        depts.setdefault(box["attributes"]["Department"], []).append(box["primary_smtp"])
    groups = _groups(rng, team_names, teams, addresses, mailboxes, mail)
    app_rows, sets = _apps(rng, apps, team_names, teams, groups, depts, shared, addresses, mailboxes)
    rperms, mperms = _permissions(rng, app_rows, sets, addresses, self_row_ratio)

    return {
        "format": 1,
        "tenant": {"id": tenant_id, "domain": onms, "name": tenant_domain.title(), "dn_suffix": suffix},
        "mailboxes": boxes,
        "apps": app_rows,
        "admin": {"client_id": _uuid(rng), "object_id": _uuid(rng), "display_name": "migrator", "secret": None,
                  "app_roles": [{"resource": EXO, "permission": EXCHANGE_MANAGE_AS_APP},
                                {"resource": GRAPH_NAME, "permission": "Application.Read.All"},
                                {"resource": GRAPH_NAME, "permission": "AppRoleAssignment.ReadWrite.All"},
                                {"resource": GRAPH_NAME, "permission": "User.Read.All"},
                                {"resource": GRAPH_NAME, "permission": "Policy.Read.All"}],
                  "directory_roles": ["Exchange Administrator"]},
        "groups": groups,
        "recipient_permissions": rperms,
        "mailbox_permissions": mperms,
        "management_scopes": [], "role_assignments": [], "application_access_policies": [],
    }


def _mailboxes(rng: random.Random, mailboxes: int, team_size: int, mail: str,
               onms: str) -> tuple[list[dict[str, Any]], list[str], dict[str, list[str]], list[str]]:
    """Mailboxes in departments of Zipf-like sizes and teams of about `team_size`: (rows, addresses, teams,
    shared mailboxes)."""
    # --- mailboxes: departments of Zipf-like sizes, teams of about `team_size`
    weights = [1 / (i + 1) ** 0.8 for i in range(len(DEPARTMENTS))]
    dept_of = rng.choices(range(len(DEPARTMENTS)), weights=weights, k=mailboxes)
    boxes: list[dict[str, Any]] = []
    addresses: list[str] = []
    teams: dict[str, list[str]] = {}
    team_counter = [0] * len(DEPARTMENTS)
    team_fill = [0] * len(DEPARTMENTS)
    shared: list[str] = []
    for i in range(mailboxes):
        d = dept_of[i]
        if team_fill[d] == 0:
            team_counter[d] += 1
            team_fill[d] = max(3, int(rng.gauss(team_size, team_size / 3)))
        team_fill[d] -= 1
        team = f"{DEPARTMENTS[d][:3].upper()}-{team_counter[d]:04d}"
        is_shared = rng.random() < 0.08
        if is_shared:
            local = f"{rng.choice(('noreply', 'billing', 'alerts', 'info', 'orders', 'support'))}-{i:06d}"
        else:
            local = f"{rng.choice(FIRST)}.{rng.choice(LAST)}{i:06d}"
        address = f"{local}@{mail}"
        attrs = {"Department": DEPARTMENTS[d], "CustomAttribute3": team, "CustomAttribute1": REGIONS[d % 3]}
        if rng.random() < 0.3:
            attrs["Office"] = rng.choice(("Paris", "Austin", "Tokyo", "Berlin", "Lagos", "Sydney"))
        boxes.append({"name": local, "alias": local, "display_name": local.replace(".", " ").title(),
                      "primary_smtp": address, "upn": address, "external_id": _uuid(rng), "guid": _uuid(rng),
                      "recipient_type_details": "SharedMailbox" if is_shared else "UserMailbox",
                      "email_addresses": [f"smtp:{local}@{onms}"], "attributes": attrs})
        addresses.append(address)
        teams.setdefault(team, []).append(address)
        if is_shared:
            shared.append(address)
    return boxes, addresses, teams, shared


def _groups(rng: random.Random, team_names: list[str], teams: dict[str, list[str]], addresses: list[str],
            mailboxes: int, mail: str) -> list[dict[str, Any]]:
    """Existing groups: some mirror a team exactly (reusable), some are random mixes."""
    # --- existing groups: some mirror a team exactly (reusable), some are random mixes
    groups: list[dict[str, Any]] = []
    for n, team in enumerate(rng.sample(team_names, k=min(len(team_names), max(1, len(team_names) // 10)))):
        groups.append({"name": f"Team {team}", "alias": f"team-{team.lower()}", "primary_smtp":
                       f"team-{team.lower()}@{mail}", "type": "Security" if n % 2 else "Distribution",
                       "cn": f"Team {team} {n:04x}", "members": list(teams[team])})
    for n in range(max(1, mailboxes // 2000)):
        size = min(mailboxes, int(rng.lognormvariate(3, 1)) + 2)
        groups.append({"name": f"Project {n:04d}", "alias": f"project-{n:04d}", "primary_smtp":
                       f"project-{n:04d}@{mail}", "type": "Security", "members": sorted(rng.sample(addresses, size))})
    for g in groups:
        g["guid"], g["external_id"] = _uuid(rng), _uuid(rng)
    return groups


def _apps(rng: random.Random, apps: int, team_names: list[str], teams: dict[str, list[str]],
          groups: list[dict[str, Any]], depts: dict[str, list[str]], shared: list[str], addresses: list[str],
          mailboxes: int) -> tuple[list[dict[str, Any]], list[list[str]]]:
    """Apps with the mailbox sets they send as (from teams, groups, departments, shared mailboxes or copies), then
    a few registered apps never wired up: (app rows, sets of the first `apps` rows)."""
    # --- apps and their mailbox sets
    app_rows: list[dict[str, Any]] = []
    sets: list[list[str]] = []
    names_used: dict[str, int] = {}
    for _ in range(apps):
        base = f"{rng.choice(APP_AREAS)} {rng.choice(APP_NOUNS)}"
        names_used[base] = names_used.get(base, 0) + 1
        # a few display names repeat on purpose (ambiguous trustees); most get a suffix
        name = base if names_used[base] == 1 or rng.random() < 0.02 else f"{base} {names_used[base]}"
        roll = rng.random()
        if roll < 0.30:
            chosen = set()
            for team in rng.sample(team_names, k=min(len(team_names), rng.choice((1, 1, 2, 3)))):
                chosen.update(teams[team])
        elif roll < 0.45 and groups:
            chosen = set(rng.choice(groups)["members"])
        elif roll < 0.70:
            pool = depts[rng.choice(sorted(depts))]
            size = min(len(pool), max(1, int(rng.lognormvariate(math.log(30), 1))))
            chosen = set(rng.sample(pool, size))
        elif roll < 0.85:
            pool = shared or addresses
            chosen = set(rng.sample(pool, min(len(pool), rng.randint(1, 5))))
        elif roll < 0.97 and sets:
            chosen = set(rng.choice([x for x in sets[-50:] if len(x) <= 500] or sets))
        else:
            smallest = min(sorted(depts), key=lambda d: len(depts[d]))
            chosen = set(depts[smallest]) if len(depts[smallest]) <= max(50, mailboxes // 50) else \
                set(rng.sample(depts[smallest], max(50, mailboxes // 50)))
        has_claim = rng.random() < 0.92
        roles = [{"resource": EXO, "permission": "SMTP.SendAsApp"}] if has_claim else []
        if rng.random() < 0.1:
            roles.append({"resource": GRAPH_NAME, "permission": "Mail.Send"})  # unscoped: makes RBAC moot
        app_rows.append({"app_id": _uuid(rng), "object_id": _uuid(rng), "display_name": name,
                         "exchange_pointer": True, "app_roles": roles, "secret": None, "certificate_pem": None})
        sets.append(sorted(chosen))
    # apps with no grants and no Exchange pointer (registered, never wired up)
    for _ in range(max(0, apps // 50)):
        app_rows.append({"app_id": _uuid(rng), "object_id": _uuid(rng), "display_name": "Unused "
                         + rng.choice(APP_NOUNS), "exchange_pointer": False, "app_roles": [],
                         "secret": None, "certificate_pem": None})
    return app_rows, sets


def _permissions(rng: random.Random, app_rows: list[dict[str, Any]], sets: list[list[str]], addresses: list[str],
                 self_row_ratio: float) -> tuple[list[dict], list[dict]]:
    """The apps' grants, then the noise a real export holds (self rows, human delegates, orphaned SIDs, inherited
    copies and Deny rows): (recipient permissions, mailbox permissions)."""
    # --- permissions (grants first, then noise)
    rperms, mperms = [], []
    for app, picked in zip(app_rows, sets):
        imap = rng.random() < 0.3
        for address in picked:
            rperms.append({"mailbox": address, "trustee": {"app": app["app_id"]}, "access_control_type": "Allow",
                           "access_rights": ["SendAs"], "is_inherited": False, "inheritance_type": "None"})
            if imap:
                mperms.append({"mailbox": address, "user": {"app": app["app_id"]}, "access_rights": ["FullAccess"],
                               "deny": False, "is_inherited": False, "inheritance_type": "All"})
    for address in addresses:
        r = rng.random()
        if r < self_row_ratio:
            rperms.append({"mailbox": address, "trustee": {"self": True}, "access_control_type": "Allow",
                           "access_rights": ["SendAs"], "is_inherited": False, "inheritance_type": "None"})
            mperms.append({"mailbox": address, "user": {"self": True}, "access_rights": ["FullAccess",
                           "ReadPermission"], "deny": False, "is_inherited": False, "inheritance_type": "All"})
        if r < 0.01:
            rperms.append({"mailbox": address, "trustee": {"mailbox": rng.choice(addresses)},
                           "access_control_type": "Allow", "access_rights": ["SendAs"], "is_inherited": False,
                           "inheritance_type": "None"})
        elif r < 0.012:
            rperms.append({"mailbox": address, "trustee": {"sid": f"S-1-5-21-{rng.getrandbits(31)}-"
                           f"{rng.getrandbits(31)}-{rng.getrandbits(31)}-{rng.randint(1000, 99999)}"},
                           "access_control_type": "Allow", "access_rights": ["SendAs"], "is_inherited": False,
                           "inheritance_type": "None"})
    granted = [(app, s) for app, s in zip(app_rows, sets) if s]
    for _ in range(max(1, len(rperms) // 500)):  # inherited copies and Deny rows of real grants
        app, picked = rng.choice(granted)
        address = rng.choice(picked)
        deny = rng.random() < 0.3
        rperms.append({"mailbox": address, "trustee": {"app": app["app_id"]}, "access_rights": ["SendAs"],
                       "access_control_type": "Deny" if deny else "Allow", "is_inherited": not deny,
                       "inheritance_type": "None" if deny else "All"})
    return rperms, mperms


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Write a synthetic sandbox tenant fixture (JSON).")
    ap.add_argument("out", type=Path, help="where to write tenant.json")
    ap.add_argument("--mailboxes", type=int, default=100_000, help="number of mailboxes")
    ap.add_argument("--apps", type=int, default=2_000, help="number of apps holding grants")
    ap.add_argument("--seed", type=int, default=0, help="random seed (same seed, same tenant)")
    args = ap.parse_args(argv)
    data = generate(mailboxes=args.mailboxes, apps=args.apps, seed=args.seed)
    tmp = args.out.with_suffix(args.out.suffix + ".tmp")
    tmp.write_text(json.dumps(data, separators=(",", ":")), encoding="utf-8")
    tmp.replace(args.out)
    print(f"{args.out}: {len(data['mailboxes'])} mailboxes, {len(data['apps'])} apps, "
          f"{len(data['recipient_permissions'])} recipient permission rows", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
