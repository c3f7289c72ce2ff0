"""The planner's input: bare grants CSVs (every bad row named by file and row) and inventory folders."""

from __future__ import annotations

import pytest

from migrator.errors import InputError
from migrator.model import Right
from migrator.planner.source import inventory_sha256, load_source, read_grants_csv
from plan_helpers import make_inventory, write


def _csv(tmp_path, text, name="grants.csv"):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_minimal_columns_default_to_sendas(tmp_path):
    inv = read_grants_csv(_csv(tmp_path, "app_id,mailbox\nAPP1, Adele@Contoso.com \napp2,bob@contoso.com\n"))
    assert [(g.app_id, g.mailbox, g.right) for g in inv.grants] == [
        ("app1", "adele@contoso.com", Right.SEND_AS), ("app2", "bob@contoso.com", Right.SEND_AS)]
    assert [m.address for m in inv.mailboxes] == ["adele@contoso.com", "bob@contoso.com"]


def test_columns_in_any_order_and_case_with_names_and_rights(tmp_path):
    inv = read_grants_csv(_csv(tmp_path, "\ufeffMailbox,Right,App_Name,APP_ID\n"
                                         "a@contoso.com,fullaccess,Billing,x1\n"
                                         "b@contoso.com,,,x1\n"))
    assert {(g.mailbox, g.right) for g in inv.grants} == {("a@contoso.com", Right.FULL_ACCESS),
                                                          ("b@contoso.com", Right.SEND_AS)}
    assert inv.service_principals[0].display_name == "Billing"


@pytest.mark.parametrize("text,row,field,fragment", [
    ("app_id,mailbox,colour\nx,a@contoso.com,red\n", 1, "colour", "unknown column"),
    ("app_id\nx\n", 1, "mailbox", "missing column"),
    ("app_id,mailbox\nx,a@contoso.com\n ,b@contoso.com\n", 3, "app_id", "empty app id"),
    ("app_id,mailbox\nx,a@contoso.com\ny,b@contoso.com\nX,A@contoso.com\n", 4, None, "duplicate of row 2"),
    ("app_id,mailbox\nx,not-an-address\n", 2, "mailbox", "not a valid SMTP address"),
    ("app_id,mailbox\nx,a b@contoso.com\n", 2, "mailbox", "not a valid SMTP address"),
    ("app_id,mailbox,right\nx,a@contoso.com,ReadPermission\n", 2, "right", "SendAs or FullAccess"),
    ("app_id,mailbox\nx,a@contoso.com,extra\n", 2, None, "has 3 fields"),
    ("app_id,mailbox\nx;y,a@contoso.com\n", 2, "app_id", "must not contain"),
    ("app_id,mailbox,mailbox\nx,a@contoso.com,a@contoso.com\n", 1, "mailbox", "column appears twice"),
])
def test_bad_rows_name_file_row_and_field(tmp_path, text, row, field, fragment):
    path = _csv(tmp_path, text)
    with pytest.raises(InputError) as exc:
        read_grants_csv(path)
    err = exc.value
    assert (err.path, err.row, err.field) == (str(path), row, field)
    assert fragment in str(err)
    assert str(path) in str(err) and f"row {row}" in str(err)


def test_header_only_file_is_refused(tmp_path):
    with pytest.raises(InputError, match="no grants"):
        read_grants_csv(_csv(tmp_path, "app_id,mailbox\n"))


def test_not_utf8_is_refused(tmp_path):
    path = tmp_path / "g.csv"
    path.write_bytes(b"app_id,mailbox\nx,\xff@contoso.com\n")
    with pytest.raises(InputError, match="not UTF-8"):
        read_grants_csv(path)


def test_load_source_reads_an_inventory_folder_and_hashes_without_manifest(tmp_path):
    inv = make_inventory({"a1": ["m1", "m2"]}, fullaccess={"a1": ["m1"]})
    folder = write(inv, tmp_path / "inv")
    src = load_source(folder)
    assert src.kind == "inventory" and len(src.inventory.grants) == 3
    first = src.sha256
    (folder / "manifest.json").write_text((folder / "manifest.json").read_text().replace("2026", "2027"))
    assert inventory_sha256(folder) == first  # a new timestamp is not a new inventory
    grants = folder / "grants.csv"
    grants.write_bytes(grants.read_bytes().replace(b"m2@", b"m3@"))
    assert inventory_sha256(folder) != first


def test_load_source_missing_path(tmp_path):
    with pytest.raises(InputError, match="not found"):
        load_source(tmp_path / "nope")
