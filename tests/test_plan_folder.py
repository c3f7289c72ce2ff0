"""The plan folder: atomic write, hashes (an edit is named by file and row), exactness refused by tampering."""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import replace

import pytest

from migrator.errors import InputError, PlanError
from migrator.planner import plan as P
from migrator.planner.build import PlanOptions, build_plan
from migrator.planner.source import Source
from plan_helpers import addr, make_inventory

SENDAS = {"big": ["m1", "m2", "m3", "m4"], "left": ["m1", "m2"], "right": ["m3", "m4"]}


@pytest.fixture
def plan():
    inv = make_inventory(SENDAS, fullaccess={"left": ["m1"]}, names={"left": "=HYPERLINK(\"http://x\")"})
    return build_plan(Source.from_inventory(inv, "inventory", "inventory/t", "0" * 64), PlanOptions(pilot=1, batch_size=1),
                      created="2026-01-01T00:00:00Z")


@pytest.fixture
def folder(plan, tmp_path):
    return P.write_plan(plan, tmp_path / "plan")


def test_round_trip(plan, folder):
    loaded = P.load_plan(folder)
    assert loaded.groups == plan.groups and loaded.scopes == plan.scopes and loaded.grants == plan.grants
    assert loaded.assignments == plan.assignments and loaded.batches == plan.batches
    meta = json.loads((folder / "plan.json").read_text())
    assert set(meta["files"]) == set(P.CSV_FILES) | {P.ROWHASH_FILE}
    assert meta["counts"]["grants_migrate"] == 8 and meta["counts"]["grants_keep"] == 1
    for name, digest in meta["files"].items():
        assert hashlib.sha256((folder / name).read_bytes()).hexdigest() == digest


def test_contract_columns_come_first(folder):
    contract = {
        "grants.csv": "app_id,app_name,mailbox,right,action,reason,batch",
        "groups.csv": "group,name,status,dn,members",
        "memberships.csv": "group,mailbox",
        "scopes.csv": "scope,name,filter,groups",
        "assignments.csv": "assignment,app_id,app_name,role,scope,batch",
        "batches.csv": "batch,apps,grants,note",
    }
    for name, prefix in contract.items():
        assert (folder / name).read_text(encoding="utf-8").startswith(prefix), name


def test_formula_cells_are_neutralised_on_disk_and_restored_on_load(folder):
    text = (folder / "grants.csv").read_text(encoding="utf-8")
    assert "'=HYPERLINK" in text and ",=HYPERLINK" not in text
    assert any(a.app_name.startswith("=HYPERLINK") for a in P.load_plan(folder).assignments)


def _edit(path, old: bytes, new: bytes):
    data = path.read_bytes()
    assert old in data
    path.write_bytes(data.replace(old, new, 1))


def test_edited_cell_is_named_by_file_and_row(folder):
    groups = folder / "groups.csv"
    lines = groups.read_bytes().split(b"\r\n")
    lines[2] = lines[2].replace(b",new,", b",reuse,")
    groups.write_bytes(b"\r\n".join(lines))
    with pytest.raises(PlanError) as exc:
        P.load_plan(folder)
    assert exc.value.path == str(groups) and exc.value.row == 3
    assert "changed after the plan was hashed" in str(exc.value) and "row 3" in str(exc.value)


def test_deleted_row_is_named(folder):
    path = folder / "memberships.csv"
    lines = path.read_bytes().split(b"\r\n")
    del lines[3]
    path.write_bytes(b"\r\n".join(lines))
    with pytest.raises(PlanError) as exc:
        P.load_plan(folder)
    assert exc.value.path == str(path) and exc.value.row == 4


def test_appended_row_is_named(folder):
    path = folder / "assignments.csv"
    rows = path.read_bytes().count(b"\r\n")
    with open(path, "ab") as fh:
        fh.write(b"A99999,evil,,Application SMTP.SendAsApp,S0001,1,x\r\n")
    with pytest.raises(PlanError) as exc:
        P.load_plan(folder)
    assert exc.value.row == rows + 1


