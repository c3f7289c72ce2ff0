"""The report's Graph/EWS section (Application Access Policies): the migrated apps from the plan's mail_access,
mail_reach and access_policies files, the apps plan.json's `mail_access` block reports only, both renderers'
exact output, and the helpdesk rows next to Graph/EWS role assignments."""

from __future__ import annotations

import dataclasses

import pytest
from click.testing import CliRunner

from migrator.cli import main
from migrator.planner.plan import load_plan
from migrator.report.html import render_html
from migrator.report.mailaccess import MailAppRow
from migrator.report.markdown import render_markdown
from migrator.report.model import build_report
from report_plans import APP_ARCHIVER, APP_EWS, APP_IDLE, APP_LOST, APP_PLAIN, APP_ROOMS, aap_plan, hostile_plan

SECTION_MD = """\
## Graph/EWS access (Application Access Policies)

1 app(s) move their Graph/EWS access off Application Access Policies: each Entra permission below is served by its \
`Application <permission>` role, scoped to exactly the mailboxes the app's RestrictAccess policies allow today \
(nested groups flattened: RBAC reads a group's direct members only). In the app's batch: role assignments, verify, \
propagation wait, then the Entra consent is removed, and the policy only after the token wait. Removed first, the \
policy would leave the consent reaching every mailbox.

| App | App id | Batch | Permissions (consent removed) | Application roles | Mailboxes | Groups and filters | \
Policies (removed last) | State |
|---|---|---|---|---|---|---|---|---|
| Mail Archiver | 44444444-4444-4444-8444-444444444444 | 2 | Mail.Read (Microsoft Graph), Mail.Send (Microsoft \
Graph) | Application Mail.Read, Application Mail.Send | 3 | migrator-G0002 Archive | RestrictAccess \
archive-scope@contoso.com | planned |

### Reported only: not touched by this plan

These apps hold a permission an access policy fences, or are named by a policy, and are left as they are: RBAC for \
Applications has no deny; an app with no policy already reaches every mailbox, and scoping it is a decision, not a \
migration; nothing is guessed where a part was not read.

| App | App id | Why not migrated | Permissions | Mailboxes reached | Policies | What an admin could do |
|---|---|---|---|---|---|---|
| EWS Sync | 55555555-5555-4555-8555-555555555555 | DenyAccess policy: RBAC has no deny | full\\_access\\_as\\_app \
(Office 365 Exchange Online) | 297 | DenyAccess legal@contoso.com | keep the DenyAccess policy |
| Room Booker | 66666666-6666-4666-8666-666666666666 | no policy: already reaches every mailbox | \
Calendars.ReadWrite (Microsoft Graph) | every mailbox |  | the consent reaches every mailbox today |
| Ops \\$x \\`whoami\\` "quoted" ‘smart’ \\$(Get-Date) &lt;b&gt;&amp;amp;&lt;/b&gt; \\[x\\](y) \\| \\#1 | \
77777777-7777-4777-8777-777777777777 | policy fences no permission the app holds |  | 2 | RestrictAccess \
legal@contoso.com | the policy fences no permission |
| Lost Scope | 88888888-8888-4888-8888-888888888888 | not known: a part was not read | Mail.Read (Microsoft Graph) \
| unknown | RestrictAccess gone-group | not read: the scope of 1 policy |
"""


@pytest.fixture(scope="module")
def plan(tmp_path_factory):
    return load_plan(aap_plan(tmp_path_factory.mktemp("plans") / "aap"))


def section(text: str, start: str, end: str) -> str:
    return text[text.index(start):text.index(end, text.index(start))]


