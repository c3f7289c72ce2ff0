"""`migrator plan` and `migrator show` through click's CliRunner, with exact output."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from migrator.cli import main
from migrator.planner.build import PlanOptions, build_plan
from migrator.planner.plan import write_plan
from migrator.planner.source import load_source
from plan_helpers import make_inventory, write


@pytest.fixture
def runner(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # relative paths, so the output is the same on every machine
    return CliRunner()


def _sample_plan() -> str:
    """In the current folder: inventory/t and plans/t; returns the inventory's SHA-256."""
    inv = make_inventory(
        {"billing": ["m1", "m2", "m3", "m4"], "hr": ["m1", "m2"], "crm": ["m3", "m4"], "news": ["m5"]},
        fullaccess={"hr": ["m1"], "archiver": ["m6"]}, groups={"hr-team": ["m1", "m2"]},
        attributes={"m5": {"CustomAttribute3": "newsletter"}},
        permissions=[("crm", "Microsoft Graph", "Mail.Send")],
        names={"billing": "Billing", "hr": "HR Portal", "crm": "CRM", "news": "Newsletter", "archiver": "Archiver"})
    write(inv, Path("inventory/t"))
    source = load_source(Path("inventory/t"))
    plan = build_plan(source, PlanOptions(pilot=1, batch_size=2, allow_attribute_scopes=True),
                      created="2026-01-01T00:00:00Z")
    write_plan(plan, Path("plans/t"))
    return source.sha256


SHOW = """\
Plan:        plans/t
Created:     2026-01-01T00:00:00Z
Source:      inventory/t (inventory, sha256 {sha12})
Role:        Application SMTP.SendAsApp
Apps:        5 (4 migrating, 1 flagged)
Mailboxes:   6
Grants:      9 migrate (removed after the cut-over), 2 keep (FullAccess)
Groups:      2 (1 new, 1 reuse)
Cover:       3 sets (2 groups, 1 attribute value(s)); lower bound 3, optimal; strategy minimal
Scopes:      4 (1 with attribute filters)
Assignments: 4
Batches:     3

Batch  Apps  Grants  Mailboxes  New groups  Scopes  Assignments  Note
    1     1       1          1           0       1            1  pilot: smallest blast radius first; attribute scope(s) S0001: future mailboxes with this value will be in scope
    2     2       4          4           1       2            2  wave; 1 app(s) hold unscoped Entra permissions, scoping is moot until removed: crm (Microsoft Graph/Mail.Send)
    3     1       4          4           0       1            1  wave

Existing RBAC: not read. The inventory did not read existing RBAC for Applications assignments (exports without \
the Get-ManagementRoleAssignment file): an app already moved by hand would be planned as if it had none

Graph/EWS:   access policies and the apps' mail permissions not read (nothing planned)

Flagged apps (unscoped Entra permissions: RBAC scoping does not limit them until removed):
  crm (CRM): Microsoft Graph/Mail.Send
"""


def test_show_exact_text(runner):
    sha = _sample_plan()
    result = runner.invoke(main, ["show", "plans/t"])
    assert result.exit_code == 0, result.output
    assert result.output == SHOW.format(sha12=sha[:12])


