"""`migrator demo`: the whole story end to end against the in-process sandbox (about 40 s on a loaded 2-core
machine), plus its workdir rules and its exit status when a check fails."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from migrator.cli import main


@pytest.mark.slow
@pytest.mark.integration
@pytest.mark.timeout(240)
def test_demo_migrates_rolls_back_a_failed_batch_and_writes_the_report(tmp_path):
    from migrator.executor.journal import Journal
    from migrator.executor.status import batch_statuses
    from migrator.planner.plan import load_plan

    work = tmp_path / "demo-run"
    result = CliRunner().invoke(main, ["demo", "--workdir", str(work), "--seed", "3"])
    assert result.exit_code == 0, result.output
    out = result.output
    # The story's steps, in order.
    positions = [out.index(s) for s in ("1. A sandbox tenant", "2. Inventory", "3. Plan", "4. Execute the pilot",
                                        "fails mid-way", "Roll back batch", "Check the whole run", "Report")]
    assert positions == sorted(positions)
    assert "FAIL" not in out
    assert "zero access gaps and zero over-grants" in out
    # What it left behind: the inventory, the plan with its journal, the report.
    assert json.loads((work / "inventory" / "manifest.json").read_text())["source"] == "tenant"
    plan = load_plan(work / "plan")
    with Journal(work / "plan", readonly=True) as journal:
        conditions = {s.batch: s.condition for s in batch_statuses(plan, journal)}
    last = max(conditions)
    assert conditions == {**{b: "applied" for b in conditions if b != last}, last: "rolled back"}
    report = work / "plan" / "report" / "report.html"
    assert report.is_file() and (work / "plan" / "report" / "report.md").is_file()
    assert out.rstrip().endswith(f"Report: {report}")
    assert "rolled" in report.read_text(encoding="utf-8").lower()
    checks = json.loads((work / "demo-checks.json").read_text())
    assert checks["ok"] is True and checks["rolled_back_batch"] == last and len(checks["checks"]) >= 5
    # Real sends: every app with SMTP reach sent one message before and one after, and signed in all along.
    sends = json.loads((work / "plan" / "smtp-evidence.json").read_text())["smtp_sends"]
    assert len(sends) >= 10 and all(s["before"] == [235, 250] and s["after"] == [235, 250] for s in sends)
    assert any(c["check"].startswith("SMTP sign-ins by the apps all through the run") and c["ok"]
               for c in checks["checks"])
    assert out.count("AUTH 235, message 250") == 2 * len(sends)
    assert not list(work.rglob("*.secret"))  # the apps' made-up secrets do not outlive the demo
    md = (work / "plan" / "report" / "report.md").read_text(encoding="utf-8")
    assert "## SMTP sends" in md and md.count("| AUTH 235, message 250 | AUTH 235, message 250 |") == len(sends)
    assert 'id="smtp"' in report.read_text(encoding="utf-8")
    # Graph/EWS: the archiver moved off its access policy, the DenyAccess and policy-less apps untouched, the
    # timeline clean per permission; the report's section with the journal's state of the moved app
    assert "Graph/EWS, per permission: zero gaps and zero over-grants over 4 (app, permission) pairs" in out
    mail_checks = [c for c in checks["checks"] if "Graph/EWS" in c["check"]]
    assert len(mail_checks) == 3 and all(c["ok"] for c in mail_checks), mail_checks
    assert "## Graph/EWS access (Application Access Policies)" in md
    assert "| Mail.Read (Microsoft Graph), Mail.Send (Microsoft Graph) | Application Mail.Read, Application " \
           "Mail.Send | 11 |" in md
    assert "| RestrictAccess archive-scope@contoso.com | consent removed: 2 of 2; policy removed: 1 of 1 |" in md
    assert "| DenyAccess policy: RBAC has no deny |" in md and "| no policy: already reaches every mailbox |" in md
    # The sandbox's secret does not outlive it.
    assert not (work / "sandbox" / "client_secret").exists()


def test_demo_refuses_a_folder_it_did_not_make(tmp_path):
    (tmp_path / "mine.txt").write_text("keep me", encoding="utf-8")
    result = CliRunner().invoke(main, ["demo", "--workdir", str(tmp_path)])
    assert result.exit_code == 2
    assert "not empty" in result.output
    assert (tmp_path / "mine.txt").read_text(encoding="utf-8") == "keep me"


def test_demo_replaces_its_own_earlier_folder(tmp_path):
    from migrator.demo import MARKER, prepare_workdir

    work = prepare_workdir(tmp_path / "run")
    (work / "plan").mkdir()
    again = prepare_workdir(work)
    assert again == work and (work / MARKER).exists() and not (work / "plan").exists()


def test_demo_exits_non_zero_when_a_check_fails(tmp_path, monkeypatch):
    import migrator.demo as demo

    def fake_run_demo(**kwargs):
        return demo.DemoResult(tmp_path, tmp_path / "plan", tmp_path / "report.html",
                               checks=[("batch 1 done", True, ""), ("no gap", False, "access gap: app a on m")],
                               seconds=1.0, failed_batch=2)

    monkeypatch.setattr(demo, "run_demo", fake_run_demo)
    result = CliRunner().invoke(main, ["demo"])
    assert result.exit_code == 1
    assert "no gap: access gap: app a on m" in result.output
    assert "1 of 2 check(s) failed" in result.output
