"""`migrator execute`, `migrator rollback`, `migrator status`: parse, call migrator.executor, render."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from migrator.cli.options import json_option, profile_option
from migrator.errors import InputError

plan_argument = click.argument("plan_path", metavar="PLAN", type=click.Path(exists=True, file_okay=False,
                                                                              path_type=Path))
yes_option = click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation before the first change.")
wait_option = click.option("--wait", is_flag=True,
                           help="Wait out the propagation and token-lifetime waits here, with a countdown, instead "
                                "of exiting and saying when to come back.")
token_option = click.option("--token-lifetime", type=click.FloatRange(min=0), default=5400.0, show_default=True,
                            help="Seconds to wait after the cut-over (and in a rollback after the re-grant) so every "
                                 "access token issued before it has expired. Entra tokens live 60-90 minutes.")
concurrency_option = click.option("--concurrency", type=click.IntRange(1, 16), default=4, show_default=True,
                                  help="Calls in flight in long steps (grant removal, verification); the client "
                                       "slows down by itself when the tenant throttles.")


def _require_profile(profile: Path | None) -> Path:
    if profile is None:
        raise InputError("--profile is required (a connection profile; `migrator sandbox serve` prints one)")
    return profile


def _describe_batch(view) -> str:
    lines = [f"Batch {view.number}: {len(view.apps)} app(s), {len(view.migrate_grants())} legacy grant(s) to migrate"]
    for app_id in view.apps:
        lines.append(f"  {app_id}  {view.app_names.get(app_id, '')}  ({len(view.app_mailboxes(app_id))} mailboxes)")
    new_groups = [g for g in view.groups if g.status == "new"]
    lines.append(f"  creates or checks {len(new_groups)} group(s), {len(view.scopes)} scope(s), "
                 f"{len(view.assignments)} role assignment(s); then removes the migrated SendAs grants after the waits")
    return "\n".join(lines)


def _confirm(view) -> bool:
    click.echo(_describe_batch(view))
    return click.confirm("Apply this batch?", default=False)


def _open(plan_path: Path, profile: Path, *, dry_run: bool, graph_write: bool):
    from migrator.executor import Connection, check_permissions
    from migrator.executor.journal import Journal
    from migrator.planner.plan import load_plan

    plan = load_plan(plan_path)  # hashes and exactness: PlanError before anything else
    journal = Journal(plan_path, readonly=dry_run)  # the lock: a second executor stops here
    try:
        conn = Connection(profile)
        if not dry_run:
            check_permissions(conn, graph_write=graph_write)
    except BaseException:
        journal.close()
        raise
    return plan, journal, conn


def _finish(result, *, phase: str) -> None:
    from migrator.executor.runner import fmt_time

    for outcome in result.outcomes:
        if outcome.status == "waiting":
            click.echo(f"Batch {outcome.batch}: waiting ({outcome.message}). Nothing else to do now: run the same "
                       f"command again after {fmt_time(outcome.until)}, or add --wait.")
        elif outcome.status == "done" and outcome.message:
            click.echo(f"Batch {outcome.batch}: {outcome.message}")
    failed = [o for o in result.outcomes if o.status == "failed"]
    if failed:
        click.secho(f"{sum(len(o.failures) for o in failed)} item(s) failed; the batch is left where `migrator "
                    f"{phase}` resumes it{' or `migrator rollback` undoes it' if phase == 'execute' else ''}.",
                    fg="red", err=True)
    calls = result.calls
    click.echo(f"API calls: {calls.get('read', 0)} read(s), {calls.get('write', 0)} write(s).", err=True)
    sys.exit(result.exit_code)


@click.command("execute")
@plan_argument
@profile_option
@click.option("--batch", "batch", type=click.IntRange(min=1), default=None, help="The batch to apply (1 is the pilot).")
@click.option("--all", "all_batches", is_flag=True, help="Apply every batch, in order; while one waits, the next goes on.")
@click.option("--dry-run", is_flag=True, help="Go through the same steps with every write disabled; print the changes.")
@yes_option
@wait_option
@click.option("--propagation-wait", type=click.FloatRange(min=0), default=7200.0, show_default=True,
              help="Seconds between a verified RBAC setup and the cut-over (Microsoft: 30 minutes to 2 hours).")
@token_option
@click.option("--no-cutover", is_flag=True,
              help="Leave each app's Entra SMTP.SendAsApp assignment in place. Only for tenants where a token with "
                   "that claim is served through RBAC: under the documented claim rule removing the legacy grants "
                   "without a cut-over cuts the app off.")
@concurrency_option
def execute_command(plan_path: Path, profile: Path | None, batch: int | None, all_batches: bool, dry_run: bool,
                    yes: bool, wait: bool, propagation_wait: float, token_lifetime: float, no_cutover: bool,
                    concurrency: int) -> None:
    """Apply one batch of PLAN (or all of them) to the tenant, resumably.

    Steps, each reading before it writes and verifying after: preflight (plan hashes, drift, permissions,
    service-principal pointers) -> groups -> scopes -> role assignments -> verify -> propagation wait -> cut-over ->
    token-lifetime wait -> remove the legacy SendAs grants -> final verification. Killed or stopped (Ctrl-C, or a
    file named PAUSE in the plan folder), the same command resumes. Exit: 0 done or waiting (the message says
    until when), 2 bad plan, 3 drift, 4 tenant error or missing permission, 5 another executor holds the plan,
    11 items failed, 12 stopped.
    """
    from migrator.executor.context import Control, ExecSettings, Output
    from migrator.executor.runner import Runner

    if (batch is None) == (not all_batches):
        raise InputError("give exactly one of --batch N or --all")
    settings = ExecSettings(propagation_wait=propagation_wait, token_lifetime=token_lifetime,
                            cutover=not no_cutover, concurrency=concurrency)
    plan, journal, conn = _open(plan_path, _require_profile(profile), dry_run=dry_run, graph_write=not no_cutover)
    batches = [int(b.number) for b in plan.batches] if all_batches else [batch]
    control = Control(plan_path)
    control.install()
    try:
        runner = Runner(plan, journal, conn.exo, conn.graph, settings=settings, dry_run=dry_run, wait=wait,
                        control=control, output=Output(), confirm=None if yes else _confirm)
        result = runner.run(batches)
    finally:
        control.uninstall()
        journal.close()
    _finish(result, phase="execute")


@click.command("rollback")
@plan_argument
@profile_option
@click.option("--batch", "batch", type=click.IntRange(min=1), required=True, help="The batch to undo.")
@click.option("--dry-run", is_flag=True, help="Show what the rollback would change; write nothing.")
@yes_option
@wait_option
@token_option
def rollback_command(plan_path: Path, profile: Path | None, batch: int, dry_run: bool, yes: bool, wait: bool,
                     token_lifetime: float) -> None:
    """Undo one batch from the journal, in reverse and without a gap.

    Restores the removed legacy grants first, re-grants the Entra SMTP.SendAsApp assignment, waits the token
    lifetime, then removes the batch's role assignments, scopes and the groups the tool created that no other
    applied batch uses. Resumable like execute. It says what it cannot restore exactly. Exit codes as for execute.
    """
    from migrator.executor.context import Control, ExecSettings, Output
    from migrator.executor.rollback import RollbackRunner

    plan, journal, conn = _open(plan_path, _require_profile(profile), dry_run=dry_run, graph_write=True)
    control = Control(plan_path)
    control.install()
    try:
        def confirm(view) -> bool:
            click.echo(f"Roll back batch {view.number} ({len(view.apps)} app(s))?")
            return click.confirm("Proceed?", default=False)

        runner = RollbackRunner(plan, journal, conn.exo, conn.graph,
                                settings=ExecSettings(token_lifetime=token_lifetime), dry_run=dry_run, wait=wait,
                                control=control, output=Output(), confirm=None if yes else confirm)
        result = runner.run([batch])
    finally:
        control.uninstall()
        journal.close()
    _finish(result, phase="rollback")


@click.command("status")
@plan_argument
@json_option
def status_command(plan_path: Path, as_json: bool) -> None:
    """Show, per batch and step, what is done, what waits and until when, and what failed.

    Reads the journal only (no tenant calls). Exit codes for scripts: 0 every batch done or rolled back;
    10 a batch is waiting (run the command again after the time shown); 11 a step failed and needs attention;
    12 work remains (not started, or stopped part-way).
    """
    from migrator.executor.journal import Journal
    from migrator.executor.status import as_json as to_json
    from migrator.executor.status import batch_statuses, exit_code, render
    from migrator.planner.plan import load_plan

    plan = load_plan(plan_path)
    with Journal(plan_path, readonly=True) as journal:
        statuses = batch_statuses(plan, journal)
    if as_json:
        click.echo(json.dumps(to_json(plan, statuses), indent=2))
    else:
        click.echo(render(statuses))
    sys.exit(exit_code(statuses))


commands = [execute_command, rollback_command, status_command]
