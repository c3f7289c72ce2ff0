"""`migrator plan` (inventory -> plan folder) and `migrator show` (summary of a plan folder)."""

from __future__ import annotations

import json
import time
from dataclasses import replace
from pathlib import Path

import click

from migrator.cli.options import force_option, json_option
from migrator.model import RBAC_ROLE_SMTP_SEND_AS
from migrator.planner import naming
from migrator.planner.build import FULLACCESS_SMTP_CHOICES, PlanOptions, build_plan, gc_paused
from migrator.planner.cover import STRATEGIES, Strategy
from migrator.planner.plan import Plan, load_plan, plan_counts, write_plan
from migrator.planner.source import load_source


@click.command("plan")
@click.argument("input_path", metavar="INPUT", type=click.Path(exists=True, path_type=Path))
@click.option("--out", "out", type=click.Path(path_type=Path), default=None,
              help="Plan folder to write (default: plans/<name of INPUT>).")
@force_option
@click.option("--strategy", type=click.Choice(STRATEGIES), default=Strategy.MINIMAL.value, show_default=True,
              help="minimal: fewest exact groups (proven minimum unless the time limit runs out); "
                   "per-app: one group per distinct app mailbox set.")
@click.option("--pilot", type=click.IntRange(min=0), default=1, show_default=True,
              help="Apps in the pilot batch (batch 1), smallest blast radius first; 0 for no pilot.")
@click.option("--batch-size", type=click.IntRange(min=1), default=25, show_default=True,
              help="Apps per batch after the pilot. An app is never split across batches.")
@click.option("--prefix", default=naming.DEFAULT_PREFIX, show_default=True,
              help="Prefix of the names of the groups, scopes and role assignments the plan creates.")
@click.option("--allow-attribute-scopes", is_flag=True,
              help="Use an attribute filter (e.g. CustomAttribute1 -eq 'x') instead of a new group where it "
                   "matches exactly the needed mailboxes. Future mailboxes given that value will be in scope.")
@click.option("--time-limit", type=click.FloatRange(min=0, min_open=True), default=60.0, show_default=True,
              help="Wall-clock seconds for the whole command (reading, solving, writing); the solver gets what "
                   "reading and writing leave. Past it the best cover found is used and the gap to the proven "
                   "lower bound is reported, with what cut the search.")
@click.option("--role", default=RBAC_ROLE_SMTP_SEND_AS, show_default=True,
              help="The RBAC for Applications role each assignment grants.")
@click.option("--fullaccess-smtp", type=click.Choice(FULLACCESS_SMTP_CHOICES), default="ask", show_default=True,
              help="Only for apps holding FullAccess whose Entra permissions INPUT does not give (exports without "
                   "the app-role file, a grants CSV): `yes` takes their FullAccess as SMTP reach (an app with "
                   "SMTP.SendAsApp sends as every mailbox it holds FullAccess on) and moves it to RBAC; `no` takes "
                   "it as none. `ask` stops and names those apps.")
@click.option("--remove-fullaccess", is_flag=True,
              help="Remove, after the cut-over, the FullAccess grants whose SMTP reach moves to RBAC, for apps "
                   "known to hold no IMAP.AccessAsApp/POP.AccessAsApp (FullAccess is what IMAP/POP needs, so it "
                   "is kept otherwise; rollback restores it).")
