"""A small tenant fixture for the sandbox state tests (built in code so each test can vary it)."""

from __future__ import annotations

import copy

from migrator.sandbox import Clock, SandboxSettings, TenantState

TENANT_ID = "11111111-2222-3333-4444-555555555555"
ADMIN = "aaaaaaaa-0000-0000-0000-000000000001"
BILLING = "b0000000-0000-0000-0000-000000000001"  # app: SendAs on adele, bob (claim granted)
CRM = "c0000000-0000-0000-0000-000000000002"      # app: SendAs on carol
DUP1 = "d0000000-0000-0000-0000-000000000003"     # two apps share a display name
DUP2 = "d0000000-0000-0000-0000-000000000004"
READER = "e0000000-0000-0000-0000-000000000005"   # IMAP-only app: FullAccess on adele, IMAP.AccessAsApp, no SMTP
SUFFIX = ("OU=contoso.onmicrosoft.com,OU=Microsoft Exchange Hosted Organizations,DC=NAMPR03A001,DC=prod,"
          "DC=outlook,DC=com")

EXO = "Office 365 Exchange Online"
_MAILBOXES = [
    ("adele.vance", "Adele Vance", {"Department": "Sales", "CustomAttribute1": "emea"}),
    ("bob.obrien", "Bob O'Brien", {"Department": "Sales"}),
    ("carol.diaz", "Carol Diaz", {"Department": "Finance", "CustomAttribute1": "amer"}),
    ("dan.wu", "Dan Wu", {"Department": "Finance"}),
    ("erin.li", "Erin Li", {}),
]


def fixture() -> dict:
    mailboxes = [{"name": n, "alias": n, "display_name": d, "primary_smtp": f"{n}@contoso.com",
                  "upn": f"{n}@contoso.com", "recipient_type_details": "UserMailbox", "attributes": a}
                 for n, d, a in _MAILBOXES]
    mailboxes[4]["recipient_type_details"] = "SharedMailbox"
    mailboxes[0]["email_addresses"] = ["smtp:adele@contoso.onmicrosoft.com"]

    def app(app_id, name, claim=True, pointer=True, imap=False):
        roles = [{"resource": EXO, "permission": "SMTP.SendAsApp"}] if claim else []
        roles += [{"resource": EXO, "permission": "IMAP.AccessAsApp"}] if imap else []
        return {"app_id": app_id, "display_name": name, "exchange_pointer": pointer, "app_roles": roles}

    return copy.deepcopy({
        "format": 1,
        "tenant": {"id": TENANT_ID, "domain": "contoso.onmicrosoft.com", "name": "Contoso", "dn_suffix": SUFFIX},
        "mailboxes": mailboxes,
        "apps": [app(BILLING, "Billing Mailer"), app(CRM, "CRM Notifier"), app(DUP1, "Twin App"),
                 app(DUP2, "Twin App", claim=False), app(READER, "Helpdesk Reader", claim=False, imap=True)],
        "admin": {"client_id": ADMIN, "display_name": "migrator", "secret": "s3cret-admin",
                  "app_roles": [{"resource": EXO, "permission": "Exchange.ManageAsApp"},
                                {"resource": "Microsoft Graph", "permission": "Application.Read.All"},
                                {"resource": "Microsoft Graph", "permission": "AppRoleAssignment.ReadWrite.All"},
                                {"resource": "Microsoft Graph", "permission": "User.Read.All"}],
                  "directory_roles": ["Exchange Administrator"]},
        "groups": [{"name": "Sales Senders", "alias": "sales-senders", "primary_smtp": "sales-senders@contoso.com",
                    "type": "Security", "cn": "Sales Senders 7f3a",
                    "members": ["adele.vance@contoso.com", "bob.obrien@contoso.com"]},
                   {"name": "All Staff", "alias": "all-staff", "primary_smtp": "all-staff@contoso.com",
                    "type": "Distribution", "members": ["sales-senders@contoso.com", "carol.diaz@contoso.com"]}],
        "recipient_permissions": [
            {"mailbox": "adele.vance@contoso.com", "trustee": {"app": BILLING}, "access_rights": ["SendAs"]},
            {"mailbox": "bob.obrien@contoso.com", "trustee": {"app": BILLING}, "access_rights": ["SendAs"]},
            {"mailbox": "carol.diaz@contoso.com", "trustee": {"app": CRM}, "access_rights": ["SendAs"]},
            {"mailbox": "adele.vance@contoso.com", "trustee": {"self": True}, "access_rights": ["SendAs"]},
            {"mailbox": "dan.wu@contoso.com", "trustee": {"app": CRM}, "access_rights": ["SendAs"],
             "is_inherited": True},
            {"mailbox": "dan.wu@contoso.com", "trustee": {"app": CRM}, "access_rights": ["SendAs"],
             "access_control_type": "Deny"},
            {"mailbox": "erin.li@contoso.com", "trustee": {"sid": "S-1-5-21-1-2-3-4444"},
             "access_rights": ["SendAs"]},
            {"mailbox": "erin.li@contoso.com", "trustee": {"mailbox": "dan.wu@contoso.com"},
             "access_rights": ["SendAs"]},
        ],
        "mailbox_permissions": [
            {"mailbox": "adele.vance@contoso.com", "user": {"app": READER}, "access_rights": ["FullAccess"]},
            {"mailbox": "adele.vance@contoso.com", "user": {"self": True},
             "access_rights": ["FullAccess", "ReadPermission"], "is_inherited": False},
        ],
        "management_scopes": [], "role_assignments": [], "application_access_policies": [
            {"app_id": CRM, "scope": "sales-senders@contoso.com", "access_right": "RestrictAccess"}],
        "administrative_units": [{"id": "au000000-0000-0000-0000-000000000001", "display_name": "EMEA",
                                  "members": ["adele.vance@contoso.com"]}],
    })


def make_state(*, extra_mailbox_permissions=(), extra_roles=(), **settings) -> TenantState:
    """The tenant above; `extra_mailbox_permissions` (mailbox, app id) adds FullAccess grants, `extra_roles`
    (app id, Exchange Online app role) Entra app roles, to the loaded state. Legacy grants and Graph assignment
    writes take effect at once unless a test asks for a delay (sendas_delay, graph_replication_delay), so each test
    sees only the delays it studies."""
    settings.setdefault("sendas_delay", 0.0)
    settings.setdefault("graph_replication_delay", 0.0)
    data = fixture()
    for app_id, permission in extra_roles:
        next(a for a in data["apps"] if a["app_id"] == app_id)["app_roles"].append(
            {"resource": EXO, "permission": permission})
    data["mailbox_permissions"] += [{"mailbox": m, "user": {"app": a}, "access_rights": ["FullAccess"]}
                                    for m, a in extra_mailbox_permissions]
    return TenantState.from_fixture(data, clock=Clock.manual(), settings=SandboxSettings(**settings))


def admin(state: TenantState):
    return state.admin_caller()


def run(state: TenantState, cmdlet: str, **params):
    return state.invoke(cmdlet, params, caller=state.admin_caller())