def test_the_migrated_app_comes_from_the_plan_files(plan):
    mail = build_report(plan, with_journal=False).mail
    assert mail is not None and mail.not_read == ()
    assert mail.migrated == (MailAppRow(
        APP_ARCHIVER, "Mail Archiver", 2, ("Mail.Read (Microsoft Graph)", "Mail.Send (Microsoft Graph)"),
        ("Application Mail.Read", "Application Mail.Send"), 3, ("migrator-G0002 Archive",),
        ("RestrictAccess archive-scope@contoso.com",), "planned"),)
    # reported only: every other app of plan.json's block, DenyAccess first, then tenant-wide, no permission, unknown
    assert [(r.app_id, r.status) for r in mail.reported] == [
        (APP_EWS, "deny"), (APP_ROOMS, "tenant_wide"), (APP_IDLE, "no_permission"), (APP_LOST, "unknown")]
    assert [r.mailboxes for r in mail.reported] == ["297", "every mailbox", "2", "unknown"]


def test_markdown_section_exactly(plan):
    text = render_markdown(build_report(plan, with_journal=False))
    assert section(text, "## Graph/EWS access", "## For the helpdesk") == SECTION_MD + "\n"
    assert "| Graph/EWS apps (access policies) | 1 moved to Application roles (2 permission(s), 1 policy removed), " \
           "4 reported only |" in text
    # after the groups, before the helpdesk page
    assert text.index("## Groups") < text.index("## Graph/EWS access") < text.index("## For the helpdesk")


def test_html_section_exactly(plan):
    page = render_html(build_report(plan, with_journal=False))
    html = section(page, '<h2 id="mail-access">', '<h2 id="helpdesk">')
    lines = html.rstrip("\n").split("\n")
    assert lines[0] == '<h2 id="mail-access">Graph/EWS access (Application Access Policies)</h2>'
    assert lines[1].startswith('<p class="note">1 app(s) move their Graph/EWS access off Application Access '
                               "Policies: each Entra permission below is served by its <code>Application "
                               "&lt;permission&gt;</code> role, scoped")
    assert lines[2] == (
        '<table class="mail-migrated"><thead><tr><th>App</th><th>App id</th><th>Batch</th><th>Permissions (consent '
        "removed)</th><th>Application roles</th><th>Mailboxes</th><th>Groups and filters</th><th>Policies (removed "
        "last)</th><th>State</th></tr></thead><tbody><tr><td>Mail Archiver</td><td>44444444-4444-4444-8444-"
        '444444444444</td><td class="num">2</td><td>Mail.Read (Microsoft Graph), Mail.Send (Microsoft Graph)</td>'
        '<td>Application Mail.Read, Application Mail.Send</td><td class="num">3</td><td>migrator-G0002 Archive</td>'
        "<td>RestrictAccess archive-scope@contoso.com</td><td><span class=\"state-planned\">planned</span></td></tr>"
        "</tbody></table>")
    assert lines[3] == '<h3 id="mail-reported">Reported only: not touched by this plan</h3>'
    assert lines[4].startswith('<p class="note">These apps hold a permission an access policy fences')
    assert lines[5].count("<tr>") == 5 and len(lines) == 6
    assert ('<p class="note">Graph/EWS apps (access policies): 1 moved to Application roles (2 permission(s), 1 '
            "policy removed), 4 reported only.</p>") in page
    # the hostile name is text, never markup
    assert ("<td>Ops $x `whoami` &quot;quoted&quot; ‘smart’ $(Get-Date) &lt;b&gt;&amp;amp;&lt;/b&gt; [x](y) | #1"
            "</td>") in lines[5]


def test_a_plan_without_graph_ews_access_has_no_section(tmp_path):
    data = build_report(load_plan(hostile_plan(tmp_path / "hostile")), with_journal=False)
    assert data.mail is None
    assert "Graph/EWS" not in render_markdown(data) and 'id="mail-access"' not in render_html(data)