def plan_command(input_path: Path, out: Path | None, force: bool, strategy: str, pilot: int, batch_size: int,
                 prefix: str, allow_attribute_scopes: bool, time_limit: float, role: str, fullaccess_smtp: str,
                 remove_fullaccess: bool) -> None:
    """Plan the fewest exact groups, scopes and role assignments for INPUT and write them as a plan folder.

    INPUT is an inventory folder (from `migrator inventory`) or a grants CSV with the columns
    app_id, mailbox[, right][, app_name]. The plan is checked for exactness before it is written: every app keeps
    exactly the mailboxes it can send as today (SendAs, and FullAccess when it holds SMTP.SendAsApp), no more,
    no fewer. FullAccess grants are kept for IMAP/POP unless --remove-fullaccess says otherwise.

    Graph and EWS apps whose Entra mail permissions are fenced by RestrictAccess Application Access Policies get
    an `Application <permission>` role on exactly the mailboxes their policies allow today (nested groups
    flattened), from the same groups; their consent and then their policies are removed in their batch. DenyAccess
    apps, apps with no policy (tenant-wide) and apps the inventory could not fully read are reported, not planned.
    """
    started = time.perf_counter()
    options = PlanOptions(strategy=strategy, pilot=pilot, batch_size=batch_size, prefix=prefix,
                          allow_attribute_scopes=allow_attribute_scopes, time_limit=time_limit, role=role,
                          fullaccess_smtp=fullaccess_smtp, remove_fullaccess=remove_fullaccess)
    out = out or Path("plans") / (input_path.stem if input_path.is_file() else input_path.name)
    with gc_paused():
        plan = build_plan(load_source(input_path), options, started=started)
        write_plan(plan, out, overwrite=force)  # checks exactness first; nothing is written when it fails
    click.echo(render_text(replace(plan, path=out)))
    if plan.batches:
        click.echo(f"\nWrote {out}. Review its CSV files, then run `migrator execute {out} --batch 1`.")
    else:
        done = sum(1 for a in plan.meta.get("existing_rbac", {}).get("apps", []) if a["status"] == "rbac_only")
        already = f" {done} app(s) already send through RBAC for Applications only." if done else ""
        click.echo(f"\nWrote {out}. Nothing to migrate: no app has SMTP reach through SendAs or FullAccess left "
                   f"to move.{already}")


@click.command("show")
@click.argument("plan_path", metavar="PLAN", type=click.Path(exists=True, file_okay=False, path_type=Path))
@json_option
def show_command(plan_path: Path, as_json: bool) -> None:
    """Summarise a plan folder: apps, mailboxes, grants, groups against the lower bound, scopes, assignments
    and batches. The plan's hashes and exactness are checked first."""
    with gc_paused():
        plan = load_plan(plan_path)
    change = plan.meta.get("change")
    if as_json:
        click.echo(json.dumps({**summary(plan), **({"change": change} if isinstance(change, dict) else {})},
                              indent=2))
    elif isinstance(change, dict):  # a `migrator grant`/`revoke` change plan: say what it changes
        from migrator.change.render import change_text

        click.echo(change_text(plan))
    else:
        click.echo(render_text(plan))


def summary(plan: Plan) -> dict:
    meta = plan.meta
    return {
        "path": str(plan.path) if plan.path else None,
        "created": meta.get("created"),
        "source": meta.get("source"),
        "role": meta.get("role"),
        "options": meta.get("options"),
        "cover": meta.get("cover"),
        "counts": plan_counts(plan),
        "batches": [{"batch": b.number, "apps": list(b.apps), "grants": b.grants, "mailboxes": b.mailboxes,
                     "new_groups": b.new_groups, "scopes": b.scopes, "assignments": b.assignments, "note": b.note}
                    for b in plan.batches],
        "flagged_apps": meta.get("flagged_apps", []),
        "existing_rbac": meta.get("existing_rbac"),
        "mail_access": meta.get("mail_access"),
    }


