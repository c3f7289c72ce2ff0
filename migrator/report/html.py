"""The report as one self-contained HTML page: inline CSS, the diagram as inline SVG, no script, no external asset.

A Content-Security-Policy meta tag forbids every external load and every script, so the page renders the same
when attached to a ticket, opened from a mail, or archived, and a hostile name cannot run code in it even if an
escape were missed. Every value goes through html.escape.
"""

from __future__ import annotations

from collections.abc import Set as AbstractSet
from html import escape

from migrator.report.markdown import (
    MAIL_HEADER,
    MAIL_REPORTED_HEADER,
    MAIL_REPORTED_TITLE,
    MAIL_TITLE,
    grants_text,
    helpdesk_paragraphs,
    mail_paragraphs,
    mail_rows,
    mail_summary,
    report_title,
)
from migrator.report.model import ReportData, fmt_send, fmt_time
from migrator.report.svg import render_svg

OPEN_BATCH_APPS = 25  # a batch's app table starts folded beyond this many apps
CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:"

CSS = """
:root { color-scheme: light; }
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, Helvetica, Arial, sans-serif; color: #0f172a;
       background: #ffffff; margin: 0; }
header { background: #0f3d6e; color: #ffffff; padding: 20px 32px; }
header h1 { margin: 0 0 4px; font-size: 24px; }
header p { margin: 0; color: #cbd5e1; }
main { padding: 8px 32px 48px; max-width: 1280px; }
h2 { border-bottom: 2px solid #e2e8f0; padding-bottom: 4px; margin-top: 32px; }
.cards { display: flex; flex-wrap: wrap; gap: 12px; }
.card { border: 1px solid #cbd5e1; border-radius: 8px; padding: 10px 16px; min-width: 130px; background: #f8fafc; }
.card b { display: block; font-size: 22px; color: #0f3d6e; }
.bound { margin-top: 14px; padding: 10px 14px; border-left: 4px solid #15803d; background: #f0fdf4; }
.bound.gap { border-color: #b45309; background: #fffbeb; }
.bar { display: flex; height: 14px; width: 420px; border-radius: 4px; overflow: hidden; margin-top: 6px;
       background: #e2e8f0; }
.bar span { display: block; height: 100%; }
.bar .lb { background: #15803d; } .bar .over { background: #f59e0b; }
table { border-collapse: collapse; margin: 8px 0 16px; }
th, td { border: 1px solid #e2e8f0; padding: 4px 8px; text-align: left; vertical-align: top; }
th { background: #f1f5f9; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
code { font: 12px ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; }
.state-done, .state-verified, .state-complete, .state-applied { color: #15803d; font-weight: 600; }
.state-waiting { color: #b45309; font-weight: 600; }
.state-failed, .state-interrupted { color: #b91c1c; font-weight: 600; }
.note { color: #475569; }
details { margin: 6px 0 14px; }
summary { cursor: pointer; font-weight: 600; }
svg.diagram { max-width: 100%; height: auto; border: 1px solid #e2e8f0; border-radius: 8px; background: #ffffff; }
svg.diagram text { font: 12px system-ui, sans-serif; fill: #0f172a; }
svg.diagram text.legend { font-size: 12px; fill: #334155; }
svg.diagram text.colhead { font-size: 13px; font-weight: 700; fill: #0f3d6e; }
.warning { margin: 16px 0; padding: 10px 14px; border-left: 4px solid #b91c1c; background: #fef2f2; }
@media print {
  .screen-only { display: none; }
  header { background: none; color: #000000; padding: 0 0 8px; border-bottom: 2px solid #000000; }
  header p { color: #333333; }
  main { padding: 0; max-width: none; }
  details > summary { list-style: none; }
  table, svg.diagram { break-inside: auto; }
  tr { break-inside: avoid; }
}
"""


def _e(value: object) -> str:
    return escape("" if value is None else str(value), quote=True)


