"""The exports reader: each noise class, each encoding and export style, and trustee/mailbox resolution."""

from __future__ import annotations

import csv
import io
import shutil
from pathlib import Path

import pytest

from migrator.errors import InputError
from migrator.inventory import psexport as px
from migrator.inventory.exports import inventory_from_exports
from migrator.model import Grant, Right

DATA = Path(__file__).parent / "data" / "exports"
MAILER = "aaaaaaaa-0000-0000-0000-000000000001"
TWIN2 = "aaaaaaaa-0000-0000-0000-000000000002"
SCANNER = "aaaaaaaa-0000-0000-0000-000000000004"
RP_HEADER = ["Identity", "Trustee", "AccessControlType", "AccessRights", "IsInherited", "InheritanceType"]
MP_HEADER = ["Identity", "User", "AccessRights", "IsInherited", "Deny", "InheritanceType"]
BASE_GRANTS = {Grant(MAILER, "alice@contoso.com", Right.SEND_AS), Grant(SCANNER, "shared1@contoso.com", Right.SEND_AS),
               Grant(TWIN2, "bob@contoso.com", Right.SEND_AS),
               Grant(MAILER, "shared1@contoso.com", Right.FULL_ACCESS)}


def export_text(header, rows, *, type_line=None, remoting=False) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, quoting=csv.QUOTE_ALL, lineterminator="\r\n")
    if remoting:
        header = ["PSComputerName", "RunspaceId", "PSShowComputerName", *header]
        rows = [["outlook.office365.com", "0f6f1c1e-0000-0000-0000-000000000000", "False", *r] for r in rows]
    w.writerow(header)
    w.writerows(rows)
    return (type_line + "\r\n" if type_line else "") + buf.getvalue()


def write(path: Path, text: str, encoding: str = "utf-8") -> None:
    boms = {"utf-8-sig": b"\xef\xbb\xbf", "utf-16-le": b"\xff\xfe", "utf-16-be": b"\xfe\xff"}
    codec = "utf-8" if encoding == "utf-8-sig" else encoding
    path.write_bytes(boms.get(encoding, b"") + text.encode(codec))


@pytest.fixture
def folder(tmp_path) -> Path:
    target = tmp_path / "exports"
    shutil.copytree(DATA / "base", target)
    return target


def skipped(inv) -> dict[str, int]:
    return {s["class"]: s["count"] for s in inv.manifest["skipped"]}


def add_rp(folder: Path, rows, name="z-rp.csv", **kw):
    write(folder / name, export_text(RP_HEADER, rows, **kw))


def add_mp(folder: Path, rows, name="z-mp.csv", **kw):
    write(folder / name, export_text(MP_HEADER, rows, **kw))


def test_base(folder):
    inv = inventory_from_exports(folder)
    assert set(inv.grants) == BASE_GRANTS
    assert skipped(inv) == {"self": 0, "inherited": 0, "deny": 0, "denied_allow": 0, "orphaned_sid": 0,
                            "human_delegate": 0, "other_rights": 0, "unknown_trustee": 0}
    kinds = {s["file"]: s["kind"] for s in inv.manifest["sources"]}
    assert kinds == {"a.csv": "service_principals", "b.csv": "mailboxes", "c.csv": "recipient_permissions",
                     "d.csv": "mailbox_permissions"}
    alice = inv.mailbox_by_address()["alice@contoso.com"]
    assert alice.attribute("Department") == "Sales" and alice.attribute("CustomAttribute1") == "emea"
    assert alice.dn.startswith("CN=alice,")


# ------------------------------------------------------------------------------------------- noise classes


def test_self_rows(folder):
    add_rp(folder, [["carol", "NT AUTHORITY\\SELF", "Allow", "SendAs", "False", "None"]])
    add_mp(folder, [["carol", "NT AUTHORITY\\SELF", "FullAccess, ReadPermission", "False", "False", "All"],
                    ["bob", "S-1-5-10", "FullAccess", "False", "False", "All"]])
    inv = inventory_from_exports(folder)
    assert skipped(inv)["self"] == 3 and set(inv.grants) == BASE_GRANTS