def render_text(plan: Plan) -> str:
    meta, c = plan.meta, plan_counts(plan)
    cover = meta.get("cover", {})
    src = meta.get("source", {})
    attr_scopes = sum(1 for s in plan.scopes if s.attributes)
    fa_smtp = sum(1 for a in meta.get("fullaccess", {}).get("apps", []) if a.get("smtp_reach"))
    fa_note = f"; {fa_smtp} app(s) whose FullAccess is SMTP reach moved to RBAC" if fa_smtp else ""
    bound = f"lower bound {cover.get('lower_bound')}"
    if cover.get("optimal"):
        bound += ", optimal"
    else:
        bound += f", not proven optimal (gap {c['cover_elements'] - (cover.get('lower_bound') or 0)}"
        bound += f"; search cut by: {cover['cut']})" if cover.get("cut") else ")"
    lines = [
        f"Plan:        {plan.path}",
        f"Created:     {meta.get('created')}",
        f"Source:      {src.get('path')} ({src.get('kind')}, sha256 {str(src.get('sha256'))[:12]})",
        f"Role:        {meta.get('role')}",
        f"Apps:        {c['apps']} ({c['apps_migrating']} migrating, {c['apps_flagged']} flagged)"
        + (f"; Graph/EWS: {c['mail_apps']} app(s), {c['mail_permissions']} permission(s)" if "mail_apps" in c else ""),
        f"Mailboxes:   {c['mailboxes']}",
        f"Grants:      {c['grants_migrate']} migrate (removed after the cut-over), {c['grants_keep']} keep "
        f"(FullAccess{fa_note})",
        f"Groups:      {c['groups']} ({c['groups_new']} new, {c['groups_reuse']} reuse)",
        f"Cover:       {c['cover_elements']} sets ({c['groups']} groups, {c['attribute_terms']} attribute value(s)); "
        f"{bound}; strategy {cover.get('strategy')}",
        f"Scopes:      {c['scopes']} ({attr_scopes} with attribute filters)",
        f"Assignments: {c['assignments']}",
        f"Batches:     {c['batches']}",
    ]
    if plan.batches:
        header = ("Batch", "Apps", "Grants", "Mailboxes", "New groups", "Scopes", "Assignments", "Note")
        rows = [(str(b.number), str(len(b.apps)), str(b.grants), str(b.mailboxes), str(b.new_groups),
                 str(b.scopes), str(b.assignments), b.note) for b in plan.batches]
        widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header) - 1)]
        lines.append("")
        for r in [header, *rows]:
            lines.append("  ".join(cell.rjust(w) for cell, w in zip(r, widths)) + "  " + r[-1])
    lines += _existing_lines(meta.get("existing_rbac"))
    lines += _mail_lines(meta.get("mail_access"))
    flagged = meta.get("flagged_apps", [])
    if flagged:
        lines.append("")
        lines.append("Flagged apps (unscoped Entra permissions: RBAC scoping does not limit them until removed):")
        for f in flagged:
            name = f" ({f['app_name']})" if f.get("app_name") else ""
            lines.append(f"  {f['app_id']}{name}: {', '.join(f['permissions'])}")
    return "\n".join(lines)


MAIL_STATUS_WORDS = {"deny": "DenyAccess: reported, not migrated (RBAC has no deny)",
                     "tenant_wide": "no policy, tenant-wide today: reported, not scoped",
                     "no_permission": "a policy but no fenced permission: reported",
                     "unknown": "not fully read: reported, nothing guessed",
                     "migrate": "planned"}


def _mail_lines(mail: dict | None) -> list[str]:
    """Graph/EWS apps fenced by Application Access Policies: planned, or reported only (and why)."""
    if not mail or not mail.get("apps"):
        if mail and not (mail.get("read", {}).get("policies_read") or mail.get("read", {}).get("permissions_read")):
            return ["", "Graph/EWS:   access policies and the apps' mail permissions not read (nothing planned)"]
        return []
    lines = ["", "Graph/EWS apps (Application Access Policies):"]
    for a in mail["apps"]:
        name = f" ({a['app_name']})" if a.get("app_name") else ""
        if a.get("planned"):
            what = (f"batch {a['batch']}: {', '.join(a['roles'])} on {a['mailboxes']} mailbox(es); consent, then "
                    f"{len(a['policies'])} polic{'y' if len(a['policies']) == 1 else 'ies'} removed")
        else:
            what = MAIL_STATUS_WORDS.get(a["status"], a["status"])
            if a["status"] == "migrate":
                what = a.get("note", "not planned")
        lines.append(f"  {a['app_id']}{name}: {what}")
    return lines


def _existing_lines(existing: dict | None) -> list[str]:
    """What the plan made of the apps' existing RBAC for Applications assignments (planner/existing.py)."""
    if not existing:
        return []
    if not existing.get("read"):
        return ["", f"Existing RBAC: not read. {existing.get('note', '')}"]
    apps = existing.get("apps", [])
    counts: dict[str, int] = {}
    for a in apps:
        counts[a["status"]] = counts.get(a["status"], 0) + 1
    words = {"covered": "already served (removal only)", "partial": "partly served (the rest planned)",
             "beyond": "left as they are (reach beyond legacy)", "unknown": "left as they are (reach unknown)",
             "rbac_only": "already on RBAC only (nothing to do)"}
    summary = "; ".join(f"{n} {words.get(k, k)}" for k, n in sorted(counts.items())) or "none held by these apps"
    lines = ["", f"Existing RBAC: {summary}"]
    for a in apps:
        if a["status"] in ("beyond", "unknown"):
            name = f" ({a['app_name']})" if a.get("app_name") else ""
            lines.append(f"  {a['app_id']}{name}: {a['note']}")
    return lines


commands = [plan_command, show_command]