def test_line_ending_change_is_reported_without_a_row(folder):
    path = folder / "batches.csv"
    path.write_bytes(path.read_bytes().replace(b"\r\n", b"\n"))
    with pytest.raises(PlanError, match="every row reads the same") as exc:
        P.load_plan(folder)
    assert exc.value.row is None and exc.value.path == str(path)


def test_missing_file_and_bad_plan_json(folder):
    (folder / "scopes.csv").unlink()
    with pytest.raises(PlanError, match="missing"):
        P.load_plan(folder)
    (folder / "plan.json").write_text("{not json")
    with pytest.raises(PlanError, match="not valid JSON"):
        P.load_plan(folder)


def test_edited_counts_in_plan_json_are_refused(folder):
    meta = json.loads((folder / "plan.json").read_text())
    meta["counts"]["groups"] += 1
    (folder / "plan.json").write_text(json.dumps(meta))
    with pytest.raises(PlanError, match=r"counts\.groups"):
        P.load_plan(folder)


def _rehash(folder):
    """What someone would have to do to slip an edit past the hashes: recompute them all."""
    meta = json.loads((folder / "plan.json").read_text())
    rowhashes = json.loads((folder / P.ROWHASH_FILE).read_text())
    import csv
    for name in P.CSV_FILES:
        with open(folder / name, newline="", encoding="utf-8") as fh:
            rowhashes["files"][name] = base64.b64encode(b"".join(P._row_digest(r) for r in csv.reader(fh))).decode()
    (folder / P.ROWHASH_FILE).write_text(json.dumps(rowhashes))
    for name in meta["files"]:
        meta["files"][name] = hashlib.sha256((folder / name).read_bytes()).hexdigest()
    (folder / "plan.json").write_text(json.dumps(meta))


def test_rehashed_tampering_is_still_caught_by_the_exactness_check(folder):
    # add a mailbox to a group and fix its member count: every app using the group would gain it
    groups = P.load_plan(folder).groups
    g = groups[0]
    with open(folder / "memberships.csv", "ab") as fh:
        fh.write(f"{g.key},intruder@contoso.com\r\n".encode())
    _edit(folder / "groups.csv", f"{g.key},{g.name},new,,{len(g.members)},".encode(),
          f"{g.key},{g.name},new,,{len(g.members) + 1},".encode())
    _rehash(folder)
    with pytest.raises(PlanError, match=r"would gain 1 mailbox.*intruder@contoso\.com"):
        P.load_plan(folder)


def test_rehashed_filter_edit_is_caught(folder):
    _edit(folder / "scopes.csv", b"MemberOfGroup -eq '{dn:G0001}'", b"MemberOfGroup -eq '{dn:G0002}'")
    _rehash(folder)
    with pytest.raises(PlanError, match="filter does not match"):
        P.load_plan(folder)


@pytest.mark.parametrize("tamper,fragment", [
    (lambda p: replace(p, groups=(replace(p.groups[0], members=p.groups[0].members | {addr("zz")}),
                                  *p.groups[1:])), "would gain"),
    (lambda p: replace(p, groups=(replace(p.groups[0], members=frozenset(sorted(p.groups[0].members)[1:])),
                                  *p.groups[1:])), "would lose"),
    (lambda p: replace(p, assignments=p.assignments[1:]), "would lose"),
    (lambda p: replace(p, assignments=(*p.assignments, replace(p.assignments[0], key="A99999", app_id="right"))),
     "would gain"),
    (lambda p: replace(p, grants=tuple(g._replace(action="keep") if g.right == "SendAs" else g for g in p.grants)),
     "must be migrated"),
    (lambda p: replace(p, grants=tuple(g._replace(action="migrate") if g.right == "FullAccess" else g
                                       for g in p.grants)), "removed only when its SMTP reach moves to RBAC"),
    (lambda p: replace(p, groups=(replace(p.groups[0], status="reuse"), *p.groups[1:])), "needs its DN"),
    (lambda p: replace(p, scopes=(replace(p.scopes[0], batch=0), *p.scopes[1:])), "only created in batch"),
    (lambda p: replace(p, batches=(p.batches[0], replace(p.batches[1], apps=p.batches[1].apps + p.batches[0].apps),
                                   *p.batches[2:])), "also in batch"),
    (lambda p: replace(p, assignments=tuple(replace(a, role="Application Mail.Send") for a in p.assignments)),
     "differs from the plan's role"),
    (lambda p: replace(p, scopes=(replace(p.scopes[0], name=p.groups[0].name.upper()), *p.scopes[1:])),
     "is also used by"),
    (lambda p: replace(p, groups=(replace(p.groups[0], name="x" * 65), *p.groups[1:])), "1-64 characters"),
])
def test_write_refuses_an_inexact_plan_and_writes_nothing(plan, tmp_path, tamper, fragment):
    assert P.check_exact(plan) == []
    bad = tamper(plan)
    assert any(fragment in p for p in P.check_exact(bad)), P.check_exact(bad)
    with pytest.raises(PlanError, match="not exact"):
        P.write_plan(bad, tmp_path / "bad")
    assert not (tmp_path / "bad").exists()
    assert list(tmp_path.iterdir()) == []