def test_inherited_rows_even_for_a_service_principal(folder):
    add_rp(folder, [["carol", "Mailer", "Allow", "SendAs", "True", "All"]])
    add_mp(folder, [["carol", "NAMPR03A001\\Organization Management", "FullAccess", "True", "True", "All"],
                    ["carol", MAILER, "FullAccess", "True", "False", "All"]])
    inv = inventory_from_exports(folder)
    assert skipped(inv)["inherited"] == 3 and set(inv.grants) == BASE_GRANTS


def test_deny_cancels_allow_for_same_trustee_mailbox_right_only(folder):
    # Deny by display name cancels the Allow given by ObjectId: same SP, same mailbox, same right.
    add_rp(folder, [["alice@contoso.com", "11111111-0000-0000-0000-000000000001", "Deny", "SendAs", "False", "None"]])
    # A FullAccess Deny for Mailer on alice does not touch its SendAs; on Shared One it cancels the FullAccess.
    add_mp(folder, [["eeeeeeee-0000-0000-0000-000000000003", "Mailer", "FullAccess", "False", "True", "All"],
                    ["bob", "Mailer", "FullAccess", "False", "True", "All"]])
    inv = inventory_from_exports(folder)
    s = skipped(inv)
    assert s["deny"] == 3 and s["denied_allow"] == 2
    assert set(inv.grants) == BASE_GRANTS - {Grant(MAILER, "alice@contoso.com", Right.SEND_AS),
                                             Grant(MAILER, "shared1@contoso.com", Right.FULL_ACCESS)}


def test_deny_for_another_trustee_does_not_cancel(folder):
    add_rp(folder, [["alice", "Scanner", "Deny", "SendAs", "False", "None"]])
    inv = inventory_from_exports(folder)
    assert skipped(inv)["denied_allow"] == 0 and set(inv.grants) == BASE_GRANTS


def test_orphaned_sids(folder):
    add_rp(folder, [["carol", "S-1-5-21-3623811015-3361044348-30300820-1013", "Allow", "SendAs", "False", "None"]])
    add_mp(folder, [["carol", "S-1-5-21-1-2-3-500", "FullAccess", "False", "False", "All"]])
    inv = inventory_from_exports(folder)
    assert skipped(inv)["orphaned_sid"] == 2 and set(inv.grants) == BASE_GRANTS


@pytest.mark.parametrize("trustee", ["bob.upn@contoso.com", "bob@contoso.com", "NAMPR03A001\\bob", "bob",
                                     "eeeeeeee-0000-0000-0000-000000000002", "Bob Baker", "BOB@CONTOSO.COM",
                                     "CN=bob,OU=contoso.onmicrosoft.com,DC=prod,DC=outlook,DC=com",
                                     "alice@contoso.onmicrosoft.com"])
def test_human_delegates_in_every_form(folder, trustee):
    add_rp(folder, [["Shared One", trustee, "Allow", "SendAs", "False", "None"]])
    add_mp(folder, [["shared1", trustee, "FullAccess, ReadPermission", "False", "False", "All"]])
    inv = inventory_from_exports(folder)
    assert skipped(inv)["human_delegate"] == 2 and set(inv.grants) == BASE_GRANTS


def test_group_trustee_is_a_human_delegate(folder):
    write(folder / "g.csv", export_text(
        ["Name", "Alias", "PrimarySmtpAddress", "DistinguishedName", "GroupType", "RecipientTypeDetails"],
        [["Helpdesk Team", "helpdesk-team", "helpdesk-team@contoso.com", "CN=Helpdesk Team,DC=x",
          "Universal, SecurityEnabled", "MailUniversalSecurityGroup"]]))
    write(folder / "gm.csv", export_text(["GroupIdentity", "Name", "PrimarySmtpAddress", "RecipientTypeDetails"],
                                         [["helpdesk-team@contoso.com", "carol", "carol@contoso.com", "UserMailbox"]]))
    add_mp(folder, [["shared1", "Helpdesk Team", "FullAccess", "False", "False", "All"]])
    inv = inventory_from_exports(folder)
    assert skipped(inv)["human_delegate"] == 1