def test_show_json(runner):
    sha = _sample_plan()
    result = runner.invoke(main, ["show", "plans/t", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["source"] == {"path": "inventory/t", "kind": "inventory", "sha256": sha}
    assert data["cover"] == {"strategy": "minimal", "sets": 3, "lower_bound": 3, "optimal": True, "gap": 0,
                             "cut": None}
    assert {k: data["counts"][k] for k in ("apps", "grants_migrate", "grants_keep", "groups_new", "groups_reuse",
                                           "scopes", "assignments", "batches")} == {
        "apps": 5, "grants_migrate": 9, "grants_keep": 2, "groups_new": 1, "groups_reuse": 1, "scopes": 4,
        "assignments": 4, "batches": 3}
    assert [b["apps"] for b in data["batches"]] == [["news"], ["hr", "crm"], ["billing"]]
    assert data["flagged_apps"] == [{"app_id": "crm", "app_name": "CRM", "permissions": ["Microsoft Graph/Mail.Send"]}]


def test_show_tampered_plan_names_file_and_row(runner):
    _sample_plan()
    path = Path("plans/t/assignments.csv")
    path.write_bytes(path.read_bytes().replace(b"S0004", b"S0003"))
    result = runner.invoke(main, ["show", "plans/t"])
    assert result.exit_code == 2
    assert "Error: plans/t/assignments.csv, row 5: changed after the plan was hashed" in result.output


def test_plan_from_grants_csv(runner):
    Path("g.csv").write_text("app_id,mailbox,right\na1,x1@contoso.com,SendAs\na1,x2@contoso.com,SendAs\n"
                             "a2,x2@contoso.com,SendAs\na2,x1@contoso.com,FullAccess\n")
    # a grants CSV says nothing of the apps' Entra permissions: a FullAccess row needs the user's decision
    asked = runner.invoke(main, ["plan", "g.csv", "--out", "plans/g", "--pilot", "0", "--prefix", "rbac"])
    assert asked.exit_code == 2 and "1 app(s) hold FullAccess grants" in asked.output and "a2" in asked.output
    assert not Path("plans/g").exists()
    result = runner.invoke(main, ["plan", "g.csv", "--out", "plans/g", "--pilot", "0", "--prefix", "rbac",
                                  "--fullaccess-smtp", "no"])
    assert result.exit_code == 0, result.output
    assert "Grants:      3 migrate (removed after the cut-over), 1 keep (FullAccess)" in result.output
    assert "Cover:       2 sets (2 groups, 0 attribute value(s)); lower bound 2, optimal" in result.output
    assert result.output.rstrip().endswith("then run `migrator execute plans/g --batch 1`.")
    assert Path("plans/g/plan.json").exists()
    names = Path("plans/g/groups.csv").read_text()
    assert "rbac-G0001-" in names
    again = runner.invoke(main, ["plan", "g.csv", "--out", "plans/g", "--fullaccess-smtp", "no"])
    assert again.exit_code == 2 and "already exists" in again.output
    forced = runner.invoke(main, ["plan", "g.csv", "--out", "plans/g", "--force", "--strategy", "per-app",
                                  "--fullaccess-smtp", "yes"])
    assert forced.exit_code == 0, forced.output
    assert "1 app(s) whose FullAccess is SMTP reach moved to RBAC" in forced.output


def test_plan_default_out_is_plans_slash_input_name(runner):
    Path("tenant-a.csv").write_text("app_id,mailbox\na1,x1@contoso.com\n")
    result = runner.invoke(main, ["plan", "tenant-a.csv"])
    assert result.exit_code == 0, result.output
    assert Path("plans/tenant-a/plan.json").exists()


@pytest.mark.parametrize("body,message", [
    ("app_id,mailbox,owner\na1,x1@contoso.com,bob\n", "Error: g.csv, row 1, field 'owner': unknown column"),
    ("app_id,mailbox\na1,x1@contoso.com\n,x2@contoso.com\n", "Error: g.csv, row 3, field 'app_id': empty app id"),
    ("app_id,mailbox\na1,x1@contoso.com\na1,X1@contoso.com\n", "Error: g.csv, row 3: duplicate of row 2"),
])
def test_plan_bad_input_exits_2_with_file_and_row(runner, body, message):
    Path("g.csv").write_text(body)
    result = runner.invoke(main, ["plan", "g.csv", "--out", "plans/g"])
    assert result.exit_code == 2
    assert message in result.output
    assert not Path("plans/g").exists()


def test_plan_with_only_fullaccess_has_nothing_to_migrate(runner):
    Path("fa.csv").write_text("app_id,mailbox,right\na1,x@contoso.com,FullAccess\n")
    result = runner.invoke(main, ["plan", "fa.csv", "--out", "plans/fa", "--fullaccess-smtp", "no"])
    assert result.exit_code == 0, result.output
    assert "Batches:     0" in result.output and "Nothing to migrate" in result.output
    shown = runner.invoke(main, ["show", "plans/fa"])
    assert shown.exit_code == 0 and "Grants:      0 migrate (removed after the cut-over), 1 keep (FullAccess)" \
        in shown.output
