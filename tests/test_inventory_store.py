"""The inventory folder: round trip, atomic write, and clear errors on hand-edited files."""

from __future__ import annotations

import json

import pytest

from migrator.errors import InputError
from migrator.inventory.store import Inventory, read_inventory, write_inventory
from migrator.model import Grant, Group, Mailbox, Right, ServicePrincipal

APP = "11111111-1111-1111-1111-111111111111"
SP_OID = "22222222-2222-2222-2222-222222222222"


def _inv(**kw) -> Inventory:
    sps = (ServicePrincipal(APP.upper(), SP_OID, "Billing =Mailer", SP_OID),)
    mbs = (
        Mailbox("Adele@Contoso.com", "EXT-1", "g-1", "adele", "adele", "Adele Vance", "CN=adele,DC=x", "adele@contoso.com",
                "UserMailbox", (("CustomAttribute1", "emea"), ("Department", "Sales"))),
        Mailbox("shared@contoso.com", recipient_type="SharedMailbox"),
    )
    grants = (Grant(APP, "adele@contoso.com", Right.SEND_AS), Grant(APP, "shared@contoso.com", Right.FULL_ACCESS),
              Grant(APP, "adele@contoso.com", Right.FULL_ACCESS))
    groups = (Group("finance@contoso.com", "Finance", "CN=Finance,DC=x", members=frozenset({"adele@contoso.com"}),
                    other_members=2),)
    base = dict(service_principals=sps, mailboxes=mbs, grants=grants, groups=groups,
                app_permissions=((APP, "Office 365 Exchange Online", "SMTP.SendAsApp"),),
                manifest={"source": "exports", "skipped": [{"class": "self", "count": 3, "reason": "r",
                                                             "examples": []}]})
    base.update(kw)
    return Inventory(**base)


def test_round_trip(tmp_path):
    out = write_inventory(_inv(), tmp_path / "inv")
    back = read_inventory(out)
    assert set(back.grants) == set(_inv().grants)
    assert back.service_principals == _inv().service_principals
    assert sorted(back.mailboxes) == sorted(_inv().mailboxes)
    assert back.mailbox_by_address()["adele@contoso.com"].attribute("Department") == "Sales"
    assert back.groups == _inv().groups
    assert back.app_permissions == ((APP, "Office 365 Exchange Online", "SMTP.SendAsApp"),)
    assert back.manifest["counts"] == {"service_principals": 1, "mailboxes": 2, "groups": 1, "grants_sendas": 1,
                                       "grants_fullaccess": 2, "apps": 1, "access_policies": "not read",
                                       "policy_scope_members": "not read", "mail_permission_apps": "not read",
                                       "rbac_assignments": "not read", "rbac_unknown_reach": "not read"}
    assert back.manifest["format"] == 1 and back.manifest["skipped"][0]["class"] == "self"
    lines = (out / "grants.csv").read_text().splitlines()
    assert lines[0] == "app_id,app_name,sp_object_id,mailbox,right"
    # sorted by app_id, mailbox, right; the formula-like name is neutralised on disk
    assert [line.split(",")[3:] for line in lines[1:]] == [
        ["adele@contoso.com", "FullAccess"], ["adele@contoso.com", "SendAs"], ["shared@contoso.com", "FullAccess"]]
    assert "'=Mailer" not in lines[1] and "Billing =Mailer" in lines[1]


def test_write_refuses_existing_and_inconsistent(tmp_path):
    out = write_inventory(_inv(), tmp_path / "inv")
    with pytest.raises(InputError, match="already exists"):
        write_inventory(_inv(), out)
    write_inventory(_inv(), out, overwrite=True)
    bad = _inv(grants=(Grant(APP, "nobody@contoso.com"),))
    with pytest.raises(InputError, match=r"nobody@contoso\.com"):
        write_inventory(bad, tmp_path / "bad")
    assert not (tmp_path / "bad").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["inv"]


def _edit(path, old, new):
    path.write_text(path.read_text().replace(old, new))


@pytest.mark.parametrize("file,old,new,expect", [
    ("grants.csv", ",SendAs", ",SendAsX", r"grants.csv, row 3, field 'right', value 'SendAsX'"),
    ("grants.csv", "shared@contoso.com,FullAccess", "ghost@contoso.com,FullAccess",
     r"grants.csv, row 4, field 'mailbox', value 'ghost@contoso.com'"),
    ("grants.csv", f"{APP},Billing", f"{APP[:-1]}9,Billing", r"grants.csv, row 2, field 'app_id'"),
    ("grants.csv", "shared@contoso.com,FullAccess", "shared@contoso.com,FullAccess,extra",
     r"grants.csv, row 4: wrong number of fields"),
    ("grants.csv", "shared@contoso.com,FullAccess", "\"shared@contoso.com,FullAccess", r"grants.csv, row 4"),
    ("service_principals.csv", "app_id,", "appid,", r"service_principals.csv, row 1: missing column\(s\) app_id"),
    ("groups.csv", ",2\n", ",two\n", r"groups.csv, row 2, field 'other_members', value 'two'"),
    ("manifest.json", '"format": 1', '"format": 7', r"manifest.json, field 'format', value '7'"),
])
def test_read_errors_name_file_row_field(tmp_path, file, old, new, expect):
    out = write_inventory(_inv(), tmp_path / "inv")
    _edit(out / file, old, new)
    with pytest.raises(InputError, match=expect):
        read_inventory(out)


def test_read_missing_file(tmp_path):
    out = write_inventory(_inv(), tmp_path / "inv")
    (out / "mailboxes.csv").unlink()
    with pytest.raises(InputError, match=r"mailboxes\.csv: missing"):
        read_inventory(out)
    json.loads((out / "manifest.json").read_text())