def _table(header: list[str], rows: list[list[object]], *, numeric: AbstractSet[int] = frozenset(),
           cls: str = "") -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in header)
    body = []
    for row in rows:
        cells = []
        for i, cell in enumerate(row):
            if isinstance(cell, _Raw):
                cells.append(f"<td>{cell.html}</td>")
            else:
                cells.append(f'<td class="num">{_e(cell)}</td>' if i in numeric else f"<td>{_e(cell)}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    cls_attr = f' class="{cls}"' if cls else ""
    return f"<table{cls_attr}><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


class _Raw:
    """Already-escaped HTML for a cell."""

    def __init__(self, html: str) -> None:
        self.html = html


def _code_spans(text: str) -> str:
    """Escaped text with its `backtick` spans as <code>."""
    pieces = _e(text).split("`")
    return "".join(f"<code>{p}</code>" if i % 2 else p for i, p in enumerate(pieces))


def _state(state: str) -> _Raw:
    word = (state.split() or ["unknown"])[0]  # "waiting until ..." -> state-waiting
    return _Raw(f'<span class="state-{_e(word)}">{_e(state)}</span>')


def _bound(data: ReportData) -> str:
    gap = data.lower_bound is not None and data.cover_sets > data.lower_bound and not data.optimal
    bar = ""
    if data.lower_bound is not None and data.cover_sets:
        lb = min(data.lower_bound, data.cover_sets)
        bar = (f'<div class="bar" title="lower bound {data.lower_bound}, used {data.cover_sets}">'
               f'<span class="lb" style="width:{100 * lb / data.cover_sets:.1f}%"></span>'
               f'<span class="over" style="width:{100 * (data.cover_sets - lb) / data.cover_sets:.1f}%"></span></div>')
    return (f'<div class="bound{" gap" if gap else ""}" id="bound"><strong>Groups used against the proven lower '
            f'bound:</strong> {_e(data.bound_text)}.{bar}</div>')


def _mail_html(data: ReportData) -> list[str]:
    first, second = mail_paragraphs(data)
    migrated, reported = mail_rows(data)
    parts = [f'<h2 id="mail-access">{_e(MAIL_TITLE)}</h2>']
    parts += [f'<p class="note">{_code_spans(p)}</p>' for p in first]
    if migrated:
        parts.append(_table(MAIL_HEADER, [[*r[:8], _state(str(r[8]))] for r in migrated], numeric={2, 5},
                            cls="mail-migrated"))
    if reported:
        parts.append(f'<h3 id="mail-reported">{_e(MAIL_REPORTED_TITLE)}</h3>')
        parts += [f'<p class="note">{_code_spans(p)}</p>' for p in second]
        parts.append(_table(MAIL_REPORTED_HEADER, reported, cls="mail-reported"))
    return parts


def render_html(data: ReportData) -> str:
    c = data.counts
    t = data.totals
    cards = [("Apps", c.get("apps", 0)), ("Mailboxes", c.get("mailboxes", 0)),
             ("SendAs grants planned", t.get("planned", 0)), ("Migrated to RBAC", t.get("migrated", 0)),
             ("Still on legacy grants", t.get("on_legacy", 0)), ("Grants kept", c.get("grants_keep", 0)),
             ("Groups", f"{c.get('groups', 0)}"),
             ("New / reused", f"{c.get('groups_new', 0)} / {c.get('groups_reuse', 0)}"),
             ("Attribute terms", c.get("attribute_terms", 0)), ("Scopes", c.get("scopes", 0)),
             ("Role assignments", c.get("assignments", 0)), ("Batches", c.get("batches", 0))]
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{_e(report_title(data))}</title>",
        f"<style>{CSS}</style></head><body>",
        f'<header><h1 id="title">{_e(report_title(data))}</h1>'
        f"<p>Report generated {_e(data.generated)} · plan created {_e(data.created)} · source {_e(data.source)} · "
        f"role {_e(data.role)}</p></header><main>",
    ]
    if data.flagged:
        parts.append(f'<p class="warning" id="unscoped-warning"><strong>Warning: {len(data.flagged)} app(s) hold '
                     "unscoped Entra permissions.</strong> Scoping does not limit them until the unscoped permission "
                     'is removed: see <a href="#flagged">Apps with unscoped Entra permissions</a>.</p>')
    parts += [
        '<h2 id="summary">Summary</h2><div class="cards">'
        + "".join(f'<div class="card"><b>{_e(v)}</b>{_e(k)}</div>' for k, v in cards) + "</div>",
        f'<p class="note">SendAs grants: {_e(grants_text(data))}.</p>'
        + (f'<p class="note">Graph/EWS apps (access policies): {_e(mail_summary(data))}.</p>'
           if mail_summary(data) else ""),
        _bound(data),
    ]
    note = f" ({data.diagram.note})" if data.diagram.note else ""
    parts.append(f'<h2 id="diagram">Diagram</h2><p class="note">Apps, the groups and filters their role assignments '
                 f'are scoped to, and the mailboxes in them{_e(note)}.<span class="screen-only"> Hover a box for its '
                 "full name.</span></p>")
    parts.append(render_svg(data.diagram))
    parts += ['<h2 id="run">Run</h2>', f'<p class="note">{_e(data.run_note)}</p>']
    if data.runs:
        parts.append(_table(["Run", "Command", "Batch", "Started", "Ended", "Outcome"],
                            [[r.get("id"), r.get("command"), r.get("batch"), fmt_time(r.get("started_at")),
                              fmt_time(r.get("ended_at")), r.get("outcome") or ""] for r in data.runs]))
    if data.timeline:
        parts.append(_table(["Started", "Batch", "Generation", "Phase", "Step", "Status", "Waits until", "Finished"],
                            [[fmt_time(e.started_at), e.batch, e.generation, e.phase, e.step, _state(e.status),
                              fmt_time(e.not_before) if e.status == "waiting" else "", fmt_time(e.finished_at)]
                             for e in data.timeline], numeric={1, 2}, cls="timeline"))
    parts.append('<h2 id="batches">Batches</h2>')
    parts.append(_table(["Batch", "Note", "Apps", "SendAs grants", "Migrated", "Mailboxes", "New groups",
                         "Reused groups", "Scopes", "Assignments", "State"],
                        [[b.number, b.note, len(b.apps), b.grants, b.migrated, b.mailboxes, len(b.new_groups),
                          len(b.reused_groups), b.scopes, b.assignments, _state(b.state)] for b in data.batches],
                        numeric={0, 2, 3, 4, 5, 6, 7, 8, 9}, cls="batches"))
    for b in data.batches:
        title = f"Batch {b.number}" + (f": {b.note}" if b.note else "") + f" ({len(b.apps)} apps)"
        rows = [[a.name, _Raw(f"<code>{_e(a.app_id)}</code>"), a.sendas, a.migrated, a.restored, a.kept,
                 "; ".join(a.groups + a.attributes), f"unscoped: {a.flagged}" if a.flagged else ""] for a in b.apps]
        opened = " open" if len(b.apps) <= OPEN_BATCH_APPS else ""
        parts.append(f'<details{opened} id="batch-{b.number}"><summary>{_e(title)}</summary>'
                     + _table(["App", "App id", "SendAs planned", "Migrated", "Restored", "Kept",
                               "Groups and filters", "Flag"], rows, numeric={2, 3, 4, 5})
                     + "</details>")
    parts.append('<h2 id="groups">Groups</h2>')
    parts.append(_table(["Key", "Name", "Status", "Members", "Apps", "First batch", "Address"],
                        [[g.key, g.name, g.status, g.members, g.apps, g.batch, g.address] for g in data.groups],
                        numeric={3, 4, 5}))
    if data.mail is not None:
        parts += _mail_html(data)
    if data.smtp_sends:
        parts.append('<h2 id="smtp">SMTP sends</h2><p class="note">Each app signed in over SMTP (AUTH XOAUTH2) and '
                     "sent one message, before and after the run: the AUTH reply, then the message's.</p>")
        parts.append(_table(["App", "Mailbox", "Before", "After"],
                            [[r["app_name"] or r["app_id"], r["mailbox"], fmt_send(r["before"]), fmt_send(r["after"])]
                             for r in data.smtp_sends]))
    if data.helpdesk:
        parts.append('<h2 id="helpdesk">For the helpdesk: access changes from now on</h2>')
        parts += [f'<p class="note">{_code_spans(p)}</p>' for p in helpdesk_paragraphs(data)]
        opened = " open" if len(data.helpdesk) <= OPEN_BATCH_APPS else ""
        parts.append(f"<details{opened}><summary>What <code>migrator grant</code> does for each app "
                     f"({len(data.helpdesk)})</summary>"
                     + _table(["App", "Own groups", "Shared groups", "migrator grant of a new mailbox"],
                              [[h.name or h.app_id, ", ".join(h.own_groups), ", ".join(h.shared_groups), h.grant]
                               for h in data.helpdesk])
                     + "</details>")
    if data.kept_reasons:
        parts.append('<h2 id="kept">Grants kept</h2>')
        parts.append(_table(["Reason", "Grants"], [[r, n] for r, n in data.kept_reasons], numeric={1}))
    if data.flagged:
        parts.append('<h2 id="flagged">Apps with unscoped Entra permissions</h2>'
                     '<p class="note">Scoping does not limit these apps until the unscoped permission is removed.</p>')
        parts.append(_table(["App", "Permissions"], [[a, p] for a, p in data.flagged]))
    parts.append("</main></body></html>")
    return "\n".join(parts) + "\n"
