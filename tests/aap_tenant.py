"""A sandbox tenant with Application Access Policies (nested groups, RestrictAccess and DenyAccess) and apps holding
Graph/EWS permissions, built on the small tenant of sandbox_tenant.py."""

from __future__ import annotations

from sandbox_tenant import fixture

GRAPH = "Microsoft Graph"
EXO = "Office 365 Exchange Online"
ARCHIVER = "f0000000-0000-0000-0000-000000000006"  # Graph Mail.Read + Mail.Send, RestrictAccess on a nested group
EWSAPP = "f0000000-0000-0000-0000-000000000007"    # EWS full_access_as_app, DenyAccess on Sales Senders
OPEN = "f0000000-0000-0000-0000-000000000008"      # Graph Calendars.ReadWrite, no policy: tenant-wide
MAILBOXES = {"adele.vance@contoso.com", "bob.obrien@contoso.com", "carol.diaz@contoso.com", "dan.wu@contoso.com",
             "erin.li@contoso.com"}
ARCHIVE_SET = {"adele.vance@contoso.com", "bob.obrien@contoso.com", "carol.diaz@contoso.com"}


def aap_fixture() -> dict:
    data = fixture()

    def app(app_id, name, *perms):
        return {"app_id": app_id, "display_name": name, "exchange_pointer": True,
                "app_roles": [{"resource": res, "permission": perm} for res, perm in perms]}

    data["apps"] += [app(ARCHIVER, "Mail Archiver", (GRAPH, "Mail.Read"), (GRAPH, "Mail.Send")),
                     app(EWSAPP, "EWS Sync", (EXO, "full_access_as_app")),
                     app(OPEN, "Room Booker", (GRAPH, "Calendars.ReadWrite"))]
    data["groups"] += [
        # nested: Sales Senders (adele, bob) inside Archive Scope
        {"name": "Archive Scope", "alias": "archive-scope", "primary_smtp": "archive-scope@contoso.com",
         "type": "Security", "members": ["carol.diaz@contoso.com", "sales-senders@contoso.com"]},
        # the same three mailboxes as direct members: what an RBAC scope needs
        {"name": "Archive Flat", "alias": "archive-flat", "primary_smtp": "archive-flat@contoso.com",
         "type": "Security", "members": sorted(ARCHIVE_SET)}]
    data["application_access_policies"] += [
        {"app_id": ARCHIVER, "scope": "archive-scope@contoso.com", "access_right": "RestrictAccess",
         "description": " "},
        {"app_id": EWSAPP, "scope": "sales-senders@contoso.com", "access_right": "DenyAccess"}]
    return data
