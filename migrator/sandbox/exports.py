"""The export script's files (inventory/export_script.py), made from a sandbox tenant as the script makes them, through
the real clients: how the Northwind sample's exports are generated (samples/make_northwind.py) and how the tests
compare the two inventory paths on the same tenant."""

from __future__ import annotations

import csv
from pathlib import Path

from migrator.inventory.export_script import SCRIPT_FILES
from migrator.inventory.tenant import Clients
from migrator.model import EXCHANGE_ONLINE_APP_ID, GRAPH_APP_ID


def _write(path: Path, columns: list[str], rows: list[dict]) -> None:
    with open(path, "w", newline="", encoding="utf-8-sig") as fh:
        w = csv.DictWriter(fh, columns, quoting=csv.QUOTE_ALL, extrasaction="ignore")
        w.writeheader()
        for r in rows:
            w.writerow({c: _text(r.get(c)) for c in columns})


def _text(value) -> str:
    if value is None:
        return ""
    if isinstance(value, list):
        return ", ".join(str(v) for v in value)
    return str(value)


def write_exports(clients: Clients, folder: Path) -> None:
    """The export script's files, made as the script makes them, from the sandbox through the real clients."""
    exo, graph = clients.exo, clients.graph
    folder.mkdir()
    cols = {name: columns for name, (_kind, columns) in SCRIPT_FILES.items()}
    _write(folder / "service-principals.csv", cols["service-principals.csv"], exo.get_service_principals())
    mailboxes = exo.get_mailboxes()
    _write(folder / "mailboxes.csv", cols["mailboxes.csv"],
           [{**m, "EmailAddresses": ";".join(a for a in m.get("EmailAddresses") or [] if a.lower().startswith("smtp:"))}
            for m in mailboxes])
    _write(folder / "recipient-permissions.csv", cols["recipient-permissions.csv"],
           [r for r in exo.scan_recipient_permissions() if not r.get("IsInherited")
            and r.get("Trustee") != "NT AUTHORITY\\SELF"])
    _write(folder / "mailbox-permissions.csv", cols["mailbox-permissions.csv"],
           [{**r, "Identity": m["PrimarySmtpAddress"]} for m in mailboxes
            for r in exo.get_mailbox_permissions(m["PrimarySmtpAddress"])
            if not r.get("IsInherited") and r.get("User") != "NT AUTHORITY\\SELF"])
    groups = exo.get_distribution_groups()
    _write(folder / "groups.csv", cols["groups.csv"], groups)
    _write(folder / "group-members.csv", cols["group-members.csv"],
           [{**m, "GroupIdentity": g["PrimarySmtpAddress"]} for g in groups
            for m in exo.get_group_members(g["PrimarySmtpAddress"])])
    _write(folder / "access-policies.csv", cols["access-policies.csv"], exo.get_application_access_policies())
    rows = []
    for resource_app in (GRAPH_APP_ID, EXCHANGE_ONLINE_APP_ID):
        res = graph.get_resource_service_principal(resource_app)
        values = {r["id"]: r["value"] for r in res["appRoles"]}
        for a in graph.list_app_role_assigned_to(res["id"]):
            principal = graph.request("GET", f"/servicePrincipals/{a['principalId']}?$select=id,appId")
            rows.append({"PrincipalId": a["principalId"], "PrincipalAppId": principal["appId"],
                         "PrincipalDisplayName": a["principalDisplayName"], "PrincipalType": a["principalType"],
                         "ResourceId": res["id"], "ResourceDisplayName": res["displayName"],
                         "AppRoleId": a["appRoleId"], "AppRoleValue": values[a["appRoleId"]]})
    _write(folder / "app-role-assigned-to.csv", cols["app-role-assigned-to.csv"], rows)
    # existing RBAC for Applications, as the script reads it (none in this tenant: header-only files, "read, none")
    _write(folder / "role-assignments.csv", cols["role-assignments.csv"],
           [{**r, "RoleAssignee": sp["ObjectId"]} for sp in exo.get_service_principals()
            for r in exo.invoke("Get-ManagementRoleAssignment", {"RoleAssignee": sp["ObjectId"]})
            if str(r.get("Role") or "").startswith("Application ")])
    _write(folder / "management-scopes.csv", cols["management-scopes.csv"], exo.get_management_scopes())
