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
