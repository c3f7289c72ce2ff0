"""The order is what keeps a Graph/EWS app from going tenant-wide (issue 16): injected wrong, the sandbox's timeline
catches it. The executor is run with its cut-over step replaced by one that removes the app's access policies first
and the consent after (the documented mistake); the per-permission checker must then report over-grants on the
mailboxes outside the policy's set, and only those. The same run in the tool's order is clean
(test_executor_aap.py)."""

from __future__ import annotations

import pytest

from aap_tenant import ARCHIVE_SET, ARCHIVER, MAILBOXES
from migrator.errors import DriftError
from migrator.executor import steps
from migrator.executor.context import ExecSettings, Output
from migrator.executor.journal import Journal
from migrator.executor.runner import Runner
from migrator.planner.plan import load_plan
from test_executor_aap import EXEC, template, world  # noqa: F401 (the fixtures)

pytestmark = pytest.mark.integration


def _policy_first_cutover(ctx):
    """The wrong order: the batch's policies removed, then the tool's cut-over (which removes the consents)."""
    for policy in ctx.plan.policies:
        if policy.batch == ctx.batch:
            ctx.exo.remove_application_access_policy(policy.identity)
    return steps.step_cutover(ctx)


class PolicyFirstRunner(Runner):
    steps = tuple((name, _policy_first_cutover if name == "cutover" else fn) for name, fn in steps.EXECUTE_STEPS)


def test_removing_the_policy_before_the_consent_is_caught_as_an_over_grant(world):  # noqa: F811
    sb, conn, plan_path, clock = world
    plan = load_plan(plan_path)
    with Journal(plan_path, clock=clock.now) as journal:
        runner = PolicyFirstRunner(plan, journal, conn.exo, conn.graph, settings=ExecSettings(**EXEC), wait=True,
                                   output=Output(quiet=True), now=clock.now, sleep=clock.sleep)
        # the next step's drift check sees policies gone that the journal never removed, and stops: too late, the
        # consent's live tokens had no fence for the whole token wait
        with pytest.raises(DriftError, match=r"access policy .* not found"):
            runner.run([1])
    with Journal(plan_path, readonly=True) as journal:
        done = [name for name, _ in steps.EXECUTE_STEPS if (row := journal.step(1, 1, "execute", name)) is not None
                and row.status == "done"]
    assert "cutover" in done and "remove_legacy" not in done
    report = sb.check()
    over = {(o.app_id, o.permission, o.mailbox) for o in report.mail_overgrants}
    assert over, report.to_dict()
    # exactly the fenced permissions on the mailboxes the policy kept the consent away from: tenant-wide for a while
    outside = set(MAILBOXES) - set(ARCHIVE_SET)
    assert {(app, perm) for app, perm, _m in over} >= {(ARCHIVER, "Mail.Read"), (ARCHIVER, "Mail.Send")}
    assert {m for app, _p, m in over if app == ARCHIVER} == outside
    assert report.mail_gaps == []  # RBAC served the set throughout: the mistake widens, it does not cut