def test_other_rights(folder):
    add_mp(folder, [["carol", "Mailer", "ReadPermission", "False", "False", "All"],
                    ["carol", "bob@contoso.com", "{ReadPermission, ChangeOwner}", "False", "False", "All"],
                    # an unknown trustee holding nothing we migrate is not an error
                    ["carol", "Somebody Unknown", "ReadPermission", "False", "False", "All"]])
    add_rp(folder, [["carol", "Mailer", "Allow", "ReadPermission", "False", "None"]])
    inv = inventory_from_exports(folder)
    assert skipped(inv)["other_rights"] == 4 and set(inv.grants) == BASE_GRANTS


def test_duplicates_are_one_grant(folder):
    add_rp(folder, [["alice@contoso.com", "mailer", "Allow", "SendAs", "False", "None"],
                    ["eeeeeeee-0000-0000-0000-000000000001", MAILER, "Allow", "SendAs", "False", "None"]])
    inv = inventory_from_exports(folder)
    assert set(inv.grants) == BASE_GRANTS and len(inv.grants) == 4
    assert skipped(inv)["duplicate"] == 2


def test_unknown_trustee_allowed(folder):
    add_rp(folder, [["carol", "Old Fax", "Allow", "SendAs", "False", "None"]])
    with pytest.raises(InputError, match=r"z-rp.csv, row 2, field 'Trustee', value 'Old Fax'"):
        inventory_from_exports(folder)
    inv = inventory_from_exports(folder, allow_unknown_trustees=True)
    assert skipped(inv)["unknown_trustee"] == 1 and set(inv.grants) == BASE_GRANTS


# --------------------------------------------------------------------------------------- encodings, styles


@pytest.mark.parametrize("encoding", ["utf-8", "utf-8-sig", "utf-16-le", "utf-16-be"])
@pytest.mark.parametrize("type_line,remoting", [(None, False),
                                                ("#TYPE Deserialized.Microsoft.Exchange.Management.RecipientTasks"
                                                 ".RecipientPermission", True)])
def test_encodings_and_powershell_decorations(folder, encoding, type_line, remoting):
    (folder / "c.csv").unlink()
    rows = [["alice", "Mailer", "Allow", "SendAs", "False", "None"],
            ["Shared One", "Scanner", "Allow", "{SendAs}", "False", "None"],
            ["bob", "11111111-0000-0000-0000-000000000002", "Allow", "SendAs", "False", "None"],
            ["carol", "Zoë Ünïcode", "Allow", "ReadPermission", "False", "None"]]
    write(folder / "c.csv", export_text(RP_HEADER, rows, type_line=type_line, remoting=remoting), encoding)
    inv = inventory_from_exports(folder)
    assert set(inv.grants) == BASE_GRANTS
    src = next(s for s in inv.manifest["sources"] if s["file"] == "c.csv")
    assert src["kind"] == "recipient_permissions" and src["rows"] == 4
    assert src["encoding"] == encoding and src["type_line"] == bool(type_line)


def test_utf16_without_bom_and_cp1252(folder):
    text = export_text(RP_HEADER, [["alice", "Mailer", "Allow", "SendAs", "False", "None"]])
    write(folder / "c.csv", text, "utf-16-le")
    assert px.read_export(folder / "c.csv").encoding == "utf-16-le"
    write(folder / "b2.csv", export_text(["PrimarySmtpAddress", "DisplayName", "RecipientTypeDetails"],
                                         [["renee@contoso.com", "Renée", "UserMailbox"]]), "cp1252")
    f = px.read_export(folder / "b2.csv")
    assert f.encoding == "cp1252" and f.rows[0][1]["displayname"] == "Renée"


def test_recognition_ignores_names_and_column_case(tmp_path):
    path = tmp_path / "mailboxes.csv"  # a misleading name: the columns say service principals
    write(path, export_text(["displayname", "APPID", "objectId"], [["X", MAILER, "o"]]))
    assert px.read_export(path).kind == px.SERVICE_PRINCIPALS