def test_an_inventory_that_did_not_read_the_policies_says_so(plan):
    meta = dict(plan.meta, mail_access={
        "read": {"policies_read": False, "members_read": False, "permissions_read": False,
                 "why_policies": "no Get-ApplicationAccessPolicy export (older exports): policies unknown",
                 "why_permissions": "no appRoleAssignedTo export: the apps' mailbox permissions are unknown"},
        "apps": []})
    bare = dataclasses.replace(plan, meta=meta, mail_access=(), mail_reach={}, policies=())
    text = render_markdown(build_report(bare, with_journal=False))
    assert "Graph/EWS apps (access policies)" not in text  # nothing moved or reported: no summary line
    assert section(text, "## Graph/EWS access", "## For the helpdesk") == (
        "## Graph/EWS access (Application Access Policies)\n\nThe inventory did not read every part, so some apps "
        "cannot be judged: no Get-ApplicationAccessPolicy export (older exports): policies unknown; no "
        "appRoleAssignedTo export: the apps' mailbox permissions are unknown.\n\n")


def test_helpdesk_rows_are_smtp_apps_and_a_group_serving_a_graph_role_is_not_own(plan):
    data = build_report(plan, with_journal=False)
    assert [(h.app_id, h.own_groups, h.shared_groups) for h in data.helpdesk] == [
        (APP_PLAIN, ("migrator-G0001 Plain",), ())]  # the Graph-only app is not the helpdesk's
    # the archiver's Application roles on the SMTP app's group: a member added for SendAs would widen them
    shared = dataclasses.replace(plan, assignments=tuple(
        dataclasses.replace(a, scope="S0001") if a.app_id == APP_ARCHIVER else a for a in plan.assignments))
    (row,) = build_report(shared, with_journal=False).helpdesk
    assert (row.own_groups, row.shared_groups) == ((), ("migrator-G0001 Plain",))
    assert row.grant.startswith("creates one group")


def test_report_command_writes_the_section(plan, tmp_path):
    out = tmp_path / "out"
    result = CliRunner().invoke(main, ["report", str(plan.path), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert SECTION_MD in (out / "report.md").read_text(encoding="utf-8")
    assert '<h2 id="mail-access">' in (out / "report.html").read_text(encoding="utf-8")


def test_each_migrated_app_s_consent_and_policy_removals_from_the_journal(plan, tmp_path):
    import shutil

    from migrator.executor.journal import Journal

    folder = tmp_path / "plan"
    shutil.copytree(plan.path, folder)
    policy = f"contoso\\{APP_ARCHIVER}:archive-scope".lower()
    with Journal(folder) as journal:
        def act(phase, kind, key, op, status="applied"):
            journal.mark_action(journal.record_intent(batch=2, generation=1, phase=phase, step="s", kind=kind,
                                                      key=key, op=op), status)

        act("execute", "mail_consent", f"{APP_ARCHIVER}|Mail.Read", "delete", "verified")
        act("execute", "mail_consent", f"{APP_ARCHIVER}|Mail.Send", "delete", "intent")  # recorded, not sent
    (row,) = build_report(load_plan(folder)).mail.migrated
    assert row.state == "consent removed: 1 of 2; policy removed: 0 of 1"
    with Journal(folder) as journal:
        act("execute", "mail_consent", f"{APP_ARCHIVER}|Mail.Send", "delete")
        act("execute", "access_policy", policy, "remove")
        act("execute", "access_policy", "another-app's policy", "remove")  # not this app's: not counted
    data = build_report(load_plan(folder))
    assert data.mail.migrated[0].state == "consent removed: 2 of 2; policy removed: 1 of 1"
    assert "| consent removed: 2 of 2; policy removed: 1 of 1 |" in render_markdown(data)
    with Journal(folder) as journal:
        act("rollback", "access_policy", policy, "restore")
        act("rollback", "mail_consent", f"{APP_ARCHIVER}|Mail.Read", "grant")
    assert build_report(load_plan(folder)).mail.migrated[0].state == (
        "consent removed: 2 of 2; policy removed: 1 of 1; rolled back: policy restored 1 of 1, consent restored 1 of 2")
