"""The margins of a run (issue 10, item 4), through the real clients against the sandbox on a fast-forwarded clock,
with Entra-like delays: Graph replicates app-role assignment writes late, restored legacy grants apply late, a token
lifetime policy makes tokens live 4 hours. Each wait is shown to matter: without it, the sandbox's own timeline
shows a gap."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from migrator.cli import main
from migrator.executor import Connection
from migrator.executor.context import ExecSettings, Output
from migrator.executor.journal import Journal
from migrator.planner.plan import load_plan
from migrator.rehearse import rollback_batch, run_batches
from sandbox_world import make_fixture, make_plan

pytestmark = pytest.mark.integration

DELAYS = dict(propagation_delay=1800.0, token_lifetime=3600.0, admin_token_lifetime=3600.0, replication_delay=30.0,
              sendas_delay=600.0, graph_replication_delay=120.0)
WAITS = dict(propagation_wait=2100.0, token_margin=300.0, readbacks=2, readback_spacing=150.0,
             grant_apply_wait=900.0, concurrency=2, verify_retry_delay=5.0, replication_poll=5.0,
             replication_timeout=900.0)


class World:
    def __init__(self, tmp_path, *, fixture_edit=None, **delays):
        from migrator.sandbox.clock import Clock
        from migrator.sandbox.server import start_sandbox
        from migrator.sandbox.settings import SandboxSettings

        fixture, self.grants = make_fixture(seed=5, mailboxes=8, apps=2, per_app=(2, 4))
        if fixture_edit:
            fixture_edit(fixture)
        self.fixture = fixture
        self.plan_path = make_plan(fixture, tmp_path / "plan", pilot=1, batch_size=1)
        self.clock = Clock()  # real time, fast-forwarded through the waits (as a rehearsal does)
        self.sb = start_sandbox(fixture, run_dir=tmp_path / "sb", clock=self.clock,
                                settings=SandboxSettings(**{**DELAYS, **delays}))
        self.conn = Connection(self.sb.profile_path)
        self.plan = load_plan(self.plan_path)
        self.batch = self.plan.batches[0]

    def execute(self, **settings):
        return run_batches(self.plan, self.plan_path, self.conn, [self.batch.number],
                           ExecSettings(**{**WAITS, **settings}), output=Output(quiet=True), now=self.clock.now,
                           sleep=self.clock.advance, max_resumes=2)

    def rollback(self, **settings):
        return rollback_batch(self.plan, self.plan_path, self.conn, self.batch.number,
                              ExecSettings(**{**WAITS, **settings}), output=Output(quiet=True), now=self.clock.now,
                              sleep=self.clock.advance, max_resumes=2)

    def step(self, phase: str, name: str):
        with Journal(self.plan_path, readonly=True) as journal:
            return journal.step(self.batch.number, 1, phase, name)

    def report(self):
        return self.sb.state.check(self.grants)

    def close(self):
        self.sb.stop()


@pytest.fixture
def world(tmp_path):
    w = World(tmp_path)
    yield w
    w.close()


def test_execute_and_rollback_with_the_margins_have_no_gap(world):
    run = world.execute(token_lifetime=3600.0)
    assert run.ok, run.problems
    cut = world.step("execute", "cutover")
    assert cut.detail["token_wait"]["seconds"] == 3600.0 + 300.0  # the stated lifetime plus the margin
    assert world.report().ok, world.report().to_dict()
    back = world.rollback(token_lifetime=3600.0)
    assert back.ok, back.problems
    assert world.step("rollback", "grants_wait").status == "done"
    assert world.report().ok, world.report().to_dict()


def test_rollback_without_the_restored_grant_wait_shows_a_gap(world):
    """The check can fail: re-granting the claim before the restored SendAs grants apply (sendas_delay) opens a gap
    for every restored pair under the documented claim rule."""
    assert world.execute(token_lifetime=3600.0).ok
    assert world.report().ok
    assert world.rollback(token_lifetime=3600.0, grant_apply_wait=0.0).ok
    gaps = world.report().gaps
    assert gaps and all("SendAs or FullAccess grant" in g.reason for g in gaps), world.report().to_dict()
    migrated = {(g.app_id, g.mailbox) for g in world.plan.grants if g.batch == world.batch.number}
    assert {(g.app_id, g.mailbox) for g in gaps} == migrated


@pytest.fixture
def quick_sendas(tmp_path):
    """SendAs removals reach the data plane at once, so only the claim's replication lag is left to cover."""
    w = World(tmp_path, sendas_delay=0.0)
    yield w
    w.close()


def test_cutover_read_once_without_a_margin_shows_a_gap(quick_sendas):
    """The check can fail: one read of the assignment's absence, right after the delete, starts the token wait
    while Graph has not replicated the removal; claim tokens issued meanwhile outlive the wait."""
    w = quick_sendas
    assert w.execute(token_lifetime=3600.0, readbacks=1, token_margin=0.0, readback_spacing=0.0).ok
    gaps = w.report().gaps
    assert gaps and all("SMTP.SendAsApp needs a SendAs or FullAccess grant" in g.reason for g in gaps), \
        w.report().to_dict()


def test_cutover_read_twice_spaced_is_enough_without_a_margin(quick_sendas):
    """The read-back alone covers Graph's replication (spacing 150 s > 120 s delay)."""
    w = quick_sendas
    assert w.execute(token_lifetime=3600.0, token_margin=0.0).ok
    assert w.report().ok, w.report().to_dict()
    with Journal(w.plan_path, readonly=True) as journal:
        cut = journal.actions(kind="entra_assignment", op="delete")
    assert cut and all(a.status == "verified" and a.verification["reads"] == 2 for a in cut)


