"""The report as Markdown (GitHub flavour): renders in a change ticket or a pull request, diagram in Mermaid.

Every value from the plan is escaped (md()) so that a name cannot open a link, a table cell, HTML, inline code,
emphasis or GitHub's `$...$` math.
"""

from __future__ import annotations

from migrator.executor.states import StepStatus
from migrator.report.mermaid import render_mermaid
from migrator.report.model import ReportData, fmt_send, fmt_time

MAX_APP_ROWS = 50      # per batch
MAX_GROUP_ROWS = 200
MAX_TIMELINE_ROWS = 200

_ESCAPE = {"\\": "\\\\", "`": "\\`", "*": "\\*", "_": "\\_", "[": "\\[", "]": "\\]", "|": "\\|", "#": "\\#",
           "~": "\\~", "!": "\\!", "$": "\\$", "<": "&lt;", ">": "&gt;", "&": "&amp;"}


def md(value: object) -> str:
    text = " ".join(str("" if value is None else value).split())
    return "".join(_ESCAPE.get(ch, ch) for ch in text)


def _table(header: list[str], rows: list[list[object]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(md(c) for c in row) + " |" for row in rows]
    return lines


def report_title(data: ReportData) -> str:
    """The report's title: the plan's name and the tenant it is for."""
    return f"Migration plan: {data.name} · tenant {data.tenant or 'not recorded yet (named at the first run)'}"


def grants_text(data: ReportData) -> str:
    """The SendAs grants in words, from the journal: never "migrated" before they are."""
    t = data.totals
    restored = f", {t.get('restored', 0)} restored by a rollback" if t.get("restored") else ""
    unconfirmed = (f", {t['unconfirmed']} removal(s) unconfirmed (a run stopped mid-call; the next run checks them)"
                   if t.get("unconfirmed") else "")
    return (f"{t.get('planned', 0)} planned: {t.get('migrated', 0)} migrated to RBAC, "
            f"{t.get('on_legacy', 0)} still on legacy grants{unconfirmed}{restored}")


def helpdesk_paragraphs(data: ReportData) -> list[str]:
    """The helpdesk section's text, shared by both renderers (code spans in backticks)."""
    shared = data.shared_group_count
    return [
        "From now on, give an app access to one more mailbox with `migrator grant APP MAILBOX --profile P`, and take "
        "it away with `migrator revoke APP MAILBOX --profile P`. Not with Add-RecipientPermission (the per-mailbox "
        "pattern comes back), and not by adding a member to a group by hand: "
        + (f"{shared} of this plan's groups {'serves' if shared == 1 else 'serve'} more than one app, and a member "
           "added to one reaches every app on it." if shared
           else "a group can come to serve several apps, and a member added to it reaches every one."),
        "Each command changes the named app's access by exactly the named mailboxes and no other app's. It shows the "
        "change and asks first, journals it, verifies it before anything is removed, and can be undone with "
        "`migrator rollback CHANGE-FOLDER --batch 1`. Revoke takes the mailbox out of the app's own group, or gives "
        "the app a copy of a shared group without it; it refuses a mailbox the app still reaches through a "
        "per-mailbox grant.",
        "Run `migrator audit PLAN CHANGE-FOLDERS... --profile P` on a schedule: exit 0 when the tenant is as "
        "applied, 1 with findings (new per-mailbox grants, members added by hand, scopes or assignments edited, "
        "the SMTP.SendAsApp claim granted again).",
    ]


MAIL_TITLE = "Graph/EWS access (Application Access Policies)"
MAIL_REPORTED_TITLE = "Reported only: not touched by this plan"
MAIL_HEADER = ["App", "App id", "Batch", "Permissions (consent removed)", "Application roles", "Mailboxes",
               "Groups and filters", "Policies (removed last)", "State"]
MAIL_REPORTED_HEADER = ["App", "App id", "Why not migrated", "Permissions", "Mailboxes reached", "Policies",
                        "What an admin could do"]


def mail_summary(data: ReportData) -> str:
    """The summary's Graph/EWS line ("" when no app is moved or reported)."""
    mail = data.mail
    if mail is None or not (mail.migrated or mail.reported):
        return ""
    permissions = sum(len(a.permissions) for a in mail.migrated)
    policies = sum(len(a.policies) for a in mail.migrated)
    return (f"{len(mail.migrated)} moved to Application roles ({permissions} permission(s), {policies} "
            f"polic{'y' if policies == 1 else 'ies'} removed), {len(mail.reported)} reported only")


def mail_paragraphs(data: ReportData) -> tuple[list[str], list[str]]:
    """The Graph/EWS section's text, shared by both renderers (code spans in backticks): (before the migrated
    apps' table, before the reported apps' table)."""
    mail = data.mail
    if mail is None:
        return [], []
    first = []
    if mail.not_read:
        first.append("The inventory did not read every part, so some apps cannot be judged: "
                     + "; ".join(mail.not_read) + ".")
    if mail.migrated:
        first.append(f"{len(mail.migrated)} app(s) move their Graph/EWS access off Application Access Policies: "
                     "each Entra permission below is served by its `Application <permission>` role, scoped to exactly "
                     "the mailboxes the app's RestrictAccess policies allow today (nested groups flattened: RBAC reads "
                     "a group's direct members only). In the app's batch: role assignments, verify, propagation "
                     "wait, then the Entra consent is removed, and the policy only after the token wait. Removed "
                     "first, the policy would leave the consent reaching every mailbox.")
    elif not mail.not_read:
        first.append("No app's Graph/EWS access is migrated by this plan.")
    second = []
    if mail.reported:
        second.append("These apps hold a permission an access policy fences, or are named by a policy, and are left "
                      "as they are: RBAC for Applications has no deny; an app with no policy already reaches every "
                      "mailbox, and scoping it is a decision, not a migration; nothing is guessed where a part was "
                      "not read.")
    return first, second


def mail_rows(data: ReportData) -> tuple[list[list[object]], list[list[object]]]:
    """The section's two tables' rows (migrated, reported), shared by both renderers."""
    if data.mail is None:
        return [], []
    return ([[a.name, a.app_id, a.batch, ", ".join(a.permissions), ", ".join(a.roles), a.mailboxes,
              "; ".join(a.groups), "; ".join(a.policies), a.state] for a in data.mail.migrated],
            [[r.name, r.app_id, r.status_text, ", ".join(r.permissions), r.mailboxes, "; ".join(r.policies),
              r.advice] for r in data.mail.reported])


def _mail_markdown(data: ReportData) -> list[str]:
    first, second = mail_paragraphs(data)
    migrated, reported = mail_rows(data)
    out = ["", f"## {MAIL_TITLE}", ""]
    for paragraph in first:
        out += [_code_md(paragraph), ""]
    if migrated:
        out += _table(MAIL_HEADER, migrated) + [""]
    if reported:
        out += [f"### {MAIL_REPORTED_TITLE}", ""]
        for paragraph in second:
            out += [_code_md(paragraph), ""]
        out += _table(MAIL_REPORTED_HEADER, reported) + [""]
    return out[:-1]


def _code_md(text: str) -> str:
    """Escaped text whose `backtick` spans stay code spans (their content is ours, not the plan's)."""
    pieces = " ".join(text.split()).split("`")
    return "".join(f"`{p}`" if i % 2 else "".join(_ESCAPE.get(ch, ch) for ch in p) for i, p in enumerate(pieces))


def render_markdown(data: ReportData) -> str:
    c = data.counts
    out = [f"# {md(report_title(data))}", "",
           f"Report generated {md(data.generated)}. Plan created {md(data.created)} from {md(data.source)}; "
           f"role {md(data.role)}.", ""]
    if data.flagged:
        out += [f"> **Warning: {len(data.flagged)} app(s) hold unscoped Entra permissions.** Scoping does not limit "
                "them until the unscoped permission is removed: see *Apps with unscoped Entra permissions*.", ""]
    out += ["## Summary", ""]
    summary: list[list[object]] = [
        ["Apps", f"{c.get('apps', 0)} ({c.get('apps_migrating', 0)} migrating, {c.get('apps_flagged', 0)} flagged)"],
        ["Mailboxes", c.get("mailboxes", 0)],
        ["SendAs grants", grants_text(data)],
        ["Grants kept", c.get("grants_keep", 0)],
        ["Groups", f"{c.get('groups', 0)} ({c.get('groups_new', 0)} new, {c.get('groups_reuse', 0)} reused)"],
        ["Attribute filter terms", c.get("attribute_terms", 0)],
        ["Group memberships to set", c.get("memberships", 0)],
        ["Management scopes", c.get("scopes", 0)],
        ["Role assignments", c.get("assignments", 0)],
        ["Batches", c.get("batches", 0)],
    ]
    if mail_summary(data):
        summary.append(["Graph/EWS apps (access policies)", mail_summary(data)])
    out += _table(["What", "Count"], summary)
    out += ["", f"**Groups used against the proven lower bound:** {md(data.bound_text)}.", ""]

    out += ["## Diagram", "", "Apps, the groups and filters their role assignments are scoped to, and the "
            "mailboxes in them" + (f" ({md(data.diagram.note)})" if data.diagram.note else "") + ".", "",
            "```mermaid", render_mermaid(data.diagram).rstrip("\n"), "```", ""]
    out += ["## Run", "", md(data.run_note), ""]
    if data.timeline:
        rows = [[fmt_time(e.started_at), e.batch, e.generation, e.phase, e.step, e.status,
                 fmt_time(e.not_before) if e.status == StepStatus.WAITING else "", fmt_time(e.finished_at)]
                for e in data.timeline[:MAX_TIMELINE_ROWS]]
        out += _table(["Started", "Batch", "Generation", "Phase", "Step", "Status", "Waits until", "Finished"], rows)
        if len(data.timeline) > MAX_TIMELINE_ROWS:
            out += ["", f"… and {len(data.timeline) - MAX_TIMELINE_ROWS} more steps (see report.html)."]
        out.append("")

    out += ["## Batches", ""]
    out += _table(["Batch", "Note", "Apps", "SendAs grants", "Migrated", "Mailboxes", "New groups", "Reused groups",
                   "Scopes", "Assignments", "State"],
                  [[b.number, b.note, len(b.apps), b.grants, b.migrated, b.mailboxes, len(b.new_groups),
                    len(b.reused_groups), b.scopes, b.assignments, b.state] for b in data.batches])
    for b in data.batches:
        title = f"### Batch {b.number}" + (f": {md(b.note)}" if b.note else "")
        out += ["", title, ""]
        rows = [[a.name, a.app_id, a.sendas, a.migrated, a.restored, a.kept, "; ".join(a.groups + a.attributes),
                 a.flagged and f"unscoped: {a.flagged}"] for a in b.apps[:MAX_APP_ROWS]]
        out += _table(["App", "App id", "SendAs planned", "Migrated", "Restored", "Kept", "Groups and filters",
                       "Flag"], rows)
        if len(b.apps) > MAX_APP_ROWS:
            out += ["", f"… and {len(b.apps) - MAX_APP_ROWS} more apps (see report.html)."]

    out += ["", "## Groups", ""]
    out += _table(["Key", "Name", "Status", "Members", "Apps", "First batch"],
                  [[g.key, g.name, g.status, g.members, g.apps, g.batch] for g in data.groups[:MAX_GROUP_ROWS]])
    if len(data.groups) > MAX_GROUP_ROWS:
        out += ["", f"… and {len(data.groups) - MAX_GROUP_ROWS} more groups (see report.html and groups.csv)."]

    if data.mail is not None:
        out += _mail_markdown(data)
    if data.smtp_sends:
        out += ["", "## SMTP sends", "", "Each app signed in over SMTP (AUTH XOAUTH2) and sent one message, before and "
                "after the run: the AUTH reply, then the message's.", ""]
        out += _table(["App", "Mailbox", "Before", "After"],
                      [[r["app_name"] or r["app_id"], r["mailbox"], fmt_send(r["before"]), fmt_send(r["after"])]
                       for r in data.smtp_sends])
    if data.helpdesk:
        out += ["", "## For the helpdesk: access changes from now on", ""]
        for paragraph in helpdesk_paragraphs(data):
            out += [paragraph, ""]
        out += _table(["App", "Own groups", "Shared groups", "`migrator grant` of a new mailbox"],
                      [[h.name or h.app_id, ", ".join(h.own_groups), ", ".join(h.shared_groups), h.grant]
                       for h in data.helpdesk[:MAX_APP_ROWS]])
        if len(data.helpdesk) > MAX_APP_ROWS:
            out += ["", f"… and {len(data.helpdesk) - MAX_APP_ROWS} more apps (see report.html)."]
    if data.kept_reasons:
        out += ["", "## Grants kept", ""]
        out += _table(["Reason", "Grants"], [[r, n] for r, n in data.kept_reasons])
    if data.flagged:
        out += ["", "## Apps with unscoped Entra permissions", "",
                "Scoping does not limit these apps until the unscoped permission is removed.", ""]
        out += _table(["App", "Permissions"], [[a, p] for a, p in data.flagged])

    return "\n".join(out)