@pytest.mark.parametrize("value,items", [("SendAs", ["SendAs"]), ("{SendAs}", ["SendAs"]),
                                         ("FullAccess, ReadPermission", ["FullAccess", "ReadPermission"]),
                                         ("{FullAccess, ReadPermission}", ["FullAccess", "ReadPermission"]),
                                         ("FullAccess;ReadPermission", ["FullAccess", "ReadPermission"]),
                                         ("", [])])
def test_multi_value(value, items):
    assert px.multi_value(value, path=Path("f"), row=2, column="AccessRights") == items


def test_empty_file_is_reported_not_read(folder):
    (folder / "empty.csv").write_bytes(b"")
    inv = inventory_from_exports(folder)
    assert {"file": "empty.csv", "kind": "empty"}.items() <= next(
        s for s in inv.manifest["sources"] if s["file"] == "empty.csv").items()
    assert set(inv.grants) == BASE_GRANTS


def test_header_only_export_is_fine(folder):
    add_mp(folder, [])
    assert set(inventory_from_exports(folder).grants) == BASE_GRANTS


# ------------------------------------------------------------------------------------------- resolution


@pytest.mark.parametrize("trustee", ["Scanner", "scanner", "SCANNER", SCANNER, SCANNER.upper(),
                                     "11111111-0000-0000-0000-000000000004", "Scanner Identity"])
def test_sp_trustee_forms(folder, trustee):
    add_rp(folder, [["carol", trustee, "Allow", "SendAs", "False", "None"]])
    inv = inventory_from_exports(folder)
    assert Grant(SCANNER, "carol@contoso.com", Right.SEND_AS) in inv.grants


@pytest.mark.parametrize("identity", ["carol", "CAROL", "carol@contoso.com", "eeeeeeee-0000-0000-0000-000000000004",
                                      "99999999-0000-0000-0000-000000000004",
                                      "CN=carol,OU=contoso.onmicrosoft.com,DC=prod,DC=outlook,DC=com"])
def test_mailbox_identity_forms(folder, identity):
    add_mp(folder, [[identity, "Scanner", "FullAccess", "False", "False", "All"]])
    assert Grant(SCANNER, "carol@contoso.com", Right.FULL_ACCESS) in inventory_from_exports(folder).grants


def test_mailbox_identity_by_proxy_address(folder):
    add_mp(folder, [["alice@contoso.onmicrosoft.com", "Scanner", "FullAccess", "False", "False", "All"]])
    assert Grant(SCANNER, "alice@contoso.com", Right.FULL_ACCESS) in inventory_from_exports(folder).grants


def test_trustee_naming_an_sp_and_a_mailbox_is_ambiguous(folder):
    # a mailbox aliased "mailer": the trustee "Mailer" could be the app or the person; never guess
    text = (folder / "b.csv").read_text()
    (folder / "b.csv").write_text(text + '"mailer","mailer","Mailer Person","mailer@contoso.com","mailer@contoso.com",'
                                  '"","e5","g5","CN=mailer,DC=x","mailer","UserMailbox","",""\r\n')
    with pytest.raises(InputError, match=r"c.csv, row 2, field 'Trustee', value 'Mailer': ambiguous"):
        inventory_from_exports(folder)


def test_ambiguous_mailbox_identity(folder):
    text = (folder / "b.csv").read_text()
    # a second mailbox whose Name is another mailbox's alias
    (folder / "b.csv").write_text(text + '"carol","carol2","Carol Two","carol2@contoso.com","carol2@contoso.com",'
                                  '"","e6","g6","CN=carol,DC=y","carol2","UserMailbox","",""\r\n')
    add_mp(folder, [["carol", "Scanner", "FullAccess", "False", "False", "All"]])
    with pytest.raises(InputError, match=r"z-mp.csv, row 2, field 'Identity', value 'carol'"):
        inventory_from_exports(folder)


