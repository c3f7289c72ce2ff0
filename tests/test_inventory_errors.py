"""Bad input to `migrator inventory --from-exports`: non-zero exit, a message naming file, row and value, and
nothing written at --out (issue 2, "Done when")."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from migrator.cli import main

DATA = Path(__file__).parent / "data" / "exports"


def _folder(tmp_path: Path, *bad: str) -> Path:
    folder = tmp_path / "exports"
    shutil.copytree(DATA / "base", folder)
    for name in bad:
        shutil.copy(DATA / "bad" / name, folder / name)
    return folder


def _run(folder: Path, out: Path, *extra: str):
    return CliRunner().invoke(main, ["inventory", "--from-exports", str(folder), "--out", str(out), *extra])


def test_base_folder_is_good(tmp_path):
    result = _run(_folder(tmp_path), tmp_path / "inv")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "inv" / "grants.csv").exists()


@pytest.mark.parametrize("bad,fragments", [
    ("truncated.csv", ["truncated.csv", "row 3", "malformed CSV", "value '\"carol\",\"Scan'"]),
    ("short-row.csv", ["short-row.csv", "row 3", "5 fields where the header has 6", "'carol,Scanner,Allow,SendAs,False'"]),
    ("stray-quote.csv", ["stray-quote.csv", "row 3", "malformed CSV", 'Scan"ner']),
    ("message-trace.csv", ["message-trace.csv", "match no known export", "SenderAddress", "RecipientAddress"]),
    ("type-name.csv", ["type-name.csv", "row 2", "'AccessRights'", "'System.Collections.ArrayList'"]),
    ("ambiguous.csv", ["ambiguous.csv", "row 2", "'Trustee'", "value 'Twin'", "aaaaaaaa-0000-0000-0000-000000000002",
                       "aaaaaaaa-0000-0000-0000-000000000003"]),
    ("absent-mailbox.csv", ["absent-mailbox.csv", "row 3", "'Identity'", "'dave@contoso.com'",
                            "absent from the mailbox export"]),
    ("unknown-trustee.csv", ["unknown-trustee.csv", "row 2", "'Old Fax Gateway'", "--allow-unknown-trustees"]),
])
def test_bad_input_names_file_row_value_and_writes_nothing(tmp_path, bad, fragments):
    out = tmp_path / "inventory" / "x"
    result = _run(_folder(tmp_path, bad), out)
    assert result.exit_code == 2, result.output
    message = result.output
    assert message.startswith("Error: ")
    for fragment in fragments:
        assert fragment in message, (fragment, message)
    assert "Traceback" not in message
    assert not out.exists()
    assert list((tmp_path / "inventory").iterdir()) == [] if (tmp_path / "inventory").exists() else True


def test_unknown_trustee_skipped_when_allowed(tmp_path):
    out = tmp_path / "inv"
    result = _run(_folder(tmp_path, "unknown-trustee.csv"), out, "--allow-unknown-trustees")
    assert result.exit_code == 0, result.output
    assert "unknown_trustee" in result.output
    import json

    skipped = {s["class"]: s for s in json.loads((out / "manifest.json").read_text())["skipped"]}
    assert skipped["unknown_trustee"]["count"] == 1
    assert "Old Fax Gateway" in skipped["unknown_trustee"]["examples"][0]


def test_error_keeps_previous_inventory_with_force(tmp_path):
    out = tmp_path / "inv"
    assert _run(_folder(tmp_path), out).exit_code == 0
    before = (out / "grants.csv").read_bytes()
    shutil.copy(DATA / "bad" / "ambiguous.csv", tmp_path / "exports" / "ambiguous.csv")
    result = _run(tmp_path / "exports", out, "--force")
    assert result.exit_code == 2
    assert (out / "grants.csv").read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["exports", "inv"]  # no temp folder left behind


def test_existing_out_without_force(tmp_path):
    out = tmp_path / "inv"
    assert _run(_folder(tmp_path), out).exit_code == 0
    result = _run(tmp_path / "exports", out)
    assert result.exit_code == 2 and "already exists" in result.output


@pytest.mark.parametrize("missing,expect", [("a.csv", "no Get-ServicePrincipal export"),
                                            ("b.csv", "no Get-EXOMailbox/Get-Mailbox export")])
def test_required_export_missing(tmp_path, missing, expect):
    folder = _folder(tmp_path)
    (folder / missing).unlink()
    result = _run(folder, tmp_path / "inv")
    assert result.exit_code == 2 and expect in result.output
    assert not (tmp_path / "inv").exists()


def test_no_permission_export(tmp_path):
    folder = _folder(tmp_path)
    (folder / "c.csv").unlink()
    (folder / "d.csv").unlink()
    result = _run(folder, tmp_path / "inv")
    assert result.exit_code == 2 and "no Get-RecipientPermission or Get-MailboxPermission" in result.output


def test_not_a_folder_and_empty_folder(tmp_path):
    result = _run(tmp_path / "nope", tmp_path / "inv")
    assert result.exit_code != 0
    (tmp_path / "empty").mkdir()
    result = _run(tmp_path / "empty", tmp_path / "inv")
    assert result.exit_code == 2 and "no .csv files" in result.output


def test_recognised_but_missing_column(tmp_path):
    folder = _folder(tmp_path)
    (folder / "e.csv").write_text('"Identity","Trustee","AccessRights"\r\n"alice","Mailer","SendAs"\r\n')
    result = _run(folder, tmp_path / "inv")
    assert result.exit_code == 2
    assert "e.csv" in result.output and "Get-RecipientPermission" in result.output
    assert "accesscontroltype" in result.output


@pytest.mark.parametrize("column,value", [("IsInherited", "maybe"), ("AccessControlType", "Audit")])
def test_bad_cell_values(tmp_path, column, value):
    folder = _folder(tmp_path)
    text = (folder / "c.csv").read_text()
    old = '"alice","Mailer","Allow","SendAs","False","None"'
    new = old.replace('"False"', f'"{value}"') if column == "IsInherited" else old.replace('"Allow"', f'"{value}"')
    (folder / "c.csv").write_text(text.replace(old, new))
    result = _run(folder, tmp_path / "inv")
    assert result.exit_code == 2
    assert "c.csv, row 2" in result.output and f"'{column}'" in result.output and f"'{value}'" in result.output


def test_options_are_exclusive(tmp_path):
    result = CliRunner().invoke(main, ["inventory", "--export-script", "--from-exports", str(tmp_path)])
    assert result.exit_code == 2 and "exactly one" in result.output
    result = CliRunner().invoke(main, ["inventory", "--from-exports", str(tmp_path)])
    assert result.exit_code == 2 and "--out is required" in result.output
