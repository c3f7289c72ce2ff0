"""The executor through the real clients (msal, requests, InvokeCommand, Graph) against the in-process sandbox:
a full run and its rollback checked by the sandbox's own timeline; the CLI's stops before any write (tampered
plan, drift, second executor, missing permission); status exit codes."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from migrator.cli import main
from migrator.executor import Connection
from migrator.executor.context import ExecSettings, Output
from migrator.executor.journal import Journal
from migrator.executor.rollback import RollbackRunner
from migrator.executor.runner import Runner
from migrator.planner.plan import load_plan
from sandbox_world import make_fixture, make_plan, tenant_shape

pytestmark = pytest.mark.integration


@pytest.fixture
def world(tmp_path):
    from migrator.sandbox.server import start_sandbox
    from migrator.sandbox.settings import SandboxSettings

    fixture, grants = make_fixture(seed=3, mailboxes=10, apps=3, clusters=2)
    plan = make_plan(fixture, tmp_path / "plan", pilot=1, batch_size=2)
    settings = SandboxSettings(propagation_delay=0.5, token_lifetime=1.0, replication_delay=0.3, sendas_delay=0.3,
                               graph_replication_delay=0.3)
    with start_sandbox(fixture, run_dir=tmp_path / "sb", settings=settings) as sb:
        yield sb, plan, grants


def cli(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def test_execute_all_then_rollback_all_through_the_real_clients(world):
    sb, plan_path, grants = world
    before = tenant_shape(sb.state)
    conn = Connection(sb.profile_path)
    plan = load_plan(plan_path)
    numbers = [b.number for b in plan.batches]
    fast = dict(propagation_wait=0.8, token_lifetime=1.0, token_margin=0.2, readback_spacing=0.4, grant_apply_wait=0.5,
                replication_poll=0.2, verify_retry_delay=0.2)
    with Journal(plan_path) as journal:
        result = Runner(plan, journal, conn.exo, conn.graph, settings=ExecSettings(**fast), wait=True,
                        output=Output(quiet=True)).run(numbers)
        assert [o.status for o in result.outcomes] == ["done"] * len(numbers)
        shape = tenant_shape(sb.state)
        assert not [p for p in shape["recipient_permissions"] if "'app'" in p]  # every app SendAs grant removed
        assert len(shape["groups"]) == len(plan.groups) and len(shape["role_assignments"]) == len(plan.assignments)
        report = sb.state.check(grants)
        assert report.gaps == [] and report.overgrants == [], report.to_dict()
        for number in reversed(numbers):
            out = RollbackRunner(plan, journal, conn.exo, conn.graph, settings=ExecSettings(**fast), wait=True,
                                 output=Output(quiet=True)).run([number])
            assert out.outcomes[0].status == "done", out.outcomes[0].message
    assert tenant_shape(sb.state) == before
    report = sb.state.check(grants)
    assert report.gaps == [] and report.overgrants == [], report.to_dict()


def test_cli_execute_waits_then_status_then_resume(world):
    sb, plan, grants = world
    args = ["execute", plan, "--profile", sb.profile_path, "--batch", 1, "--yes", "--propagation-wait", 30,
            "--token-lifetime", 1.0, "--token-margin", 0.2, "--readback-spacing", 0.4]
    first = cli(*args)
    assert first.exit_code == 10, first.output  # waiting: come back at the time shown
    assert "run the same command again after" in first.output
    status = cli("status", plan, "--json")
    assert status.exit_code == 10
    data = json.loads(status.output)
    assert data["batches"][0]["condition"] == "waiting" and data["batches"][0]["waiting_until"]
    again = cli(*args)  # still waiting: nothing new is written
    assert again.exit_code == 10 and "0 write(s)" in again.output
    rb = cli("rollback", plan, "--profile", sb.profile_path, "--batch", 1, "--yes", "--token-lifetime", 1.0,
             "--token-margin", 0.2, "--readback-spacing", 0.4)
    assert rb.exit_code == 0, rb.output
    assert cli("status", plan).exit_code == 12  # batch 1 rolled back, the others not started
    assert sb.state.check(grants).ok


def test_tampered_plan_stops_before_any_write(world):
    sb, plan, _ = world
    before = tenant_shape(sb.state)
    path = plan / "memberships.csv"
    path.write_text(path.read_text() + "G0001,user00009@contoso.com\r\n")
    result = cli("execute", plan, "--profile", sb.profile_path, "--batch", 1, "--yes")
    assert result.exit_code == 2 and "memberships.csv" in result.output
    assert tenant_shape(sb.state) == before


def test_drift_stops_before_any_write(world):
    sb, plan, grants = world
    state = sb.state
    app = next(a for a in state.to_fixture()["apps"])
    target = next(f"user{i:05d}@contoso.com" for i in range(10) if (app["app_id"], f"user{i:05d}@contoso.com")
                  not in grants)
    state.invoke("Add-RecipientPermission", {"Identity": target, "Trustee": app["app_id"],
                                             "AccessRights": "SendAs", "Confirm": False},
                 caller=state.admin_caller())
    result = cli("execute", plan, "--profile", sb.profile_path, "--all", "--yes", "--propagation-wait", 0.5,
                 "--token-lifetime", 1.0, "--token-margin", 0.2, "--readback-spacing", 0.4)
    assert result.exit_code == 3 and target in result.output
    assert "nothing was written" in result.output
    # batches before the drifted one may have run; the drifted batch wrote nothing
    drifted = next(b for b in load_plan(plan).batches if app["app_id"] in b.apps)
    with Journal(plan, readonly=True) as j:
        assert j.actions(batch=drifted.number) == []
    assert any(target in p for p in tenant_shape(state)["recipient_permissions"])


def test_second_executor_is_refused(world):
    sb, plan, _ = world
    with Journal(plan):
        result = cli("execute", plan, "--profile", sb.profile_path, "--batch", 1, "--yes")
    assert result.exit_code == 5 and "another executor is running this plan" in result.output


def test_missing_permission_stops_before_any_write(tmp_path):
    from migrator.sandbox.server import start_sandbox

    fixture, _ = make_fixture(seed=4, mailboxes=6, apps=2)
    fixture["admin"]["directory_roles"] = []
    plan = make_plan(fixture, tmp_path / "plan")
    with start_sandbox(fixture, run_dir=tmp_path / "sb") as sb:
        before = tenant_shape(sb.state)
        result = cli("execute", plan, "--profile", sb.profile_path, "--batch", 1, "--yes")
        assert result.exit_code == 4, result.output
        assert "missing permission" in result.output and "Exchange Administrator" in result.output
        assert tenant_shape(sb.state) == before


def test_dry_run_through_the_cli_prints_changes_and_writes_nothing(world):
    sb, plan, _ = world
    before = tenant_shape(sb.state)
    result = cli("execute", plan, "--profile", sb.profile_path, "--batch", 1, "--dry-run")
    assert result.exit_code == 0, result.output
    assert "\nNew-DistributionGroup -Name '" in result.stdout and "\nRemove-RecipientPermission -Identity '" in result.stdout
    assert "0 write(s)" in result.output
    assert tenant_shape(sb.state) == before and not (plan / "journal.db").exists()


def test_sample_plan_runs_up_to_the_propagation_wait_on_the_sample_tenant(sandbox, tmp_path, root):
    """The committed sample plan against the bundled sample tenant (every noise class of the inventory: SELF,
    inherited and Deny rows, orphaned SIDs, human delegates): no drift is seen, every batch is set up and verified
    and then waits; the legacy grants are all still there."""
    import shutil

    plan_path = tmp_path / "contoso"
    shutil.copytree(root / "plans" / "contoso", plan_path)
    plan = load_plan(plan_path)
    conn = Connection(sandbox.profile_path)
    with Journal(plan_path) as journal:
        result = Runner(plan, journal, conn.exo, conn.graph, settings=ExecSettings(concurrency=4), wait=False,
                        output=Output(quiet=True)).run([b.number for b in plan.batches])
    assert [o.status for o in result.outcomes] == ["waiting"] * len(plan.batches), [o.message for o in result.outcomes]
    assert len(tenant_shape(sandbox.state)["role_assignments"]) >= len(plan.assignments)
    grants = {(g.app_id, g.mailbox) for g in plan.grants if g.right == "SendAs"}
    assert sandbox.state.check(grants).ok


def test_cutover_of_an_app_whose_fullaccess_carries_smtp_outside_its_plan_is_refused(tmp_path):
    """An app holding SMTP.SendAsApp sends as every mailbox it holds FullAccess on. A plan made without that
    knowledge (--fullaccess-smtp no) leaves such a mailbox out of the app's RBAC set: its cut-over would cut the app
    off it, so the executor refuses before any write, reading the claim from Entra."""
    from migrator import csvio
    from migrator.planner.build import PlanOptions, build_plan
    from migrator.planner.plan import write_plan
    from migrator.planner.source import load_source
    from migrator.sandbox.server import start_sandbox

    fixture, _ = make_fixture(seed=5, mailboxes=8, apps=3, shapes=True)  # app 2: SendAs + FullAccess, SMTP + IMAP
    both = fixture["apps"][2]["app_id"]
    rows = [(p["trustee"]["app"], p["mailbox"], "SendAs") for p in fixture["recipient_permissions"]
            if p["trustee"]["app"] == both]
    sendas = {m for _a, m, _r in rows}
    rows += [(p["user"]["app"], p["mailbox"], "FullAccess") for p in fixture["mailbox_permissions"]
             if p["user"]["app"] == both]
    assert {m for _a, m, r in rows if r == "FullAccess"} - sendas  # a FullAccess-only mailbox
    csvio.write_csv(tmp_path / "grants.csv", ("app_id", "mailbox", "right"), rows)
    plan = write_plan(build_plan(load_source(tmp_path / "grants.csv"),
                                 PlanOptions(pilot=0, time_limit=5, fullaccess_smtp="no")), tmp_path / "plan")
    with start_sandbox(fixture, run_dir=tmp_path / "sb") as sb:
        before = tenant_shape(sb.state)
        result = cli("execute", plan, "--profile", sb.profile_path, "--batch", 1, "--yes")
        # the preflight's doctor finds it first (exit 7); the executor's own check would stop it too (exit 2)
        assert result.exit_code == 7, result.output
        assert "fullaccess_smtp" in result.output and "reach mailboxes through FullAccess only" in result.output
        assert tenant_shape(sb.state) == before
        # --no-cutover is the way through: the claim stays, so nothing is cut off
        result = cli("execute", plan, "--profile", sb.profile_path, "--batch", 1, "--yes", "--dry-run",
                     "--no-cutover")
        assert result.exit_code == 0, result.output


def test_a_fullaccess_grant_carrying_smtp_gone_since_the_plan_is_drift(tmp_path):
    """An SMTP relay's FullAccess (its whole SMTP reach) removed after the plan: the new scope would over-grant that
    mailbox, so the batch stops before any write, naming it. The relay's pointer shows by its own DisplayName."""
    from migrator.sandbox.server import start_sandbox

    fixture, _ = make_fixture(seed=6, mailboxes=8, apps=2, shapes=True)  # app 1: FullAccess only, SMTP.SendAsApp
    relay = fixture["apps"][1]["app_id"]
    plan = make_plan(fixture, tmp_path / "plan", pilot=0, batch_size=2)
    target = next(p["mailbox"] for p in fixture["mailbox_permissions"] if p["user"]["app"] == relay)
    with start_sandbox(fixture, run_dir=tmp_path / "sb") as sb:
        state = sb.state
        pointer = state.invoke("Get-ServicePrincipal", {"Identity": relay}, caller=state.admin_caller())[0]
        assert pointer["DisplayName"] == "EXO SP for Mailer 0001"
        state.invoke("Remove-MailboxPermission", {"Identity": target, "User": pointer["DisplayName"],
                                                  "AccessRights": "FullAccess", "Confirm": False},
                     caller=state.admin_caller())
        before = tenant_shape(state)
        result = cli("execute", plan, "--profile", sb.profile_path, "--batch", 1, "--yes")
        assert result.exit_code == 3, result.output
        assert f"FullAccess grant missing: app {relay}" in result.output and target in result.output
        assert tenant_shape(state) == before


