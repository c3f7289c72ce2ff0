"""The Contoso sample tenant: its inventory matches what samples/make_contoso.py builds by construction.

The expected numbers are reasoned from the generator's quotas (see its docstring), not read back from a run:
Finance 25 users, Marketing 30, Sales 60 of which 2/5 emea = 24, emea+amer = 4/5 of 260 users = 208, and so on.
"""

from __future__ import annotations

import importlib.util
import json
from collections import defaultdict
from pathlib import Path

import pytest
from click.testing import CliRunner

from migrator.cli import main
from migrator.inventory.exports import inventory_from_exports
from migrator.inventory.store import read_inventory
from migrator.model import Right

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "migrator" / "samples" / "contoso"


def _generator():
    spec = importlib.util.spec_from_file_location("make_contoso", ROOT / "samples" / "make_contoso.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def inv(tmp_path_factory):
    """The demo command of the README, run through the CLI, read back from the folder it wrote."""
    out = tmp_path_factory.mktemp("inv") / "contoso"
    result = CliRunner().invoke(main, ["inventory", "--from-exports", str(SAMPLE / "exports"), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "Grants to migrate: 357 SendAs + 18 FullAccess, held by 14 apps" in result.output
    return read_inventory(out)


def _entra_names() -> dict[str, str]:
    fixture = json.loads((SAMPLE / "tenant.json").read_text(encoding="utf-8"))
    return {a["app_id"]: a["display_name"] for a in fixture["apps"]}


def _sets(inv):
    names = _entra_names()  # the inventory holds the pointers' DisplayNames, mostly unlike the Entra names
    sets = defaultdict(set)
    for g in inv.grants:
        sets[(names[g.app_id], g.right)].add(g.mailbox)
    return sets


def _where(inv, **attrs):
    return {m.address for m in inv.mailboxes if all(m.attribute(k) in (v if isinstance(v, tuple) else (v,))
                                                     for k, v in attrs.items())}


def test_samples_are_what_the_generator_writes():
    gen = _generator()
    for rel, data in gen.outputs().items():
        assert (SAMPLE / rel).read_bytes() == data, f"migrator/samples/contoso/{rel} is stale: run samples/make_contoso.py"


def test_counts(inv):
    assert inv.manifest["counts"] == {"service_principals": 15, "mailboxes": 300, "groups": 4,
                                      "grants_sendas": 357, "grants_fullaccess": 18, "apps": 14,
                                      # the sample exports predate the Graph/EWS reads: not read, never "none"
                                      "access_policies": "not read", "policy_scope_members": "not read",
                                      "mail_permission_apps": "not read",
                                      # nor the RBAC files
                                      "rbac_assignments": "not read", "rbac_unknown_reach": "not read"}
    assert inv.manifest["rbac"]["read"] is False
    kinds = defaultdict(int)
    for m in inv.mailboxes:
        kinds[m.recipient_type] += 1
    assert dict(kinds) == {"UserMailbox": 260, "SharedMailbox": 40}


def test_skipped_classes(inv):
    skipped = {s["class"]: s["count"] for s in inv.manifest["skipped"]}
    assert skipped == {"self": 600, "inherited": 301, "deny": 2, "denied_allow": 1, "orphaned_sid": 5,
                       "human_delegate": 23, "other_rights": 4, "unknown_trustee": 0}


def test_every_export_recognised(inv):
    kinds = {s["file"]: (s["kind"], s["encoding"], s["type_line"]) for s in inv.manifest["sources"]}
    assert kinds == {
        "export1.csv": ("mailboxes", "utf-8-sig", False),
        "export2.csv": ("service_principals", "utf-8", True),
        "export3.csv": ("recipient_permissions", "utf-16-le", True),
        "export4.csv": ("recipient_permissions", "utf-8", False),
        "export5.csv": ("mailbox_permissions", "utf-8-sig", False),
        "export6.csv": ("mailbox_permissions", "utf-8", False),
        "export7.csv": ("groups", "utf-8", False),
        "export8.csv": ("group_members", "utf-8", False),
        "export9.csv": ("app_role_assignments", "utf-8-sig", False),
    }


def test_app_sets_match_the_generator_rules(inv):
    s = _sets(inv)
    finance = _where(inv, Department="Finance")
    marketing = _where(inv, Department="Marketing")
    assert len(finance) == 25 and len(marketing) == 30
    assert s[("Contoso Billing Mailer", Right.SEND_AS)] == finance == s[("Payroll Notifier", Right.SEND_AS)]
    assert s[("Marketing Automation", Right.SEND_AS)] == marketing
    assert len(s[("Newsletter Sender", Right.SEND_AS)]) == 12 and s[("Newsletter Sender", Right.SEND_AS)] < marketing
    assert s[("CRM Sync Service", Right.SEND_AS)] == _where(inv, CustomAttribute1=("emea", "amer"))
    assert len(s[("CRM Sync Service", Right.SEND_AS)]) == 208
    assert s[("EMEA Sales Quotes", Right.SEND_AS)] == _where(inv, Department="Sales", CustomAttribute1="emea")
    assert len(s[("EMEA Sales Quotes", Right.SEND_AS)]) == 24
    helpdesk = {f"helpdesk-{i}@contoso.com" for i in range(1, 9)}
    assert s[("Helpdesk Ticketing", Right.SEND_AS)] == helpdesk == s[("Helpdesk Ticketing", Right.FULL_ACCESS)]
    assert s[("Helpdesk Ticketing", Right.SEND_AS)] == _where(inv, CustomAttribute2="helpdesk")
    assert s[("Scan-to-Email Relay", Right.SEND_AS)] == _where(inv, CustomAttribute2="scan")
    assert len(s[("Scan-to-Email Relay", Right.SEND_AS)]) == 6
    assert s[("IMAP Archiver", Right.FULL_ACCESS)] == {f"journal-{i}@contoso.com" for i in range(1, 6)}
    assert ("IMAP Archiver", Right.SEND_AS) not in s
    assert s[("Alerts Gateway", Right.SEND_AS)] == {"alerts@contoso.com"}
    assert len(s[("Legacy Fax Bridge", Right.SEND_AS)]) == 7
    assert "EXO SP for Teams Rooms Provisioner" in {sp.display_name for sp in inv.service_principals}
    assert not any(name == "Teams Rooms Provisioner" for name, _ in s)
    # FullAccess-only SMTP relay, its rows showing the pointer's Sid; both rights on two shared mailboxes
    assert s[("Monitoring Relay", Right.FULL_ACCESS)] == {f"{m}@contoso.com" for m in
                                                          ("it-notices", "security-reports", "noreply")}
    assert ("Monitoring Relay", Right.SEND_AS) not in s
    assert s[("Invoice Processor", Right.SEND_AS)] == s[("Invoice Processor", Right.FULL_ACCESS)] == \
        {"invoices@contoso.com", "orders@contoso.com"}


def test_app_permissions_from_the_app_role_assignment_export(inv, tmp_path):
    names = _entra_names()
    by_name: dict[str, set[str]] = defaultdict(set)
    for app_id, resource, permission in inv.app_permissions:
        by_name[names[app_id]].add(f"{resource}/{permission}")
    assert inv.app_permissions_known
    assert by_name["IMAP Archiver"] == {"Office 365 Exchange Online/IMAP.AccessAsApp"}
    assert by_name["Helpdesk Ticketing"] == {"Office 365 Exchange Online/SMTP.SendAsApp",
                                             "Office 365 Exchange Online/IMAP.AccessAsApp"}
    assert "Microsoft Graph/Mail.Send" in by_name["CRM Sync Service"]
    assert "Teams Rooms Provisioner" not in by_name
    # without that file the permissions are unknown, not "none"
    import shutil

    partial = tmp_path / "exports"
    shutil.copytree(SAMPLE / "exports", partial)
    (partial / "export9.csv").unlink()
    without = inventory_from_exports(partial)
    assert not without.app_permissions_known and without.app_permissions == ()
    assert set(without.grants) == set(inv.grants)


def test_groups(inv):
    s = _sets(inv)
    groups = {g.name: g for g in inv.groups}
    assert groups["Legal Notices Senders"].members == s[("Legal Notices Mailer", Right.SEND_AS)]
    assert len(groups["Legal Notices Senders"].members) == 9 and groups["Legal Notices Senders"].other_members == 0
    assert groups["Legal Notices Senders"].dn.startswith("CN=Legal Notices Senders,OU=contoso.onmicrosoft.com,")
    assert groups["Finance Team"].members == s[("Contoso Billing Mailer", Right.SEND_AS)] | {"finance-shared@contoso.com"}
    assert len(groups["All EMEA"].members) == 104 and groups["All EMEA"].other_members == 1  # the nested group
    assert groups["EMEA Managers"].members < groups["All EMEA"].members


def test_denied_allow_is_the_fax_bridge_mailbox(inv):
    denied = next(s for s in inv.manifest["skipped"] if s["class"] == "denied_allow")
    assert len(denied["examples"]) == 1 and "Legacy Fax Bridge" in denied["examples"][0]
    name = denied["examples"][0].split(" on ")[1].split(" (")[0]
    mailbox = next(m.address for m in inv.mailboxes if m.name == name)
    assert mailbox not in _sets(inv)[("Legacy Fax Bridge", Right.SEND_AS)]


def test_non_ascii_names_survive_the_encodings(inv):
    reception = inv.mailbox_by_address()["reception@contoso.com"]
    assert reception.name == "Réception" and reception.display_name == "Réception Zürich"


def test_exports_and_fixture_describe_the_same_grants(inv):
    """What the sandbox will serve (tenant.json) and what the exports show give the same grants."""
    fixture = json.loads((SAMPLE / "tenant.json").read_text(encoding="utf-8"))
    denies = {(r["trustee"].get("app"), r["mailbox"]) for r in fixture["recipient_permissions"]
              if r["access_control_type"] == "Deny"}
    expected = set()
    for r in fixture["recipient_permissions"]:
        app = r["trustee"].get("app")
        if app and r["access_control_type"] == "Allow" and not r["is_inherited"] and "SendAs" in r["access_rights"] \
                and (app, r["mailbox"]) not in denies:
            expected.add((app, r["mailbox"], "SendAs"))
    for r in fixture["mailbox_permissions"]:
        app = r["user"].get("app")
        if app and not r["deny"] and not r["is_inherited"] and "FullAccess" in r["access_rights"]:
            expected.add((app, r["mailbox"], "FullAccess"))
    assert {(g.app_id, g.mailbox, g.right.value) for g in inv.grants} == expected
    assert {sp.app_id for sp in inv.service_principals} == {a["app_id"] for a in fixture["apps"]}
    assert len(fixture["mailboxes"]) == 300


def test_python_api_agrees_with_cli(inv):
    direct = inventory_from_exports(SAMPLE / "exports")
    assert set(direct.grants) == set(inv.grants)
