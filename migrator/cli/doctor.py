"""`migrator doctor`: parse, run the read-only checks (migrator.doctor), write doctor.json, print the verdicts."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from migrator.cli.options import json_option, profile_option
from migrator.errors import InputError


@click.command("doctor")
@click.argument("plan_path", metavar="[PLAN]", required=False,
                type=click.Path(exists=True, file_okay=False, path_type=Path))
@profile_option
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Where to write doctor.json (default: the plan folder when PLAN is given, else the current "
                   "folder).")
@click.option("--sample", type=click.IntRange(1, 200), default=5, show_default=True,
              help="Mailboxes whose FullAccess rows are read one by one and compared with the scan.")
@click.option("--token-lifetime", type=click.FloatRange(min=0), default=None,
              help="The longest access-token lifetime you state (as for execute): an unreadable token lifetime "
                   "policy is then no blocking finding.")
@click.option("--no-cutover", is_flag=True, help="Judge for a run with --no-cutover (no Graph write needed).")
@json_option
def doctor_command(plan_path: Path | None, profile: Path | None, out: Path | None, sample: int,
                   token_lifetime: float | None, no_cutover: bool, as_json: bool) -> None:
    """Check, read-only, the assumptions the tool makes about the tenant, before any write.

    Which cmdlets the endpoint accepts (Get-EXO* included); how permission rows name a known service principal
    (pointer DisplayName, ObjectId, ...); the no-identity FullAccess scan against single reads on a sample; the
    migrator app's roles (from its tokens); that the 'Application SMTP.SendAsApp' role exists; the token lifetime
    policies; with PLAN, the plan's apps' existing RBAC-for-Applications assignments and the apps that reach
    mailboxes through FullAccess alone while holding the SMTP claim, and, for the Graph/EWS apps it moves,
    Test-ApplicationAccessPolicy against the mailboxes the plan scopes them to (in and out). Prints a verdict per
    assumption (verified, differs and what the tool will do, cannot tell) and writes doctor.json. `execute` runs
    the same checks as its preflight. Exit: 0 nothing blocking, 7 a blocking finding, 4 tenant error.
    """
    from migrator.doctor import DOCTOR_FILE, run_doctor, write_report
    from migrator.executor import Connection

    if profile is None:
        raise InputError("--profile is required (a connection profile; `migrator sandbox serve` prints one)")
    plan = None
    if plan_path is not None:
        from migrator.planner.plan import load_plan

        plan = load_plan(plan_path)
    conn = Connection(profile)
    report = run_doctor(conn, plan, sample=sample, token_lifetime=token_lifetime, cutover=not no_cutover)
    target = out or ((plan_path / DOCTOR_FILE) if plan_path is not None else Path.cwd() / DOCTOR_FILE)
    write_report(report, target)
    if as_json:
        click.echo(json.dumps(report.to_dict(), indent=2))
    else:
        click.echo(report.render())
        click.echo(f"Written: {target}")
    sys.exit(7 if report.blocking else 0)


commands = [doctor_command]
