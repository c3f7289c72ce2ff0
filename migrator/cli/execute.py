"""`migrator execute`, `migrator rollback`, `migrator status`: parse, call migrator.executor, render."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from migrator.cli.confirm import ask
from migrator.cli.options import json_option, profile_option
from migrator.errors import InputError

plan_argument = click.argument("plan_path", metavar="PLAN", type=click.Path(exists=True, file_okay=False,
                                                                              path_type=Path))
yes_option = click.option("--yes", "-y", is_flag=True,
                          help="Do not ask before the first change (needed when there is no terminal: without it the "
                               "command shows the changes and exits 6).")
wait_option = click.option("--wait", is_flag=True,
                           help="Wait out the propagation and token-lifetime waits here, with a countdown, instead "
                                "of exiting and saying when to come back.")
token_option = click.option("--token-lifetime", type=click.FloatRange(min=0), default=None,
                            help="The longest access-token lifetime in your tenant, in seconds. Default: read the "
                                 "token lifetime policies that apply to the batch's apps (Entra's default tokens live "
                                 "60-90 minutes; a policy can make them live up to a day). The token wait after the "
                                 "cut-over (and in a rollback after the re-grant) is the longer of this and the "
                                 "policies, plus --token-margin. Give it when a policy cannot be read.")
margin_option = click.option("--token-margin", type=click.FloatRange(min=0), default=900.0, show_default=True,
                             help="Seconds added to the token wait (clock skew, Graph replication).")
readback_option = click.option("--readback-spacing", type=click.FloatRange(min=0), default=60.0, show_default=True,
                               help="Seconds between the two read-backs of the Entra SMTP.SendAsApp assignment's "
                                    "removal (rollback: its return) before the token wait starts; Graph replicates "
                                    "app-role assignments with delay.")
cutover_profile_option = click.option(
    "--cutover-profile", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
    help="A second connection profile whose app holds Graph AppRoleAssignment.ReadWrite.All, used only for the "
         "Entra SMTP.SendAsApp writes of the cut-over (and of a rollback's re-grant), and connected only when that "
         "step has something to write. Without it, and when --profile's token lacks that permission, the step "
         "writes handover-batch-N-<step>.ps1 (Microsoft.Graph PowerShell for a privileged admin), stops with exit "
         "13, and the next run verifies the admin's change and goes on.")
concurrency_option = click.option("--concurrency", type=click.IntRange(1, 16), default=4, show_default=True,
                                  help="Calls in flight in long steps (grant removal, verification); the client "
                                       "slows down by itself when the tenant throttles.")


def _require_profile(profile: Path | None) -> Path:
    if profile is None:
        raise InputError("--profile is required (a connection profile; `migrator sandbox serve` prints one)")
    return profile


def _run(plan_path: Path, profile: Path | None, *, phase: str, batches: list[int] | None, options,
         graph_write: bool, as_json: bool = False) -> None:
    """Open, lock, connect and preflight through the run facade; run; print how it ended; exit with its code."""
    from migrator.executor.context import Output
    from migrator.executor.session import RunSession, outcome_lines

    options.signals = True
    if as_json:  # progress to stderr, the JSON alone on stdout
        options.output = Output(stream=sys.stderr, script=options.dry_run)
    elif options.dry_run:  # stdout is a PowerShell script: the cmdlets, everything else as comments
        options.output = Output(script=True)
    with RunSession.open(plan_path, _require_profile(profile), options, graph_write=graph_write) as session:
        if options.dry_run and not as_json:
            from migrator.executor.review import tenant_label
            from migrator.powershell.commands import dry_run_header

            click.echo(dry_run_header(phase, tenant_label(session.conn.profile), str(plan_path)))
        if session.journal.rebuilt is not None:
            counts = session.journal.rebuilt
            click.echo(f"Rebuilt journal.db from the undo log: {counts['batches']} batch(es), {counts['removals']} "
                       f"removal(s), {counts['objects']} object(s).", err=True)
        if phase == "rollback":
            result = session.rollback(batches[0] if batches else 0)
        else:
            result = session.execute(batches)
        plan = session.plan
    if as_json:
        document = _result_json(plan, result, phase=phase, dry_run=options.dry_run)
        if options.dry_run:
            document["powershell"] = list(options.output.changes)
        click.echo(json.dumps(document, indent=2))
        sys.exit(result.exit_code)
    if options.dry_run:
        from migrator.powershell.commands import DRY_RUN_FOOTER

        click.echo(DRY_RUN_FOOTER)
    for line in outcome_lines(result, phase=phase):
        err = line.err or options.dry_run  # a dry run's stdout stays a script
        if line.fg:
            click.secho(line.text, fg=line.fg, err=err)
        else:
            click.echo(line.text, err=err)
    sys.exit(result.exit_code)


def _result_json(plan, result, *, phase: str, dry_run: bool) -> dict:
    """`execute --json` / `rollback --json`: this run's outcome per batch, and the plan's state from the journal
    (the same document as `status --json`)."""
    from migrator.executor.journal import Journal
    from migrator.executor.status import as_json as status_json
    from migrator.executor.status import batch_statuses

    with Journal(plan.path, readonly=True) as journal:
        state = status_json(plan, batch_statuses(plan, journal))
    return {"command": phase, "dry_run": dry_run, "exit_code": result.exit_code,
            "outcomes": [{"batch": o.batch, "status": o.status, "until": o.until, "message": o.message,
                          "failures": [str(f) for f in o.failures]} for o in result.outcomes],
            "api_calls": {"read": result.calls.get("read", 0), "write": result.calls.get("write", 0)},
            "state": state}


@click.command("execute")
@plan_argument
@profile_option
@click.option("--batch", "batch", type=click.IntRange(min=1), default=None, help="The batch to apply (1 is the pilot).")
@click.option("--all", "all_batches", is_flag=True,
              help="Apply every batch, in order; while one waits, the next goes on.")
@click.option("--dry-run", is_flag=True,
              help="Go through the same steps (reads included) with every write withheld; print each write as the "
                   "ExchangeOnlineManagement V3 / Microsoft.Graph cmdlet it stands for, in order. Nothing is changed.")
@yes_option
@wait_option
@click.option("--propagation-wait", type=click.FloatRange(min=0), default=8100.0, show_default=True,
              help="Seconds between a verified RBAC setup and the cut-over (Microsoft: 30 minutes to 2 hours; the "
                   "default adds a 15-minute margin).")
@token_option
@margin_option
@readback_option
@click.option("--no-cutover", is_flag=True,
              help="Leave each app's Entra SMTP.SendAsApp assignment in place. Only for tenants where a token with "
                   "that claim is served through RBAC: under the documented claim rule removing the legacy grants "
                   "without a cut-over cuts the app off.")
@concurrency_option
@cutover_profile_option
@json_option
def execute_command(plan_path: Path, profile: Path | None, batch: int | None, all_batches: bool, dry_run: bool,
                    yes: bool, wait: bool, propagation_wait: float, token_lifetime: float | None,
                    token_margin: float, readback_spacing: float, no_cutover: bool, concurrency: int,
                    cutover_profile: Path | None, as_json: bool) -> None:
    """Apply one batch of PLAN (or all of them) to the tenant, resumably.

    Steps, each reading before it writes and verifying after: preflight (plan hashes, drift, permissions,
    service-principal pointers) -> groups -> scopes -> role assignments -> verify -> propagation wait -> cut-over ->
    token-lifetime wait -> remove the legacy SendAs grants -> final verification. For an app whose Graph/EWS
    access the plan moves (mail_access.csv), the cut-over removes its Entra consents of the fenced permissions and
    the legacy step then removes its Application Access Policies (never before the consents are gone: the consent
    without its policy reaches every mailbox). The preflight runs `migrator
    doctor`'s checks first (a clean doctor.json that `migrator doctor` wrote for this plan within the hour is
    reused; the preflight writes none) and refuses on a blocking finding. Killed or stopped (Ctrl-C, or a file
    named PAUSE in the plan folder), the same command resumes. Before its first change it shows the tenant, the
    batch, its apps and the counts, and asks (--yes: no question).

    Exit: 0 done; 10 waiting (run the same command again after the time shown, or use --wait); 2 bad plan or
    input; 3 drift; 4 tenant error or missing permission; 5 another executor holds the plan; 6 no terminal to
    ask on and no --yes (nothing changed); 7 a blocking doctor finding (nothing changed); 11 items failed; 12
    stopped (Ctrl-C, PAUSE file, or "n" at the question); 13 the cut-over was handed over to a privileged admin
    (see --cutover-profile).

    Permissions: --profile needs Exchange.ManageAsApp, the Exchange Administrator role and Graph
    Application.Read.All; only the cut-over needs AppRoleAssignment.ReadWrite.All (--cutover-profile).
    """
    from migrator.executor.context import ExecSettings
    from migrator.executor.session import RunOptions

    if (batch is None) == (not all_batches):
        raise InputError("give exactly one of --batch N or --all")
    settings = ExecSettings(propagation_wait=propagation_wait, token_lifetime=token_lifetime,
                            token_margin=token_margin, readback_spacing=readback_spacing, cutover=not no_cutover,
                            concurrency=concurrency)
    options = RunOptions(settings, dry_run=dry_run, wait=wait, confirm=None if yes else ask,
                         cutover_profile=cutover_profile, doctor=True)
    _run(plan_path, profile, phase="execute", batches=None if all_batches else [int(batch or 0)], options=options,
         graph_write=False, as_json=as_json)


@click.command("rollback")
@plan_argument
@profile_option
@click.option("--batch", "batch", type=click.IntRange(min=1), required=True, help="The batch to undo.")
@click.option("--dry-run", is_flag=True,
              help="Print each change the rollback would make as the PowerShell cmdlet it stands for; change nothing.")
@yes_option
@wait_option
@click.option("--grant-wait", type=click.FloatRange(min=0), default=6300.0, show_default=True,
              help="Seconds between restoring the legacy grants and re-granting the claim, so the restored grants "
                   "apply first (removals are reported to take up to about 90 minutes; the default adds 15).")
@click.option("--policy-wait", type=click.FloatRange(min=0), default=8100.0, show_default=True,
              help="Seconds between restoring Application Access Policies and re-granting the Graph/EWS consents "
                   "they fence, so the policies apply first (Microsoft: can take longer than an hour; the default is "
                   "2 hours plus 15 minutes).")
@token_option
@margin_option
@readback_option
@click.option("--from-undo-log", is_flag=True,
              help="journal.db is gone or damaged: rebuild it from undo-log.jsonl in the plan folder (the prior "
                   "state of every removal, every object the tool created, every batch's state), keep the damaged "
                   "file aside, then roll back as usual.")
@cutover_profile_option
@json_option
def rollback_command(plan_path: Path, profile: Path | None, batch: int, dry_run: bool, yes: bool, wait: bool,
                     grant_wait: float, policy_wait: float, token_lifetime: float | None, token_margin: float,
                     readback_spacing: float, from_undo_log: bool, cutover_profile: Path | None, as_json: bool) -> None:
    """Undo one batch from the journal, in reverse and without a gap.

    Restores the removed legacy grants (and Application Access Policies) first, waits for them to apply, re-grants
    the Entra SMTP.SendAsApp assignment (and the Graph/EWS consents; read back twice), waits the token lifetime,
    then removes the batch's role assignments, scopes and the groups the tool created that no other applied batch
    uses. Resumable like execute. It says what it cannot restore exactly. Before its first change it shows the
    tenant, the batch, its apps and what it will restore and remove, and asks (--yes: no question). Exit codes as
    for execute (10: waiting for the restored grants or policies to apply, or out the token lifetime).

    A change plan of `migrator grant`/`revoke` (--batch 1) is undone the same way: the members and assignments it
    removed are restored, then (after the propagation wait when an assignment was restored) the members it added and
    the groups, scopes and assignments it created are removed.
    """
    from migrator.executor.context import ExecSettings
    from migrator.executor.session import RunOptions

    if from_undo_log and dry_run:
        raise InputError("--from-undo-log rebuilds journal.db, so it cannot run with --dry-run")
    settings = ExecSettings(token_lifetime=token_lifetime, token_margin=token_margin,
                            readback_spacing=readback_spacing, grant_apply_wait=grant_wait,
                            policy_apply_wait=policy_wait)
    options = RunOptions(settings, dry_run=dry_run, wait=wait, confirm=None if yes else ask,
                         from_undo_log=from_undo_log, cutover_profile=cutover_profile)
    _run(plan_path, profile, phase="rollback", batches=[batch], options=options, graph_write=False, as_json=as_json)


@click.command("status")
@plan_argument
@json_option
@profile_option
def status_command(plan_path: Path, as_json: bool, profile: Path | None) -> None:
    """Show, per batch and step, what is done, what waits and until when, and what failed.

    Reads the journal only, read-only (no tenant calls). Per batch and per app: planned, running, interrupted,
    waiting until T, ready (the wait ended), failed, handed over, applied or rolled back, with the SendAs grants
    migrated and still on legacy grants; warns about cut-over apps whose app registration still requests
    SMTP.SendAsApp. With --profile it also reads Microsoft Graph: a cut-over app whose SMTP.SendAsApp claim has come
    back (a later admin consent) is reported, with exit 11. Exit codes for scripts: 0 every batch applied or rolled
    back; 10 a batch is waiting (run the command again after the time shown); 11 a step failed or a claim came
    back, and needs attention; 12 work remains (planned, interrupted, ready, or running now); 13 a batch is handed
    over to a privileged admin (run the handover-batch-N-<step>.ps1 in the plan folder, then the same command
    again).
    """
    from migrator.executor.journal import Journal
    from migrator.executor.status import as_json as to_json
    from migrator.executor.status import batch_statuses, claims_back, exit_code, render, undo_log_warnings
    from migrator.planner.plan import load_plan

    plan = load_plan(plan_path)
    back: list[str] = []
    with Journal(plan_path, readonly=True) as journal:
        statuses = batch_statuses(plan, journal)
        warnings = undo_log_warnings(plan_path, journal)
        if profile is not None:
            from migrator.executor import Connection

            back = claims_back(plan, journal, Connection(profile).graph)
    code = 11 if back else exit_code(statuses)
    if as_json:
        click.echo(json.dumps({**to_json(plan, statuses), "warnings": warnings, "claims_back": back,
                               "exit_code": code}, indent=2))
    else:
        for warning in warnings:
            click.secho(f"Warning: {warning}", fg="yellow", err=True)
        change = plan.meta.get("change")  # a `migrator grant`/`revoke` change plan: say what it changes
        click.echo(render(statuses, change=change if isinstance(change, dict) else None))
        for warning in back:
            click.secho(f"warning: {warning}", fg="red")
    sys.exit(code)


commands = [execute_command, rollback_command, status_command]
