"""The executor's view of a batch that moves Graph/EWS access (context.batch_view): the SMTP roles apart from the
graph-ews ones (verify must not test an SMTP set against a Mail.Read role), the apps the SMTP track handles, and
each mail app's permissions, reach and policies. Pure: the planner's plan of test_plan_mail_access's inventory."""

from __future__ import annotations

from functools import cache

from migrator.executor.context import batch_view
from migrator.model import RBAC_ROLE_SMTP_SEND_AS
from test_plan_mail_access import ARCHIVER, MIXED, SMTP_APP, TWIN, inventory, mb, plan_of


@cache
def _plan():
    return plan_of(inventory())


def test_the_view_keeps_smtp_and_graph_ews_apart():
    plan = _plan()
    view = batch_view(plan, next(m.batch for m in plan.mail_access if m.app_id == ARCHIVER))
    assert ARCHIVER in view.mail_apps and ARCHIVER in view.apps
    assert ARCHIVER not in view.smtp_apps  # Graph only: no SMTP cut-over, claim read-back or grant removal
    assert view.roles(ARCHIVER) == set()
    assert view.mail_roles(ARCHIVER) == {"Application Mail.Read", "Application Mail.Send"}
    assert [m.permission for m in view.mail_permissions(ARCHIVER)] == ["Mail.Read", "Mail.Send"]
    assert view.mail_reach[ARCHIVER] == {mb(1), mb(2), mb(3), mb(4)}
    assert [p.identity for p in view.app_policies(ARCHIVER)] == ["pol-archiver"]
    if TWIN in view.apps:
        assert view.mail_roles(TWIN) == {"Application Calendars.Read"} and TWIN not in view.smtp_apps


def test_a_mixed_app_is_on_both_tracks_with_its_roles_apart():
    plan = _plan()
    number = next(m.batch for m in plan.mail_access if m.app_id == MIXED)
    view = batch_view(plan, number)
    assert MIXED in view.smtp_apps and MIXED in view.mail_apps
    assert view.roles(MIXED) == {RBAC_ROLE_SMTP_SEND_AS}
    assert view.mail_roles(MIXED) == {"Application EWS.AccessAsApp"}
    assert view.rbac_mailboxes(MIXED) == {mb(5), mb(6)}
    smtp = batch_view(plan, next(int(g.batch) for g in plan.grants if g.app_id == SMTP_APP))
    assert SMTP_APP in smtp.smtp_apps and SMTP_APP not in smtp.mail_apps
