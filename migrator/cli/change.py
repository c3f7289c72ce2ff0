"""`migrator grant` and `migrator revoke`: parse, call migrator.change and the executor, render."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from migrator.cli.confirm import ConfirmationNeeded, stdin_is_terminal
from migrator.cli.options import json_option, profile_option
from migrator.errors import InputError

_COMMON_HELP = """
Reads the tenant (the same reads as `migrator audit`), computes the smallest exact change to the app's RBAC for
Applications setup, writes it as a change plan (the same CSV/JSON files as `migrator plan`; default folder
changes/<kind>-<app>-<hash>, named after the request) and applies it like `execute`: journal, drift check before
the first write, Test-ServicePrincipalAuthorization verification, and a propagation wait before anything the app
still uses is removed. Before its first change it shows the change and asks (--yes: no question; no terminal and
no --yes: exit 6, nothing changed). Killed or stopped, the same command resumes the same folder. Nothing to do
(the app already has exactly that): it says so and exits 0, writing nothing.

Exit: 0 done or nothing to do; 10 waiting for propagation (run the same command again after the time shown, or
--wait); 2 unknown app or mailbox, an ambiguous name, or a change it refuses; 3 the tenant changed since the change
was planned; 4 tenant error; 5 another run holds the change; 6 no terminal and no --yes; 11 items failed; 12
stopped.
"""


def _ask(review) -> bool:
    click.echo(review.text(), err=True)
    if not stdin_is_terminal():
        raise ConfirmationNeeded("this changes the tenant and there is no terminal to ask on: nothing was changed. "
                                 "Review the change above (or run with --dry-run) and run the same command with "
                                 "--yes to go ahead")
    return click.confirm("Apply this change?", default=False, err=True)


def _run(kind: str, app: str, mailboxes: tuple[str, ...], profile: Path | None, out: Path | None, dry_run: bool,
         yes: bool, wait: bool, propagation_wait: float, as_json: bool) -> None:
    from migrator.change.render import change_text
    from migrator.change.request import observer, prepare
    from migrator.executor.change import apply_change
    from migrator.executor.context import ExecSettings, Output
    from migrator.executor.session import RunOptions, outcome_lines
    from migrator.planner.plan import load_plan

    if profile is None:
        raise InputError("--profile is required (a connection profile; `migrator sandbox serve` prints one)")
    observe = observer(profile)
    prepared = prepare(kind, app, list(mailboxes), observe, out=out, source=profile.name)
    if prepared.folder is None:
        change = prepared.change
        assert change is not None
        why = "already reaches" if kind == "grant" else "does not reach"
        message = f"Nothing to do: {change.app_name} {why} {', '.join(change.requested)} through RBAC."
        click.echo(json.dumps({"command": kind, "app_id": change.app_id, "changed": False, "message": message,
                               "exit_code": 0}) if as_json else message)
        sys.exit(0)
    plan = load_plan(prepared.folder)
    if prepared.resumed:
        click.echo(f"Resuming the change in {prepared.folder} (planned earlier; its journal says where it stopped).",
                   err=True)
    output = Output(stream=sys.stderr, script=dry_run) if as_json else Output(script=dry_run)
    if dry_run or as_json:
        output.info(change_text(plan))
    settings = ExecSettings(propagation_wait=propagation_wait)
    options = RunOptions(settings, dry_run=dry_run, wait=wait, output=output, confirm=None if yes else _ask,
                         signals=True)
    result = apply_change(prepared.folder, profile, options, observe=observe)
    if as_json:
        section = plan.meta["change"]
        click.echo(json.dumps({"command": kind, "app_id": section["app_id"], "folder": str(prepared.folder),
                               "changed": not dry_run, "dry_run": dry_run, "strategy": section["strategy"],
                               "effective": section["effective"], "unchanged": section["unchanged"],
                               "outcomes": [{"status": o.status, "until": o.until, "message": o.message,
                                             "failures": [str(f) for f in o.failures]} for o in result.outcomes],
                               "exit_code": result.exit_code}, indent=2))
        sys.exit(result.exit_code)
    for line in outcome_lines(result, phase="execute"):
        click.secho(line.text, fg=line.fg, err=line.err or dry_run)
    sys.exit(result.exit_code)


def _command(kind: str, summary: str):
    @click.command(kind, help=summary + "\n" + _COMMON_HELP)
    @click.argument("app")
    @click.argument("mailboxes", metavar="MAILBOX...", nargs=-1, required=True)
    @profile_option
    @click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=None,
                  help="The change plan folder (default: changes/<kind>-<app>-<hash of the request>).")
    @click.option("--dry-run", is_flag=True,
                  help="Plan the change, write its folder, and print every write as the PowerShell it stands for; "
                       "change nothing in the tenant.")
    @click.option("--yes", "-y", is_flag=True, help="Do not ask before the first change (needed without a terminal).")
    @click.option("--wait", is_flag=True,
                  help="Wait out the propagation wait here, with a countdown, instead of exiting with 10.")
    @click.option("--propagation-wait", type=click.FloatRange(min=0), default=8100.0, show_default=True,
                  help="Seconds between a verified new assignment and the removal of the app's old one "
                       "(copy-on-write only; Microsoft: 30 minutes to 2 hours).")
    @json_option
    def command(app: str, mailboxes: tuple[str, ...], profile: Path | None, out: Path | None, dry_run: bool,
                yes: bool, wait: bool, propagation_wait: float, as_json: bool) -> None:
        _run(kind, app, mailboxes, profile, out, dry_run, yes, wait, propagation_wait, as_json)

    return command


grant_command = _command(
    "grant", "Give APP access to send as each MAILBOX from now on, through RBAC, changing no other app's access.\n\n"
    "APP: the application (client) id, the service principal's object id, or its Exchange display name. MAILBOX: "
    "a primary SMTP address, alias or UPN (an alias or name that two mailboxes share is refused: give the "
    "address). Adds the mailboxes to a group only APP uses; when every group of APP "
    "serves other apps too, creates one new group with them, a scope and a role assignment for APP.")
revoke_command = _command(
    "revoke", "Take away APP's access to send as each MAILBOX, changing no other app's access.\n\n"
    "Removes the mailboxes from groups only APP uses; for a group APP shares with other apps, a copy-on-write: a "
    "new group without them, a new scope and assignment for APP, and APP's old assignment removed only after the "
    "new one is verified and the propagation wait has passed; last, the old scope when no role assignment uses "
    "it any more. Refuses while APP holds a per-mailbox SendAs or "
    "FullAccess grant on one of the mailboxes (it names the command that removes it).")

commands = [grant_command, revoke_command]