def _four_hour_policy(fixture):
    fixture["token_lifetime_policies"] = [
        {"display_name": "Long-lived mailer tokens", "access_token_lifetime": "4:00:00",
         "applies_to": [a["app_id"] for a in fixture["apps"]]},
        {"display_name": "Somebody else's app", "access_token_lifetime": "8:00:00", "applies_to": []},
    ]


def test_a_four_hour_token_lifetime_policy_sets_the_token_wait(tmp_path):
    w = World(tmp_path, fixture_edit=_four_hour_policy)
    try:
        app = w.batch.apps[0]
        claims = w.sb.state.issue_token(app, "https://outlook.office365.com")
        assert claims["exp"] - claims["iat"] == 4 * 3600  # the sandbox honours the policy
        assert w.execute().ok  # no --token-lifetime: read from the policies
        wait = w.step("execute", "cutover").detail["token_wait"]
        assert wait["lifetime"] == 4 * 3600 and wait["seconds"] == 4 * 3600 + 300
        assert "Long-lived mailer tokens" in wait["why"] and "Somebody else" not in wait["why"]
        assert w.report().ok, w.report().to_dict()
    finally:
        w.close()


def test_ignoring_the_token_lifetime_policy_shows_a_gap(tmp_path, monkeypatch):
    """The check can fail: a run that waits Entra's default 90 minutes while the policy makes tokens live 4 hours
    removes the SendAs grants under live claim tokens."""
    from migrator.executor import lifetimes

    monkeypatch.setattr(lifetimes, "read_token_lifetimes", lambda *a, **k: lifetimes.TokenLifetimes())
    w = World(tmp_path, fixture_edit=_four_hour_policy)
    try:
        assert w.execute().ok
        assert w.step("execute", "cutover").detail["token_wait"]["lifetime"] == 5400.0
        gaps = w.report().gaps
        assert gaps and {g.app_id for g in gaps} == set(w.batch.apps), w.report().to_dict()
    finally:
        w.close()


def _no_policy_read(fixture):
    fixture["admin"]["app_roles"] = [r for r in fixture["admin"]["app_roles"] if r["permission"] != "Policy.Read.All"]


def test_an_unreadable_token_lifetime_policy_stops_the_cutover_unless_a_lifetime_is_stated(tmp_path):
    w = World(tmp_path, fixture_edit=_no_policy_read)
    try:
        run = w.execute()
        assert not run.ok
        cut = w.step("execute", "cutover")
        assert cut.status == "failed" and "Policy.Read.All" in " ".join(cut.detail["failures"])
        assert "--token-lifetime" in " ".join(cut.detail["failures"])
        app = w.batch.apps[0]
        assert w.sb.state.claim_now(app)  # nothing was cut
        assert w.execute(token_lifetime=3600.0).ok  # the user states the lifetime: it goes on, and says what it did
        wait = w.step("execute", "cutover").detail["token_wait"]
        assert wait["lifetime"] == 3600.0 and "Policy.Read.All" in wait["why"]
        assert w.report().ok
    finally:
        w.close()


def cli(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def test_status_warns_about_the_registration_and_notices_a_claim_that_came_back(world):
    assert world.execute(token_lifetime=3600.0).ok
    status = cli("status", world.plan_path, "--json")
    data = json.loads(status.output)
    warnings = data["batches"][0]["warnings"]
    app = world.batch.apps[0]
    assert warnings and any(app in w and "requiredResourceAccess" in w and "Update-MgApplication" in w
                            for w in warnings)
    assert status.exit_code == 12  # batch 2 not started; nothing came back
    assert cli("status", world.plan_path, "--profile", world.sb.profile_path).exit_code == 12

    # someone clicks "Grant admin consent": the assignment (and the claim) is back
    state = world.sb.state
    resource = state.resources["Office 365 Exchange Online"]
    role = next(r["id"] for r in resource["appRoles"] if r["value"] == "SMTP.SendAsApp")
    sp = state.apps[app].object_id
    state.graph("grant_app_role", sp, {"principalId": sp, "resourceId": resource["id"], "appRoleId": role},
                caller=state.admin_caller("https://graph.microsoft.com"))
    back = cli("status", world.plan_path, "--profile", world.sb.profile_path)
    assert back.exit_code == 11 and "is back" in back.output and app in back.output
    again = world.execute(token_lifetime=3600.0)
    assert again.ok  # the batch is done; the later run says so, with the warning
    with Journal(world.plan_path) as journal:
        from migrator.executor.runner import Runner

        outcome = Runner(world.plan, journal, world.conn.exo, world.conn.graph, settings=ExecSettings(**WAITS),
                         output=Output(quiet=True), now=world.clock.now, sleep=world.clock.advance).run(
            [world.batch.number]).outcomes[0]
    assert outcome.status == "skipped" and "is back" in outcome.message


def test_the_report_carries_the_registration_warning(world):
    from migrator.report.markdown import render_markdown
    from migrator.report.model import build_report

    assert world.execute(token_lifetime=3600.0).ok
    text = render_markdown(build_report(load_plan(world.plan_path)))
    assert "still requests SMTP.SendAsApp" in text and "Update-MgApplication" in text
