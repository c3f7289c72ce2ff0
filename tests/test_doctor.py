"""`migrator doctor` (issue 10, item 5) through the real clients against the sandbox: every assumption verified on
the default sandbox; on a sandbox configured to differ (trustees shown by ObjectId, Get-EXO* refused, a 4-hour token
lifetime policy) each difference reported with what the tool will do, and `execute` adapting or refusing."""

from __future__ import annotations

import json
import time

import pytest
from click.testing import CliRunner

from migrator.cli import main
from migrator.executor.journal import Journal
from sandbox_world import make_fixture, make_plan

pytestmark = pytest.mark.integration

CHECKS = ["admin_roles", "cmdlets", "smtp_role", "trustee_names", "fullaccess_scan", "token_lifetimes",
          "rbac_assignments", "fullaccess_smtp", "access_policies"]


def cli(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def _world(tmp_path, *, differ=False, edit=None):
    from migrator.sandbox.faults import FaultProfile
    from migrator.sandbox.server import start_sandbox
    from migrator.sandbox.settings import SandboxSettings

    fixture, _ = make_fixture(seed=3, mailboxes=10, apps=3, clusters=2)
    # a FullAccess grant beside a SendAs one (not FullAccess-only): the scan and single reads have rows to compare
    app0 = fixture["apps"][0]["app_id"]
    first = next(p["mailbox"] for p in fixture["recipient_permissions"] if p["trustee"].get("app") == app0)
    fixture["mailbox_permissions"] = [{"mailbox": first, "user": {"app": app0}, "access_rights": ["FullAccess"]}]
    settings = dict(propagation_delay=0.5, token_lifetime=1.0, replication_delay=0.3, sendas_delay=0.3,
                    graph_replication_delay=0.2)
    faults = "none"
    if differ:
        fixture["token_lifetime_policies"] = [{"display_name": "Relay tokens 4h", "access_token_lifetime": "4:00:00",
                                               "is_organization_default": True}]
        settings["trustee_display"] = "object_id"
        faults = FaultProfile(name="differ", refused_cmdlets=("get-exomailbox", "get-exomailboxpermission"))
    if edit:
        edit(fixture)
    plan = make_plan(fixture, tmp_path / "plan", pilot=1, batch_size=2)
    sb = start_sandbox(fixture, run_dir=tmp_path / "sb", settings=SandboxSettings(**settings), faults=faults)
    return sb, plan


def test_doctor_verifies_every_assumption_on_the_sandbox(tmp_path):
    sb, plan = _world(tmp_path)
    try:
        result = cli("doctor", plan, "--profile", sb.profile_path)
        assert result.exit_code == 0, result.output
        data = json.loads((plan / "doctor.json").read_text())
        assert data["verdicts"] == {k: "verified" for k in CHECKS}, result.output
        assert data["blocking"] == [] and data["tenant_id"] == sb.tenant_id
        for key in CHECKS:
            assert f"[ok] {key}: verified" in result.output
        scan = next(f for f in data["findings"] if f["key"] == "fullaccess_scan")
        assert scan["data"]["scan_rows"] >= 1 and scan["data"]["sample"]
        # read-only: the tenant is unchanged (no write call reached it)
        assert not any(e["kind"] == "change" for e in sb.state.timeline.to_dict()["events"])
    finally:
        sb.stop()


def test_doctor_without_a_plan_writes_to_out_and_cannot_tell_plan_questions(tmp_path):
    sb, _ = _world(tmp_path)
    try:
        out = tmp_path / "elsewhere" / "doctor.json"
        result = cli("doctor", "--profile", sb.profile_path, "--out", out, "--json")
        assert result.exit_code == 0, result.output
        data = json.loads(out.read_text())
        assert data["plan"] is None and json.loads(result.output)["verdicts"] == data["verdicts"]
        assert data["verdicts"]["rbac_assignments"] == "cannot tell"
        assert data["verdicts"]["trustee_names"] == "verified"  # found from a scan, without a plan
    finally:
        sb.stop()


def test_doctor_reports_each_difference_and_execute_adapts(tmp_path):
    sb, plan = _world(tmp_path, differ=True)
    try:
        result = cli("doctor", plan, "--profile", sb.profile_path)
        assert result.exit_code == 0, result.output  # differences the tool adapts to: nothing blocking
        verdicts = json.loads((plan / "doctor.json").read_text())["verdicts"]
        assert {k for k, v in verdicts.items() if v == "differs"} == {"cmdlets", "trustee_names",
                                                                    "token_lifetimes"}, result.output
        assert "refused: Get-EXOMailbox, Get-EXOMailboxPermission" in result.output
        assert "Get-EXO* names stay off" in result.output
        assert "(trustee matching 'object_id')" in result.output
        assert "wait 14400 s plus the margin" in result.output

        (plan / "doctor.json").unlink()
        args = ["execute", plan, "--profile", sb.profile_path, "--batch", 1, "--yes", "--propagation-wait", 0.5,
                "--token-margin", 60, "--readback-spacing", 0.3]
        first = cli(*args)
        assert first.exit_code == 10, first.output  # waiting (propagation)
        assert "trustees are matched by ObjectId" in first.output  # the preflight's adaptation
        assert not (plan / "doctor.json").exists()  # the preflight writes nothing into the plan folder
        time.sleep(0.6)  # past the propagation wait
        second = cli(*args)
        assert second.exit_code == 10 and "token wait" in second.output, second.output
        with Journal(plan, readonly=True) as journal:
            wait = journal.step(1, 1, "execute", "cutover").detail["token_wait"]
        assert wait["lifetime"] == 4 * 3600 and wait["seconds"] == 4 * 3600 + 60  # the policy's 4 h + margin
    finally:
        sb.stop()


def _no_policy_read(fixture):
    fixture["admin"]["app_roles"] = [r for r in fixture["admin"]["app_roles"] if r["permission"] != "Policy.Read.All"]


def test_execute_refuses_on_a_blocking_finding_before_any_write(tmp_path):
    sb, plan = _world(tmp_path, edit=_no_policy_read)
    try:
        doctor = cli("doctor", plan, "--profile", sb.profile_path)
        assert doctor.exit_code == 7 and "Policy.Read.All" in doctor.output
        verdicts = json.loads((plan / "doctor.json").read_text())["verdicts"]
        assert verdicts["token_lifetimes"] == "cannot tell" and verdicts["admin_roles"] == "differs"
        result = cli("execute", plan, "--profile", sb.profile_path, "--batch", 1, "--yes", "--propagation-wait", 0.5)
        assert result.exit_code == 7 and "nothing was written" in result.output, result.output
        assert not any(e["kind"] == "change" for e in sb.state.timeline.to_dict()["events"])
        # the user states the longest token lifetime: no longer blocking, the run starts
        stated = cli("execute", plan, "--profile", sb.profile_path, "--batch", 1, "--yes", "--propagation-wait",
                     0.5, "--token-lifetime", 3600)
        assert stated.exit_code == 10, stated.output  # it ran, up to the propagation wait
        assert any(e["kind"] == "change" for e in sb.state.timeline.to_dict()["events"])
    finally:
        sb.stop()


def test_access_policies_check_compares_exchanges_answer_with_the_plans_flattened_reach(tmp_path):
    """A plan moving a Graph app fenced by a policy on a nested group: Test-ApplicationAccessPolicy agrees with the
    plan's reach; after a mailbox joins the nested group the tenant grants more than the plan would scope: the
    check differs, blocks, and execute refuses before any write."""
    from aap_tenant import ARCHIVER, aap_fixture
    from migrator.exchange.profile import load_profile
    from migrator.inventory.tenant import Clients, live_inventory
    from migrator.planner.build import PlanOptions, build_plan
    from migrator.planner.plan import write_plan
    from migrator.planner.source import Source
    from migrator.sandbox.server import start_sandbox

    with start_sandbox(aap_fixture(), run_dir=tmp_path / "sb", smtp=False) as sb:
        inv = live_inventory(sb.profile_path, tmp_path / "inv", progress=False)
        plan = write_plan(build_plan(Source.from_inventory(inv, "inventory", "inv", "0" * 64),
                                     PlanOptions(time_limit=10)), tmp_path / "plan")
        result = cli("doctor", plan, "--profile", sb.profile_path, "--sample", 10)
        data = json.loads((plan / "doctor.json").read_text())
        finding = next(f for f in data["findings"] if f["key"] == "access_policies")
        assert finding["verdict"] == "verified", result.output
        assert finding["data"]["tested"] == 5 and finding["data"]["differs"] == []  # 3 granted, 2 denied

        clients = Clients(load_profile(sb.profile_path))
        try:
            clients.exo.add_group_member("sales-senders@contoso.com", "dan.wu@contoso.com")
        finally:
            clients.close()
        result = cli("doctor", plan, "--profile", sb.profile_path, "--sample", 10)
        assert result.exit_code == 7, result.output
        finding = next(f for f in json.loads((plan / "doctor.json").read_text())["findings"]
                       if f["key"] == "access_policies")
        assert finding["verdict"] == "differs" and finding["blocking"]
        assert f"{ARCHIVER} on dan.wu@contoso.com: Granted, the plan expects Denied" in finding["detail"]
        def changes() -> list:  # everything the timeline records but the tokens the runs take
            return [e for e in sb.state.timeline.to_dict()["events"] if e["kind"] != "token"]

        before = changes()
        refused = cli("execute", plan, "--profile", sb.profile_path, "--batch", 1, "--yes")
        assert refused.exit_code == 7 and "nothing was written" in refused.output, refused.output
        assert changes() == before
