"""A synthetic tenant for the executor's integration, chaos and benchmark runs: a sandbox fixture with `apps` apps
holding SendAs on random mailboxes (seeded), and the real planner's plan for it. With `shapes`, the apps take every
access shape in turn: SendAs only, FullAccess only for SMTP (a relay set up as field guides do), both rights with
IMAP, FullAccess for IMAP only. The pointers keep the sandbox's default DisplayName ("EXO SP for <Entra name>").

The few-second `token_lifetime` these runs use applies to the apps' tokens only: the admin's tokens live
`admin_token_lifetime` (an hour by default, SandboxSettings), so msal does not fetch a token before every call.
"""

from __future__ import annotations

import random
import uuid
from pathlib import Path

from migrator import csvio

TENANT_ID = "5a1d0000-0000-4000-8000-000000000001"
ADMIN = "5a1d0000-0000-4000-8000-0000000000ad"
CUTOVER_ADMIN = "5a1d0000-0000-4000-8000-0000000000ae"
SUFFIX = ("OU=contoso.onmicrosoft.com,OU=Microsoft Exchange Hosted Organizations,DC=NAMPR03A001,DC=prod,"
          "DC=outlook,DC=com")
EXO = "Office 365 Exchange Online"


def _uuid(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


SHAPES = ("sendas", "fullaccess", "both", "imap")


def make_fixture(*, seed: int = 0, mailboxes: int = 16, apps: int = 5, per_app: tuple[int, int] = (1, 6),
                 no_pointer: int = 0, clusters: int = 0, least_privilege: bool = False,
                 shapes: bool = False) -> tuple[dict, set[tuple[str, str]]]:
    """(fixture, SMTP reach as (app_id, mailbox)). `clusters` > 0 gives apps shared mailbox sets (so the
    planner shares groups between apps, possibly across batches). `least_privilege`: the run's admin app lacks
    Graph AppRoleAssignment.ReadWrite.All, which a second admin app (`cutover_admin`, served as the sandbox's
    cutover profile) holds, with no Exchange permission at all. `shapes`: app i has shape SHAPES[i % 4]."""
    rng = random.Random(seed)
    names = [f"user{i:05d}" for i in range(mailboxes)]
    mbx = [{"name": n, "alias": n, "display_name": n.title(), "primary_smtp": f"{n}@contoso.com",
            "upn": f"{n}@contoso.com", "recipient_type_details": "SharedMailbox", "attributes": {}} for n in names]
    app_rows, perms, mperms, grants = [], [], [], set()
    pools = [rng.sample(names, min(len(names), rng.randint(*per_app))) for _ in range(clusters)]
    for i in range(apps):
        app_id = _uuid(rng)
        shape = SHAPES[i % len(SHAPES)] if shapes else "sendas"
        roles = [] if shape == "imap" else [{"resource": EXO, "permission": "SMTP.SendAsApp"}]
        roles += [{"resource": EXO, "permission": "IMAP.AccessAsApp"}] if shape in ("both", "imap") else []
        app_rows.append({"app_id": app_id, "display_name": f"Mailer {i:04d}", "exchange_pointer": i >= no_pointer,
                         "app_roles": roles})
        chosen = pools[i % clusters] if clusters else rng.sample(names, min(len(names), rng.randint(*per_app)))
        fullaccess: list[str] = []
        if shape == "both":  # FullAccess on part of its SendAs set and on a mailbox of its own
            fullaccess = chosen[: max(1, len(chosen) // 2)] + rng.sample([n for n in names if n not in chosen], 1)
        elif shape in ("fullaccess", "imap"):
            fullaccess, chosen = chosen, []
        for n in chosen:
            perms.append({"mailbox": f"{n}@contoso.com", "trustee": {"app": app_id}, "access_rights": ["SendAs"]})
            grants.add((app_id, f"{n}@contoso.com"))
        for n in fullaccess:
            mperms.append({"mailbox": f"{n}@contoso.com", "user": {"app": app_id}, "access_rights": ["FullAccess"]})
            if shape != "imap":
                grants.add((app_id, f"{n}@contoso.com"))
    fixture = {
        "format": 1,
        "tenant": {"id": TENANT_ID, "domain": "contoso.onmicrosoft.com", "name": "Contoso", "dn_suffix": SUFFIX},
        "mailboxes": mbx, "apps": app_rows,
        "admin": {"client_id": ADMIN, "display_name": "migrator", "secret": None,
                  "app_roles": [{"resource": EXO, "permission": "Exchange.ManageAsApp"},
                                {"resource": "Microsoft Graph", "permission": "Application.Read.All"},
                                {"resource": "Microsoft Graph", "permission": "AppRoleAssignment.ReadWrite.All"},
                                {"resource": "Microsoft Graph", "permission": "Policy.Read.All"}],
                  "directory_roles": ["Exchange Administrator"]},
        "groups": [], "recipient_permissions": perms, "mailbox_permissions": mperms,
        "management_scopes": [], "role_assignments": [], "application_access_policies": [],
    }
    if least_privilege:
        fixture["admin"]["app_roles"] = [r for r in fixture["admin"]["app_roles"]
                                         if r["permission"] != "AppRoleAssignment.ReadWrite.All"]
        fixture["cutover_admin"] = {"client_id": CUTOVER_ADMIN, "display_name": "migrator cut-over", "secret": None,
                                    "app_roles": [{"resource": "Microsoft Graph", "permission": "Application.Read.All"},
                                                  {"resource": "Microsoft Graph",
                                                   "permission": "AppRoleAssignment.ReadWrite.All"}],
                                    "directory_roles": []}
    return fixture, grants


def make_plan(fixture: dict, out: Path, *, pilot: int = 1, batch_size: int = 2,
              remove_fullaccess: bool = False) -> Path:
    """The real planner's plan for the fixture's grants, from an inventory that knows the apps' Entra permissions
    (as a live inventory would); SendAs-only fixtures go through a grants CSV source, as before."""
    from migrator.inventory.store import Inventory
    from migrator.model import Grant, Mailbox, Right, ServicePrincipal
    from migrator.planner.build import PlanOptions, build_plan
    from migrator.planner.plan import write_plan
    from migrator.planner.source import Source, load_source

    names = {a["app_id"]: a["display_name"] for a in fixture["apps"]}
    options = PlanOptions(pilot=pilot, batch_size=batch_size, time_limit=10, remove_fullaccess=remove_fullaccess)
    out.parent.mkdir(parents=True, exist_ok=True)
    if not fixture["mailbox_permissions"]:
        rows = sorted((p["trustee"]["app"], p["mailbox"], "SendAs", names[p["trustee"]["app"]])
                      for p in fixture["recipient_permissions"] if "app" in p["trustee"])
        src = out.parent / "grants.csv"
        csvio.write_csv(src, ("app_id", "mailbox", "right", "app_name"), rows)
        return write_plan(build_plan(load_source(src), options), out)
    grants = [Grant(p["trustee"]["app"], p["mailbox"], Right.SEND_AS) for p in fixture["recipient_permissions"]
              if "app" in p["trustee"]]
    grants += [Grant(p["user"]["app"], p["mailbox"], Right.FULL_ACCESS) for p in fixture["mailbox_permissions"]
               if "app" in p["user"]]
    holders = {g.app_id for g in grants}
    sps = tuple(ServicePrincipal(a["app_id"], "", a["display_name"]) for a in fixture["apps"]
                if a["app_id"] in holders)
    perms = tuple((a["app_id"], r["resource"], r["permission"]) for a in fixture["apps"] for r in a["app_roles"])
    inv = Inventory(sps, tuple(Mailbox(m["primary_smtp"]) for m in fixture["mailboxes"]),
                    tuple(sorted(set(grants), key=lambda g: (g.app_id, g.mailbox, g.right.value))), (), perms,
                    {"format": 1, "source": "tenant"}, app_permissions_known=True)
    source = Source.from_inventory(inv, "inventory", (out.parent / "inventory").as_posix(), "0" * 64)
    return write_plan(build_plan(source, options), out)


def tenant_shape(state) -> dict:
    """What rollback must restore exactly: grants, claims, pointers, groups, scopes, assignments (ids left out)."""
    fx = state.snapshot()
    return {
        "recipient_permissions": sorted(repr(sorted(p.items())) for p in fx.get("recipient_permissions", [])),
        "mailbox_permissions": sorted(repr(sorted(p.items())) for p in fx.get("mailbox_permissions", [])),
        "apps": sorted((a["app_id"], a.get("exchange_pointer"), repr(a.get("app_roles"))) for a in fx["apps"]),
        "groups": sorted(g["name"] for g in fx.get("groups", [])),
        "management_scopes": sorted(repr(s) for s in fx.get("management_scopes", [])),
        "role_assignments": sorted(repr(r) for r in fx.get("role_assignments", [])),
    }