def test_groups_with_members(folder):
    write(folder / "g.csv", export_text(
        ["Name", "Alias", "PrimarySmtpAddress", "DistinguishedName", "Guid", "ExternalDirectoryObjectId",
         "GroupType", "RecipientTypeDetails"],
        [["Senders", "senders", "senders@contoso.com", "CN=Senders,DC=x", "G1", "E1", "Universal, SecurityEnabled",
          "MailUniversalSecurityGroup"],
         ["Nested", "nested", "nested@contoso.com", "CN=Nested,DC=x", "G2", "E2", "Universal, SecurityEnabled",
          "MailUniversalSecurityGroup"]]))
    write(folder / "gm.csv", export_text(
        ["GroupIdentity", "Name", "PrimarySmtpAddress", "RecipientTypeDetails", "ExternalDirectoryObjectId"],
        [["senders@contoso.com", "alice", "alice@contoso.com", "UserMailbox", ""],
         ["Senders", "bob", "", "UserMailbox", "eeeeeeee-0000-0000-0000-000000000002"],  # by name, by object id
         ["CN=Senders,DC=x", "Nested", "nested@contoso.com", "MailUniversalSecurityGroup", "E2"],
         ["senders@contoso.com", "ext", "ext@fabrikam.example", "MailContact", ""],
         ["senders@contoso.com", "alice", "alice@contoso.com", "UserMailbox", ""]]))  # repeated row
    inv = inventory_from_exports(folder)
    groups = {g.address: g for g in inv.groups}
    assert groups["senders@contoso.com"].members == {"alice@contoso.com", "bob@contoso.com"}
    assert groups["senders@contoso.com"].other_members == 2 and groups["senders@contoso.com"].dn == "CN=Senders,DC=x"
    assert groups["nested@contoso.com"].members == frozenset() and groups["nested@contoso.com"].other_members == 0


def test_group_member_of_unknown_group(folder):
    write(folder / "g.csv", export_text(["Name", "PrimarySmtpAddress", "DistinguishedName", "GroupType"],
                                        [["Senders", "senders@contoso.com", "CN=Senders,DC=x", "Universal"]]))
    write(folder / "gm.csv", export_text(["GroupIdentity", "PrimarySmtpAddress"], [["other@contoso.com", "alice@contoso.com"]]))
    with pytest.raises(InputError, match=r"gm.csv, row 2, field 'GroupIdentity', value 'other@contoso.com'"):
        inventory_from_exports(folder)


def test_groups_without_member_export_are_not_inventoried(folder):
    write(folder / "g.csv", export_text(["Name", "PrimarySmtpAddress", "DistinguishedName", "GroupType"],
                                        [["Senders", "senders@contoso.com", "CN=Senders,DC=x", "Universal"]]))
    inv = inventory_from_exports(folder)
    assert inv.groups == () and skipped(inv)["groups_without_members"] == 1


def test_from_records_matches_csv(folder):
    """The live path's rows (JSON: lists, booleans) classify exactly as the CSV rows do."""
    files = [px.read_export(p) for p in sorted(folder.glob("*.csv")) if p.name not in ("c.csv",)]
    files.append(px.from_records(px.RECIPIENT_PERMISSIONS, [
        {"Identity": "alice", "Trustee": "Mailer", "AccessControlType": "Allow", "AccessRights": ["SendAs"],
         "IsInherited": False, "InheritanceType": "None"},
        {"Identity": "Shared One", "Trustee": SCANNER, "AccessControlType": "Allow", "AccessRights": ["SendAs"],
         "IsInherited": False},
        {"Identity": "bob", "Trustee": "11111111-0000-0000-0000-000000000002", "AccessControlType": "Allow",
         "AccessRights": ["SendAs"], "IsInherited": False},
        {"Identity": "carol", "Trustee": "NT AUTHORITY\\SELF", "AccessControlType": "Allow",
         "AccessRights": ["SendAs"], "IsInherited": False}], "Get-RecipientPermission"))
    from migrator.inventory.exports import build_inventory

    inv = build_inventory(files, source="tenant")
    assert set(inv.grants) == BASE_GRANTS and skipped(inv)["self"] == 1 and inv.manifest["source"] == "tenant"
