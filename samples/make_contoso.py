"""Generate the Contoso sample tenant: `migrator/samples/contoso/tenant.json` (the sandbox fixture, INTERNALS.md §2)
and `migrator/samples/contoso/exports/*.csv` (the same tenant as PowerShell Export-Csv files would show it). They
live inside the package so a wheel install carries them.

Deterministic: a seeded random.Random and fixed quotas, so every count below holds by construction and the
output is byte-identical on every run (tests/test_inventory_sample.py regenerates it and compares).

    python samples/make_contoso.py            # rewrite migrator/samples/contoso/
    python samples/make_contoso.py --check    # exit 1 if the files on disk differ from what it would write

The tenant, by construction
- 300 mailboxes: 260 UserMailbox + 40 SharedMailbox.
  Users by Department: Sales 60, Finance 25, Marketing 30, Engineering 70, Support 30, HR 15, Legal 10,
  Operations 20. Within each department CustomAttribute1 cycles emea, amer, emea, amer, apac, so 2/5 emea,
  2/5 amer, 1/5 apac (104 / 104 / 52 overall). Shared: 8 helpdesk-N (CustomAttribute2=helpdesk), 6 scanner-N
  (CustomAttribute2=scan), 5 journal-N, alerts, finance-shared and 19 others.
- 15 service principals with an Exchange pointer; 14 hold grants, "Teams Rooms Provisioner" holds none.
  Each pointer has its own DisplayName (New-ServicePrincipal -DisplayName), which permission rows show: most are
  "EXO SP for <Entra name>" as in Microsoft's examples, A05's is "svc-crm-sync", A11's and A12's equal the Entra name.
    A01 Contoso Billing Mailer   SendAs  Department=Finance                    25
    A02 Payroll Notifier         SendAs  Department=Finance (same set as A01)  25
    A03 Newsletter Sender        SendAs  first 12 Marketing users (subset A04) 12
    A04 Marketing Automation     SendAs  Department=Marketing                  30
    A05 CRM Sync Service         SendAs  users with CustomAttribute1 emea|amer 208 (the large one)
    A06 Helpdesk Ticketing       SendAs + FullAccess on the 8 helpdesk-N     8 + 8
    A07 Scan-to-Email Relay      SendAs  CustomAttribute2=scan                  6
    A08 Legal Notices Mailer     SendAs  members of group "Legal Notices Senders" (9 users, mixed departments)
    A09 EMEA Sales Quotes        SendAs  Department=Sales and CustomAttribute1=emea  24
    A10 IMAP Archiver            FullAccess on the 5 journal-N (+1 inherited row, skipped)  5
    A11 Alerts Gateway           SendAs on alerts (+1 ReadPermission-only row, skipped)      1
    A12 Legacy Fax Bridge        SendAs Allow on 8 users, one of them also Deny -> 7
    A14 Monitoring Relay         FullAccess only (an SMTP relay set up as field guides do) on it-notices,
                                 security-reports, noreply: 3, sends as them with SMTP.SendAsApp
    A15 Invoice Processor        SendAs + FullAccess on invoices and orders (SMTP, no IMAP/POP)  2 + 2
  => 357 SendAs + 18 FullAccess grants, 14 apps. Entra permissions: every app but A10 and A13 holds SMTP.SendAsApp;
  A06 and A10 hold IMAP.AccessAsApp (IMAP-only: A10); A05 also Graph Mail.Send.
- 4 groups: Legal Notices Senders (security, = A08's set), Finance Team (distribution: the 25 Finance users +
  finance-shared), All EMEA (security: the 104 emea users + the nested group EMEA Managers),
  EMEA Managers (security: 5 emea users).
- Noise: NT AUTHORITY\\SELF on every mailbox in both permission exports (600 rows); one inherited
  Administrator Deny row per mailbox plus A10's inherited row (301); 2 explicit Deny rows (A12's, and a human's on a
  shared mailbox); 1 Allow cancelled by a Deny; 5 orphaned SIDs (3 SendAs, 2 FullAccess); 23 human delegates
  (10 SendAs on shared mailboxes; 12 FullAccess on shared mailboxes and 1 on an executive's mailbox); 4
  ReadPermission-only rows (A11's and 3 humans').

The exports, as an admin would hand them over (names say nothing of their kind; the tool reads the columns):
  export1.csv  Get-EXOMailbox (+ Department etc. from Get-EXORecipient), UTF-8 with BOM
  export2.csv  Get-ServicePrincipal, Windows PowerShell 5.1: #TYPE line, PSComputerName/RunspaceId/PSShowComputerName
  export3.csv  Get-RecipientPermission for user mailboxes, UTF-16 LE with BOM, #TYPE line, remoting columns
  export4.csv  Get-RecipientPermission for shared mailboxes, UTF-8, AccessRights as {SendAs}; trustee of A07 shown
               by its ObjectId (EXCHANGE.md §3: how an SP trustee is displayed is unverified)
  export5.csv  Get-MailboxPermission for user mailboxes, UTF-8 with BOM, "FullAccess, ReadPermission"
  export6.csv  Get-EXOMailboxPermission for shared mailboxes, UTF-8, Identity as ExternalDirectoryObjectId,
               SP users shown by ObjectId (A06) or AppId (A10), {FullAccess, ReadPermission}
  export7.csv  Get-DistributionGroup, UTF-8
  export8.csv  Get-DistributionGroupMember per group with a GroupIdentity column added by the export script
  export9.csv  Get-MgServicePrincipalAppRoleAssignment per pointer, with the AppRoleValue column the export script
               adds (the apps' Entra permissions), UTF-8 with BOM
In the permission exports an SP trustee shows as its pointer's DisplayName, except: A07 by its ObjectId in
export4, FullAccess rows by ObjectId (A06), AppId (A10) or Sid (A14).
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import random
import sys
import uuid
from pathlib import Path

from migrator.sandbox.state import KNOWN_ROLE_IDS, RESOURCE_APP_IDS, det_uuid, sid_for

SEED = 20251101
DOMAIN = "contoso.com"
ONMS = "contoso.onmicrosoft.com"
NETBIOS = "NAMPR03A001"
DN_SUFFIX = ("OU=contoso.onmicrosoft.com,OU=Microsoft Exchange Hosted Organizations,DC=NAMPR03A001,DC=prod,"
             "DC=outlook,DC=com")
EXO = "Office 365 Exchange Online"
GRAPH = "Microsoft Graph"

DEPARTMENTS = (("Sales", 60), ("Finance", 25), ("Marketing", 30), ("Engineering", 70), ("Support", 30),
               ("HR", 15), ("Legal", 10), ("Operations", 20))
REGION_CYCLE = ("emea", "amer", "emea", "amer", "apac")
REGION_CITY = {"emea": ("London", "GB"), "amer": ("Seattle", "US"), "apac": ("Singapore", "SG")}
OTHER_SHARED = ("info", "hr-requests", "legal-intake", "marketing-events", "sales-eu", "sales-us", "reception",
                "facilities", "it-notices", "payroll-inbox", "press", "careers", "events", "partners", "privacy",
                "security-reports", "invoices", "orders", "noreply")
SHARED_DISPLAY = {"reception": ("Réception", "Réception Zürich")}  # non-ASCII Name: tests the encodings

FIRST = ("Adele", "Alex", "Allan", "Bianca", "Brian", "Carla", "Chen", "Christie", "Diego", "Dmitri", "Elena",
         "Emily", "Enrico", "Fatima", "Finn", "Grady", "Hana", "Henrik", "Irvin", "Isaiah", "Jana", "Johanna",
         "José", "Joni", "Kenji", "Lee", "Lidia", "Lynne", "Megan", "Miriam", "Nestor", "Nora", "Olga", "Patti",
         "Pradeep", "Raul", "Renée", "Sakura", "Sven", "Zoë")
LAST = ("Vance", "Wilber", "Deyoung", "Rossi", "Kowalski", "Müller", "Nakamura", "Cline", "Soto", "Ivanov",
        "Garcia", "Braun", "Colombo", "Haddad", "OBrien", "Archie", "Sato", "Larsen", "Bellows", "Taylor",
        "Novak", "Lindqvist", "Álvarez", "Sherman", "Tanaka", "Gu", "Holloway", "Robbins", "Bowen", "Hamid")

SIDS = ("S-1-5-21-3623811015-3361044348-30300820-1013", "S-1-5-21-3623811015-3361044348-30300820-1187",
        "S-1-5-21-1004336348-1177238915-682003330-512", "S-1-5-21-2127521184-1604012920-1887927527-7202",
        "S-1-5-21-2127521184-1604012920-1887927527-9911")

APPS = (  # key, display name, app roles (resource, permission)
    ("A01", "Contoso Billing Mailer", ((EXO, "SMTP.SendAsApp"),)),
    ("A02", "Payroll Notifier", ((EXO, "SMTP.SendAsApp"),)),
    ("A03", "Newsletter Sender", ((EXO, "SMTP.SendAsApp"),)),
    ("A04", "Marketing Automation", ((EXO, "SMTP.SendAsApp"),)),
    ("A05", "CRM Sync Service", ((EXO, "SMTP.SendAsApp"), (GRAPH, "Mail.Send"))),
    ("A06", "Helpdesk Ticketing", ((EXO, "SMTP.SendAsApp"), (EXO, "IMAP.AccessAsApp"))),
    ("A07", "Scan-to-Email Relay", ((EXO, "SMTP.SendAsApp"),)),
    ("A08", "Legal Notices Mailer", ((EXO, "SMTP.SendAsApp"),)),
    ("A09", "EMEA Sales Quotes", ((EXO, "SMTP.SendAsApp"),)),
    ("A10", "IMAP Archiver", ((EXO, "IMAP.AccessAsApp"),)),
    ("A11", "Alerts Gateway", ((EXO, "SMTP.SendAsApp"),)),
    ("A12", "Legacy Fax Bridge", ((EXO, "SMTP.SendAsApp"),)),
    ("A13", "Teams Rooms Provisioner", ()),
    ("A14", "Monitoring Relay", ((EXO, "SMTP.SendAsApp"),)),
    ("A15", "Invoice Processor", ((EXO, "SMTP.SendAsApp"),)),
)
# The Exchange pointers' own DisplayNames (what permission rows show); default "EXO SP for <Entra name>".
POINTER_NAMES = {"A05": "svc-crm-sync", "A11": "Alerts Gateway", "A12": "Legacy Fax Bridge"}
LATER_APPS = ("A14", "A15")  # ids drawn from their own generator, so the earlier draws stay as they were


class Gen:
    def __init__(self, seed: int = SEED) -> None:
        self.rng = random.Random(seed)

    def guid(self) -> str:
        return str(uuid.UUID(int=self.rng.getrandbits(128), version=4))


def build(seed: int = SEED) -> dict:
    """The tenant as the fixture dict (INTERNALS.md §2), plus export-only details under keys starting with '_'."""
    g = Gen(seed)
    tenant = {"id": g.guid(), "domain": ONMS, "name": "Contoso", "dn_suffix": DN_SUFFIX}

    # --- mailboxes
    pairs = [(f, last) for f in FIRST for last in LAST]
    g.rng.shuffle(pairs)
    users = []
    for dept, count in DEPARTMENTS:
        for i in range(count):
            first, last = pairs.pop()
            alias = _ascii(f"{first}.{last}").lower()
            region = REGION_CYCLE[i % 5]
            city, country = REGION_CITY[region]
            users.append(_mailbox(g, alias, f"{first} {last}", "UserMailbox", {
                "Department": dept, "CustomAttribute1": region, "Company": "Contoso Ltd", "City": city,
                "CountryOrRegion": country, "Office": f"{city} {1 + i % 3}"}))
    shared = []
    for i in range(1, 9):
        shared.append(_mailbox(g, f"helpdesk-{i}", f"Helpdesk Queue {i}", "SharedMailbox",
                               {"CustomAttribute2": "helpdesk"}))
    for i in range(1, 7):
        shared.append(_mailbox(g, f"scanner-{i}", f"Scanner Floor {i}", "SharedMailbox", {"CustomAttribute2": "scan"}))
    for i in range(1, 6):
        shared.append(_mailbox(g, f"journal-{i}", f"Journal Archive {i}", "SharedMailbox", {}))
    shared.append(_mailbox(g, "alerts", "System Alerts", "SharedMailbox", {}))
    shared.append(_mailbox(g, "finance-shared", "Finance Shared Inbox", "SharedMailbox", {}))
    for alias in OTHER_SHARED:
        name, display = SHARED_DISPLAY.get(alias, (alias, alias.replace("-", " ").title()))
        shared.append(_mailbox(g, alias, display, "SharedMailbox", {}, name=name))
    mailboxes = users + shared
    by_alias = {m["alias"]: m for m in mailboxes}

    def dept(d):
        return [m for m in users if m["attributes"]["Department"] == d]

    def addr(ms):
        return [m["primary_smtp"] for m in ms]

    # --- apps
    apps = []
    later = Gen(seed + 2)
    for key, name, roles in APPS:
        ids = later if key in LATER_APPS else g
        apps.append({"app_id": ids.guid(), "object_id": ids.guid(), "display_name": name,
                     "exchange_display_name": POINTER_NAMES.get(key, f"EXO SP for {name}"), "exchange_pointer": True,
                     "app_roles": [{"resource": r, "permission": p} for r, p in roles],
                     "secret": None, "certificate_pem": None, "_key": key})
    app = {a["_key"]: a for a in apps}

    legal_senders = g.rng.sample(users, 9)
    fax = g.rng.sample([m for m in users if m not in legal_senders], 8)
    sendas = {
        "A01": addr(dept("Finance")), "A02": addr(dept("Finance")), "A03": addr(dept("Marketing")[:12]),
        "A04": addr(dept("Marketing")),
        "A05": addr([m for m in users if m["attributes"]["CustomAttribute1"] in ("emea", "amer")]),
        "A06": [f"helpdesk-{i}@{DOMAIN}" for i in range(1, 9)],
        "A07": [f"scanner-{i}@{DOMAIN}" for i in range(1, 7)],
        "A08": addr(legal_senders),
        "A09": addr([m for m in dept("Sales") if m["attributes"]["CustomAttribute1"] == "emea"]),
        "A11": [f"alerts@{DOMAIN}"], "A12": addr(fax),
    }
    sendas["A15"] = [f"invoices@{DOMAIN}", f"orders@{DOMAIN}"]
    fullaccess = {"A06": sendas["A06"], "A10": [f"journal-{i}@{DOMAIN}" for i in range(1, 6)],
                  "A14": [f"it-notices@{DOMAIN}", f"security-reports@{DOMAIN}", f"noreply@{DOMAIN}"],
                  "A15": sendas["A15"]}

    rp, mp = [], []  # recipient_permissions, mailbox_permissions (fixture rows)
    for m in mailboxes:  # Exchange lists SELF on every mailbox in both cmdlets
        rp.append(_rp(m["primary_smtp"], {"self": True}, ["SendAs"]))
        mp.append(_mp(m["primary_smtp"], {"self": True}, ["FullAccess", "ReadPermission"]))
    for key, boxes in sendas.items():
        for a in boxes:
            rp.append(_rp(a, {"app": app[key]["app_id"]}, ["SendAs"]))
    for key, boxes in fullaccess.items():
        for a in boxes:
            mp.append(_mp(a, {"app": app[key]["app_id"]}, ["FullAccess"]))
    denied = fax[3]["primary_smtp"]
    rp.append(_rp(denied, {"app": app["A12"]["app_id"]}, ["SendAs"], control="Deny"))
    mp.append(_mp(users[5]["primary_smtp"], {"app": app["A10"]["app_id"]}, ["FullAccess"], inherited=True))
    mp.append(_mp(f"alerts@{DOMAIN}", {"app": app["A11"]["app_id"]}, ["ReadPermission"]))
    # orphaned SIDs: deleted users whose grants stayed behind
    for sid, box in zip(SIDS[:3], ("info", "sales-eu", "press")):
        rp.append(_rp(f"{box}@{DOMAIN}", {"sid": sid}, ["SendAs"]))
    for sid, box in zip(SIDS[3:], ("invoices", "orders")):
        mp.append(_mp(f"{box}@{DOMAIN}", {"sid": sid}, ["FullAccess"]))
    # human delegates
    people = g.rng.sample([m for m in users if m not in legal_senders and m not in fax], 30)
    human_sendas = list(zip(people[:10], ("info", "hr-requests", "sales-eu", "sales-us", "marketing-events",
                                          "payroll-inbox", "careers", "events", "partners", "reception")))
    for person, box in human_sendas:
        rp.append(_rp(by_alias[box]["primary_smtp"], {"mailbox": person["primary_smtp"]}, ["SendAs"]))
    human_fa = list(zip(people[10:22], ("info", "hr-requests", "legal-intake", "facilities", "it-notices",
                                        "reception", "invoices", "orders", "privacy", "security-reports",
                                        "helpdesk-1", "helpdesk-2")))
    for person, box in human_fa:
        mp.append(_mp(by_alias[box]["primary_smtp"], {"mailbox": person["primary_smtp"]},
                      ["FullAccess", "ReadPermission"]))
    executive, assistant = people[22], people[23]
    mp.append(_mp(executive["primary_smtp"], {"mailbox": assistant["primary_smtp"]}, ["FullAccess"]))
    mp.append(_mp(f"payroll-inbox@{DOMAIN}", {"mailbox": people[24]["primary_smtp"]}, ["FullAccess"], deny=True))
    for person, box in zip(people[25:28], ("press", "noreply", "events")):
        mp.append(_mp(by_alias[box]["primary_smtp"], {"mailbox": person["primary_smtp"]}, ["ReadPermission"]))

    # --- groups
    emea = [m for m in users if m["attributes"]["CustomAttribute1"] == "emea"]
    managers = emea[::21][:5]
    groups = [
        _group(g, "Legal Notices Senders", "legal-notices-senders", "Security", addr(legal_senders)),
        _group(g, "Finance Team", "finance-team", "Distribution",
               addr(dept("Finance")) + [f"finance-shared@{DOMAIN}"]),
        _group(g, "EMEA Managers", "emea-managers", "Security", addr(managers)),
        _group(g, "All EMEA", "all-emea", "Security", addr(emea) + [f"emea-managers@{DOMAIN}"]),
    ]

    admin = {"client_id": g.guid(), "object_id": g.guid(), "display_name": "migrator", "secret": None,
             "app_roles": [{"resource": EXO, "permission": "Exchange.ManageAsApp"},
                           {"resource": GRAPH, "permission": "Application.Read.All"},
                           {"resource": GRAPH, "permission": "AppRoleAssignment.ReadWrite.All"},
                           {"resource": GRAPH, "permission": "Policy.Read.All"}],
             "directory_roles": ["Exchange Administrator"]}
    return {"format": 1, "tenant": tenant, "mailboxes": mailboxes, "apps": apps, "admin": admin, "groups": groups,
            "recipient_permissions": rp, "mailbox_permissions": mp, "management_scopes": [],
            "role_assignments": [], "application_access_policies": []}


def _ascii(text: str) -> str:
    import unicodedata

    return unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()


def _mailbox(g: Gen, alias: str, display: str, kind: str, attrs: dict, *, name: str | None = None) -> dict:
    return {"name": name or alias, "alias": alias, "display_name": display, "primary_smtp": f"{alias}@{DOMAIN}",
            "upn": f"{alias}@{DOMAIN}", "external_id": g.guid(), "guid": g.guid(), "recipient_type_details": kind,
            "attributes": dict(attrs)}


def _group(g: Gen, name: str, alias: str, kind: str, members: list[str]) -> dict:
    return {"name": name, "alias": alias, "primary_smtp": f"{alias}@{DOMAIN}", "type": kind, "cn": name,
            "members": list(members), "hidden": False, "guid": g.guid(), "external_id": g.guid()}


def _rp(mailbox, trustee, rights, *, control="Allow", inherited=False) -> dict:
    return {"mailbox": mailbox, "trustee": trustee, "access_control_type": control, "access_rights": rights,
            "is_inherited": inherited}


def _mp(mailbox, user, rights, *, deny=False, inherited=False) -> dict:
    return {"mailbox": mailbox, "user": user, "access_rights": rights, "deny": deny, "is_inherited": inherited,
            "inheritance_type": "All"}


# ------------------------------------------------------------------------------------------------- exports


def fixture_json(t: dict) -> str:
    clean = json.loads(json.dumps(t))
    for a in clean["apps"]:
        a.pop("_key", None)
    return json.dumps(clean, indent=1, ensure_ascii=False) + "\n"


def exports(t: dict) -> dict[str, bytes]:
    """The nine export files, as bytes (encodings differ per file on purpose)."""
    mbs = {m["primary_smtp"]: m for m in t["mailboxes"]}
    sps = {a["app_id"]: a for a in t["apps"]}
    rng = random.Random(SEED + 1)
    runspace = str(uuid.UUID(int=rng.getrandbits(128), version=4))
    remoting = {"PSComputerName": "outlook.office365.com", "RunspaceId": runspace, "PSShowComputerName": "False"}
    dn = lambda cn: f"CN={cn},{DN_SUFFIX}"  # noqa: E731

    def trustee_text(tr: dict, style: str) -> str:
        if tr.get("self"):
            return "NT AUTHORITY\\SELF"
        if "sid" in tr:
            return tr["sid"]
        if "mailbox" in tr:
            m = mbs[tr["mailbox"]]
            # two delegates show in the DOMAIN\alias form left over from the hybrid years
            return f"{NETBIOS}\\{m['alias']}" if m["alias"] in domain_form else m["upn"]
        sp = sps[tr["app"]]
        if style == "object_id" or (style == "mixed" and sp["display_name"] == "Scan-to-Email Relay"):
            return sp["object_id"]
        if style == "fa" and sp["display_name"] == "IMAP Archiver":
            return sp["app_id"]
        if style == "fa" and sp["display_name"] == "Monitoring Relay":
            return sid_for("sp:" + sp["app_id"])  # some tenants show the pointer's Sid
        if style == "fa":
            return sp["object_id"]
        if sp["display_name"] == "Payroll Notifier":
            return sp["exchange_display_name"].upper()  # Exchange compares case-insensitively; so must we
        return sp["exchange_display_name"]  # the pointer's DisplayName, not the Entra name

    delegates = sorted({r["trustee"]["mailbox"] for r in t["recipient_permissions"] if "mailbox" in r["trustee"]})
    domain_form = {mbs[delegates[0]]["alias"], mbs[delegates[1]]["alias"]}

    files: dict[str, bytes] = {}

    # export1: mailboxes
    attrs = [f"CustomAttribute{i}" for i in range(1, 16)] + ["Office", "Department", "Company", "City",
                                                              "StateOrProvince", "CountryOrRegion"]
    header = ["Name", "Alias", "DisplayName", "PrimarySmtpAddress", "UserPrincipalName", "EmailAddresses",
              "ExternalDirectoryObjectId", "Guid", "DistinguishedName", "Identity", "RecipientType",
              "RecipientTypeDetails", *attrs]
    rows = []
    for m in t["mailboxes"]:
        a = m["attributes"]
        rows.append([m["name"], m["alias"], m["display_name"], m["primary_smtp"], m["upn"],
                     f"SMTP:{m['primary_smtp']};smtp:{m['alias']}@{ONMS}", m["external_id"], m["guid"],
                     dn(m["name"]), m["name"], "UserMailbox", m["recipient_type_details"],
                     *[a.get(x, "") for x in attrs]])
    files["export1.csv"] = b"\xef\xbb\xbf" + _csv(header, rows).encode("utf-8")

    # export2: service principals (Windows PowerShell 5.1 over remoting, without -NoTypeInformation)
    header = ["PSComputerName", "RunspaceId", "PSShowComputerName", "AppId", "ObjectId", "DisplayName", "Name",
              "Identity", "Sid", "Organization", "IsValid", "ObjectState"]
    rows = [[*remoting.values(), a["app_id"], a["object_id"], a["exchange_display_name"], a["object_id"],
             a["object_id"], sid_for("sp:" + a["app_id"]), ONMS, "True", "Unchanged"]
            for a in t["apps"] if a["exchange_pointer"]]
    files["export2.csv"] = ("#TYPE Deserialized.Microsoft.Exchange.Data.Directory.Management.ServicePrincipal\r\n"
                            + _csv(header, rows)).encode("ascii")

    # export3/4: recipient permissions, split by mailbox type
    def rp_rows(kind: str, style: str, braces: bool):
        out = []
        for r in t["recipient_permissions"]:
            m = mbs[r["mailbox"]]
            if (m["recipient_type_details"] == "UserMailbox") != (kind == "user"):
                continue
            rights = ", ".join(r["access_rights"])
            out.append([m["name"], trustee_text(r["trustee"], style), r["access_control_type"],
                        "{" + rights + "}" if braces else rights, str(r["is_inherited"]),
                        "None", "True", "Unchanged"])
        return out

    header = ["Identity", "Trustee", "AccessControlType", "AccessRights", "IsInherited", "InheritanceType",
              "IsValid", "ObjectState"]
    text = ("#TYPE Deserialized.Microsoft.Exchange.Management.RecipientTasks.RecipientPermission\r\n"
            + _csv(["PSComputerName", "RunspaceId", "PSShowComputerName", *header],
                   [[*remoting.values(), *r] for r in rp_rows("user", "display", False)]))
    files["export3.csv"] = b"\xff\xfe" + text.encode("utf-16-le")
    files["export4.csv"] = _csv(header, rp_rows("shared", "mixed", True)).encode("utf-8")

    # export5/6: mailbox permissions, split by mailbox type; one inherited Administrator Deny row per mailbox
    def mp_rows(kind: str):
        out = []
        for m in t["mailboxes"]:
            if (m["recipient_type_details"] == "UserMailbox") != (kind == "user"):
                continue
            ident = m["name"] if kind == "user" else m["external_id"]
            out.append([ident, f"{NETBIOS}\\Administrator", "FullAccess, DeleteItem, ReadPermission, ChangePermission"
                        if kind == "user" else "{FullAccess, DeleteItem, ReadPermission, ChangePermission}",
                        "True", "True", "All"])
            for r in t["mailbox_permissions"]:
                if r["mailbox"] != m["primary_smtp"]:
                    continue
                rights = ", ".join(r["access_rights"])
                out.append([ident, trustee_text(r["user"], "fa"), rights if kind == "user" else "{" + rights + "}",
                            str(r["is_inherited"]), str(r["deny"]), r["inheritance_type"]])
        return out

    header = ["Identity", "User", "AccessRights", "IsInherited", "Deny", "InheritanceType"]
    files["export5.csv"] = b"\xef\xbb\xbf" + _csv(header, mp_rows("user")).encode("utf-8")
    files["export6.csv"] = _csv(header, mp_rows("shared")).encode("utf-8")

    # export7/8: groups and their members
    header = ["Name", "Alias", "DisplayName", "PrimarySmtpAddress", "DistinguishedName", "Guid",
              "ExternalDirectoryObjectId", "RecipientTypeDetails", "GroupType", "ManagedBy",
              "MemberJoinRestriction", "MemberDepartRestriction", "HiddenFromAddressListsEnabled"]
    kinds = {"Security": ("MailUniversalSecurityGroup", "Universal, SecurityEnabled"),
             "Distribution": ("MailUniversalDistributionGroup", "Universal")}
    rows = [[gr["name"], gr["alias"], gr["name"], gr["primary_smtp"], dn(gr["cn"]), gr["guid"], gr["external_id"],
             *kinds[gr["type"]], "Organization Management", "Closed", "Closed", str(gr["hidden"])]
            for gr in t["groups"]]
    files["export7.csv"] = _csv(header, rows).encode("utf-8")
    by_group = {gr["primary_smtp"]: gr for gr in t["groups"]}
    header = ["GroupIdentity", "Name", "DisplayName", "PrimarySmtpAddress", "RecipientType", "RecipientTypeDetails",
              "ExternalDirectoryObjectId", "Identity"]
    rows = []
    for gr in t["groups"]:
        for member in gr["members"]:
            if member in mbs:
                m = mbs[member]
                rows.append([gr["primary_smtp"], m["name"], m["display_name"], member, "UserMailbox",
                             m["recipient_type_details"], m["external_id"], m["name"]])
            elif member in by_group:
                n = by_group[member]
                rows.append([gr["primary_smtp"], n["name"], n["name"], member, "MailUniversalSecurityGroup",
                             kinds[n["type"]][0], n["external_id"], n["name"]])
            else:
                rows.append([gr["primary_smtp"], member.split("@")[0], member, member, "MailContact",
                             "MailContact", "", member.split("@")[0]])
    files["export8.csv"] = _csv(header, rows).encode("utf-8")

    # export9: the pointers' Entra app-role assignments, as the export script writes them (ids as the sandbox makes
    # them, so a live inventory of the sandbox and these exports agree)
    header = ["PrincipalId", "PrincipalDisplayName", "ResourceId", "ResourceDisplayName", "AppRoleId", "AppRoleValue"]
    rows = []
    for a in t["apps"]:
        if not a["exchange_pointer"]:
            continue
        for role in a["app_roles"]:
            resource_app = RESOURCE_APP_IDS[role["resource"]]
            role_id = KNOWN_ROLE_IDS.get((role["resource"], role["permission"])) or det_uuid(
                "app-role", resource_app, role["permission"])
            rows.append([a["object_id"], a["display_name"], det_uuid("resource-sp", t["tenant"]["id"], resource_app),
                         role["resource"], role_id, role["permission"]])
    files["export9.csv"] = b"\xef\xbb\xbf" + _csv(header, rows).encode("utf-8")
    return files


def _csv(header, rows) -> str:
    """Export-Csv style: every field quoted, CRLF line ends."""
    buf = io.StringIO()
    writer = csv.writer(buf, quoting=csv.QUOTE_ALL, lineterminator="\r\n")
    writer.writerow(header)
    writer.writerows(rows)
    return buf.getvalue()


def outputs(seed: int = SEED) -> dict[str, bytes]:
    t = build(seed)
    out = {"tenant.json": fixture_json(t).encode("utf-8")}
    out.update({f"exports/{name}": data for name, data in exports(t).items()})
    return out


# Package data, so a wheel install carries the sample (migrator/samples/__init__.py).
OUT = Path(__file__).resolve().parent.parent / "migrator" / "samples" / "contoso"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--check", action="store_true", help="compare with the files on disk; exit 1 on a difference")
    args = parser.parse_args(argv)
    stale = []
    for rel, data in outputs().items():
        path = args.out / rel
        if args.check:
            if not path.exists() or path.read_bytes() != data:
                stale.append(rel)
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    if stale:
        print("out of date: " + ", ".join(stale), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