def test_fullaccess_removal_and_its_rollback_through_the_real_clients(tmp_path):
    """--remove-fullaccess: the SMTP relay's FullAccess goes after the cut-over (its prior rows recorded), the
    IMAP app's and the both-rights app's stay; rollback restores exactly what was removed. Zero SMTP and IMAP/POP
    gaps and over-grants on the timeline all along."""
    from migrator.sandbox.server import start_sandbox
    from migrator.sandbox.settings import SandboxSettings

    fixture, grants = make_fixture(seed=7, mailboxes=10, apps=4, shapes=True)
    relay = fixture["apps"][1]["app_id"]
    plan_path = make_plan(fixture, tmp_path / "plan", pilot=0, batch_size=4, remove_fullaccess=True)
    plan = load_plan(plan_path)
    removed = {(g.app_id, g.mailbox) for g in plan.grants if g.right == "FullAccess" and g.action == "migrate"}
    assert removed and {a for a, _ in removed} == {relay}
    settings = SandboxSettings(propagation_delay=0.5, token_lifetime=1.0, replication_delay=0.3, sendas_delay=0.3,
                               graph_replication_delay=0.2)
    fast = dict(propagation_wait=0.8, token_lifetime=1.0, token_margin=0.2, readback_spacing=0.3, grant_apply_wait=0.4,
                replication_poll=0.2, verify_retry_delay=0.2)
    with start_sandbox(fixture, run_dir=tmp_path / "sb", settings=settings) as sb:
        before = tenant_shape(sb.state)
        conn = Connection(sb.profile_path)
        with Journal(plan_path) as journal:
            result = Runner(plan, journal, conn.exo, conn.graph, settings=ExecSettings(**fast), wait=True,
                            output=Output(quiet=True)).run([1])
            assert [o.status for o in result.outcomes] == ["done"], result.outcomes[0].message
            left = {(p["user"]["app"], p["mailbox"]) for p in sb.state.to_fixture()["mailbox_permissions"]
                    if "app" in p["user"]}
            assert not left & removed and left == {(p["user"]["app"], p["mailbox"])
                                                   for p in fixture["mailbox_permissions"]} - removed
            assert sb.state.check(grants).ok, sb.state.check(grants).to_dict()
            out = RollbackRunner(plan, journal, conn.exo, conn.graph, settings=ExecSettings(**fast), wait=True,
                                 output=Output(quiet=True)).run([1])
            assert out.outcomes[0].status == "done", out.outcomes[0].message
        assert tenant_shape(sb.state) == before
        report = sb.state.check(grants)
        assert report.ok and report.imap_unserved_at_start == [], report.to_dict()
