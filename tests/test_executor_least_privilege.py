"""Least privilege through the real clients against the sandbox: the run's profile holds no Graph write permission.
With a second profile (`--cutover-profile`) the cut-over and the rollback's re-grant go through it, connected only
at that step; without one the cut-over is handed over as Microsoft.Graph PowerShell, a privileged admin does it
(here: through the sandbox's Graph API with the second admin app's token), and the next run verifies and finishes.
The sandbox's timeline shows zero gaps and zero over-grants throughout."""

from __future__ import annotations

import json
import re

import pytest
from click.testing import CliRunner

from migrator.cli import main
from migrator.executor import Connection
from sandbox_world import CUTOVER_ADMIN, make_fixture, make_plan, tenant_shape

pytestmark = pytest.mark.integration

FAST = ["--propagation-wait", 0.5, "--token-lifetime", 1.2, "--token-margin", 0.2, "--readback-spacing", 0.2]


def cli(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


@pytest.fixture
def world(tmp_path):
    from migrator.sandbox.server import start_sandbox
    from migrator.sandbox.settings import SandboxSettings

    fixture, grants = make_fixture(seed=7, mailboxes=10, apps=3, clusters=2, least_privilege=True)
    plan = make_plan(fixture, tmp_path / "plan", pilot=1, batch_size=2)
    # legacy grants and Graph assignment writes take effect at once (the handover, not replication, is tested here)
    settings = SandboxSettings(propagation_delay=0.0, token_lifetime=1.0, replication_delay=0.0, sendas_delay=0.0,
                               graph_replication_delay=0.0)
    with start_sandbox(fixture, run_dir=tmp_path / "sb", settings=settings) as sb:
        yield sb, plan, grants


def tokens_of(sb, app_id):
    return [e for e in sb.state.timeline.log if e.kind == "token" and e.data.get("app_id") == app_id]


def test_the_sandbox_serves_a_second_admin_profile_with_the_graph_write_role(world):
    sb, _, _ = world
    assert sb.cutover_profile_path is not None and sb.ready_line()["cutover_profile"] == str(sb.cutover_profile_path)
    from migrator.executor import can_write_entra

    assert can_write_entra(Connection(sb.profile_path)) is False
    assert can_write_entra(Connection(sb.cutover_profile_path)) is True


def test_without_the_write_permission_the_cutover_is_handed_over_then_verified_and_finished(world):
    sb, plan, grants = world
    args = ["execute", plan, "--profile", sb.profile_path, "--batch", 1, "--yes", *FAST, "--wait"]
    first = cli(*args)  # the preflight no longer asks for the Graph write permission
    assert first.exit_code == 13, first.output
    assert "handed over" in first.output and "handover-batch-1-cutover.ps1" in first.output
    script = (plan / "handover-batch-1-cutover.ps1").read_text(encoding="utf-8-sig")
    removes = re.findall(r"Remove-MgServicePrincipalAppRoleAssignment -ServicePrincipalId '([^']+)' "
                         r"-AppRoleAssignmentId '([^']+)'", script)
    assert removes and "Get-MgServicePrincipalAppRoleAssignment" in script and "Connect-MgGraph" in script
    assert sb.client_secret not in script
    shape = tenant_shape(sb.state)
    assert all("SMTP.SendAsApp" in a[2] for a in shape["apps"])  # nothing removed by the run itself
    status = cli("status", plan)
    assert status.exit_code == 13 and "handed over" in status.output
    again = cli(*args)  # not done yet: handed over again, nothing written
    assert again.exit_code == 13 and "0 write(s)" in again.output
    # The privileged admin runs the script: here through the sandbox's Graph API with an admin token.
    admin = Connection(sb.cutover_profile_path)
    for sp_id, assignment_id in removes:
        admin.graph.delete_app_role_assignment(sp_id, assignment_id)
    done = cli(*args)
    assert done.exit_code == 0, done.output
    rest = cli("execute", plan, "--profile", sb.profile_path, "--all", "--yes", *FAST, "--wait")
    assert rest.exit_code == 13, rest.output  # the next batch stops at its own cut-over
    script = (plan / "handover-batch-2-cutover.ps1").read_text(encoding="utf-8-sig")
    for sp_id, assignment_id in re.findall(r"-ServicePrincipalId '([^']+)' -AppRoleAssignmentId '([^']+)'", script):
        admin.graph.delete_app_role_assignment(sp_id, assignment_id)
    final = cli("execute", plan, "--profile", sb.profile_path, "--all", "--yes", *FAST, "--wait")
    assert final.exit_code == 0, final.output
    assert json.loads(cli("status", plan, "--json").stdout)["exit_code"] == 0
    report = sb.state.check(grants)
    assert report.gaps == [] and report.overgrants == [], report.to_dict()
    assert not [p for p in tenant_shape(sb.state)["recipient_permissions"] if "'app'" in p]


def test_a_second_profile_does_the_entra_writes_only_at_that_step(world):
    sb, plan, grants = world
    before = tenant_shape(sb.state)
    lp = ["--profile", sb.profile_path, "--cutover-profile", sb.cutover_profile_path]
    first = cli("execute", plan, *lp, "--batch", 1, "--yes", *FAST)
    assert first.exit_code == 10 and "run the same command again after" in first.output
    assert tokens_of(sb, CUTOVER_ADMIN) == []  # not asked for before the cut-over
    done = cli("execute", plan, *lp, "--batch", 1, "--yes", *FAST, "--wait")
    assert done.exit_code == 0, done.output
    assert tokens_of(sb, CUTOVER_ADMIN)  # the cut-over went through the second profile
    back = cli("rollback", plan, *lp, "--batch", 1, "--yes", "--grant-wait", 0.2, "--token-lifetime", 1.2,
               "--token-margin", 0.2, "--readback-spacing", 0.2, "--wait")
    assert back.exit_code == 0, back.output
    assert tenant_shape(sb.state) == before
    report = sb.state.check(grants)
    assert report.gaps == [] and report.overgrants == [], report.to_dict()


def test_a_cutover_profile_without_the_write_role_fails_the_step_with_a_clear_message(world):
    sb, plan, _ = world
    out = cli("execute", plan, "--profile", sb.profile_path, "--cutover-profile", sb.profile_path, "--batch", 1,
              "--yes", *FAST, "--wait")
    assert out.exit_code == 11, out.output
    assert "cannot change app-role assignments" in out.output and "AppRoleAssignment.ReadWrite.All" in out.output


def test_least_privilege_sandbox_splits_the_bundled_tenant_admin(tmp_path):
    from migrator.executor import can_write_entra, check_permissions
    from migrator.sandbox.server import start_sandbox

    with start_sandbox(run_dir=tmp_path / "sb", least_privilege=True, smtp=False) as sb:
        run, cutover = Connection(sb.profile_path), Connection(sb.cutover_profile_path)
        check_permissions(run)  # everything the run needs, the Graph write permission aside
        assert can_write_entra(run) is False and can_write_entra(cutover) is True
        check_permissions(cutover, graph_write=True, exchange=False)
        from migrator.errors import TenantError

        with pytest.raises(TenantError, match=r"Exchange\.ManageAsApp"):
            check_permissions(cutover)  # the second app has no Exchange permission at all
