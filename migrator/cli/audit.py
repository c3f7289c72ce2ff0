"""`migrator audit`: is the tenant still as the applied plans left it? Read-only; for a scheduled job too."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from migrator.cli.options import json_option, profile_option
from migrator.errors import InputError, MigratorError


@click.command("audit")
@click.argument("plan_paths", metavar="PLAN...", nargs=-1, required=True,
                type=click.Path(exists=True, file_okay=False, path_type=Path))
@profile_option
@json_option
@click.option("--markdown", "as_markdown", is_flag=True, help="Print Markdown for a ticket instead of text.")
def audit_command(plan_paths: tuple[Path, ...], profile: Path | None, as_json: bool, as_markdown: bool) -> None:
    """Compare the tenant with what the applied PLANs (their journals) say should be there. Read-only.

    Reports new per-mailbox SendAs/FullAccess grants held by apps, members added to or removed from the plans'
    groups (and which apps each change over- or under-grants), edited or deleted scopes and role assignments,
    SMTP.SendAsApp claims re-granted in Entra, and objects named like this tool's that no given plan makes; and
    each migrated app's SMTP reach today against the reach it was given. For Graph/EWS apps moved off their
    access policies: a removed consent or policy back, their Application role assignments deleted or changed.
    Exit 0 when clean, 1 with findings (for a scheduled job), 2 bad input, 4 when the tenant could not be read
    (never reported clean).

    Give the change folders of `migrator grant`/`revoke` too (changes/*): an applied change is then expected,
    not reported.
    """
    from migrator.audit import render_markdown, render_text, run_audit

    if profile is None:
        raise InputError("--profile is required (the tenant's connection profile)")
    result = run_audit(list(plan_paths), profile)
    if as_json:
        json.dump(result.to_dict(), sys.stdout, indent=2)
        sys.stdout.write("\n")
    elif as_markdown:
        click.echo(render_markdown(result), nl=False)
    else:
        click.echo(render_text(result))
    if not result.clean:
        raise MigratorError(f"the tenant differs from the plans in {len(result.findings)} way(s)"
                            if result.findings else "an app's reach differs from its plan")


commands = [audit_command]