def test_existing_folder_needs_overwrite(plan, folder):
    with pytest.raises(InputError, match="already exists"):
        P.write_plan(plan, folder)
    P.write_plan(plan, folder, overwrite=True)
    P.load_plan(folder)


def test_fast_csv_writer_matches_csv_module(tmp_path):
    import csv
    import io

    from migrator import csvio
    rows = [("a", "b,c", 'say "hi"', "line\nbreak", "cr\rhere", "", "=1+1"), ("-x", "+y", "@z", "\tt", "ok", "u\x1fv", ""),
            ("", "", "", "", "", "", ""), ("plain", "O'Brien", "x'=y", "émoji ✓", "a;b", "'=already", " sp ")]
    digest_sha, _ = P._write_csv(tmp_path / "x.csv", ("h1", "h2", "h3", "h4", "h5", "h6", "h7"), rows)
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\r\n")
    writer.writerow(("h1", "h2", "h3", "h4", "h5", "h6", "h7"))
    for r in rows:
        writer.writerow([csvio.neutralise(c) for c in r])
    assert (tmp_path / "x.csv").read_bytes() == buf.getvalue().encode("utf-8")
    assert digest_sha == hashlib.sha256(buf.getvalue().encode("utf-8")).hexdigest()
    back = [tuple(r.values()) for _n, r in csvio.read_csv_rows(tmp_path / "x.csv")]
    # csvio cannot tell a neutralised "=x" from a value that was "'=x" to begin with: that one cell comes back
    # without its apostrophe (a csvio limitation, shared with the inventory)
    assert back[:3] == rows[:3] and back[3][:5] == rows[3][:5] and back[3][6] == rows[3][6]


def test_a_plan_with_a_journal_is_never_replaced(tmp_path):
    """`plan --force` over a plan that has run would delete the journal, the only record of removed grants."""
    from click.testing import CliRunner

    from migrator.cli import main

    grants = tmp_path / "grants.csv"
    grants.write_text("app_id,mailbox\n11111111-1111-1111-1111-111111111111,a@contoso.com\n", encoding="utf-8")
    out = tmp_path / "plan"
    runner = CliRunner()
    assert runner.invoke(main, ["plan", str(grants), "--out", str(out)]).exit_code == 0
    (out / "journal.db").write_bytes(b"journal")
    result = runner.invoke(main, ["plan", str(grants), "--out", str(out), "--force"])
    assert result.exit_code == 2, result.output
    assert "journal.db" in result.output
    assert (out / "journal.db").read_bytes() == b"journal"
    (out / "journal.db").unlink()  # the journal lost: its undo log alone still protects the folder
    (out / "undo-log.jsonl").write_text("{}\n")
    result = runner.invoke(main, ["plan", str(grants), "--out", str(out), "--force"])
    assert result.exit_code == 2 and "undo-log.jsonl" in result.output
