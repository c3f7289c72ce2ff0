"""`migrator demo` (the whole job against the sandbox, in one command) and `migrator rehearse PLAN` (a dress
rehearsal of a plan against a sandbox copy of its inventory). Parse, call migrator.demo / migrator.rehearse,
render."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from migrator.cli.options import json_option
from migrator.errors import MigratorError
from migrator.executor.states import FINISHED
from migrator.exitcodes import ExitCode


@click.command("demo")
@click.option("--workdir", type=click.Path(file_okay=True, path_type=Path), default=None,
              help="Folder for the inventory, plan, journal and report (default: a new temporary folder, kept). "
                   "An existing folder must be empty or made by an earlier demo, which is replaced.")
@click.option("--seed", type=int, default=0, show_default=True,
              help="Seed of the sandbox's fault generator: the same seed gives the same faults.")
@click.option("--faults", type=click.Choice(["mild", "none", "chaos"]), default="mild", show_default=True,
              help="Faults the sandbox injects: throttling, transient errors, dropped connections (chaos: more, and "
                   "writes applied whose answer is lost).")
@click.option("--keep", is_flag=True,
              help="After the story, keep the sandbox serving (its profile stays valid) until Ctrl-C, to try "
                   "`migrator status`, `rollback` or `report` on the demo's plan.")
def demo_command(workdir: Path | None, seed: int, faults: str, keep: bool) -> None:
    """Run the whole migration against the bundled sandbox tenant, in about a minute.

    Starts the sandbox (the Contoso sample: 300 mailboxes, 12 apps with grants, plus Graph/EWS apps fenced by
    Application Access Policies) with mild faults and delays of a few seconds, then: live inventory -> plan ->
    pilot batch -> the other batches (one moves a Graph app off its RestrictAccess policy) -> a batch that fails
    mid-way and is rolled back -> a check of the sandbox's timeline (no access gap, no over-grant, per Graph/EWS
    permission too; the rolled-back apps on exactly their legacy grants; the DenyAccess and policy-less apps
    untouched) -> the report. Exit 0 when every check holds, 1 otherwise.
    """
    from migrator.demo import run_demo, serve_until_interrupted

    result = run_demo(workdir=workdir, seed=seed, faults=faults, keep=serve_until_interrupted if keep else None)
    click.echo("")
    failed = [(what, detail) for what, ok, detail in result.checks if not ok]
    if failed:
        for what, detail in failed:
            click.secho(f"FAILED: {what}: {detail}", fg="red", err=True)
        click.echo(f"Report (with the failures): {result.report}")
        raise MigratorError(f"demo: {len(failed)} of {len(result.checks)} check(s) failed")
    click.secho(f"All {len(result.checks)} checks passed in {result.seconds:.0f} s: a verified migration of batches "
                f"1-{result.failed_batch - 1} and a verified rollback of batch {result.failed_batch}."
                if result.failed_batch and result.failed_batch > 1 else
                f"All {len(result.checks)} checks passed in {result.seconds:.0f} s.", fg="green")
    click.echo(f"Plan and journal: {result.plan_dir}")
    click.echo(f"Report: {result.report}")


@click.command("rehearse")
@click.argument("plan_path", metavar="PLAN", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--inventory", "inventory", type=click.Path(exists=True, path_type=Path), default=None,
              help="The plan's source inventory folder (or grants CSV), if not where plan.json says; its SHA-256 "
                   "must match the one plan.json recorded.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the sandbox's fault generator.")
@click.option("--faults", default="mild", show_default=True,
              help="Faults to inject: none, mild, chaos, or a JSON/TOML fault profile (see `migrator sandbox "
                   "serve`). Replication delay is always on.")
@click.option("--claim-rule", "claim_rule", type=click.Choice(["documented", "union", "both"]), default="both",
              show_default=True,
              help="How the sandbox's data plane treats a token carrying SMTP.SendAsApp: documented (it needs the "
                   "SendAs grant), union (either path serves it) or both (one rehearsal each).")
@json_option
def rehearse_command(plan_path: Path, inventory: Path | None, seed: int, faults: str, claim_rule: str,
                     as_json: bool) -> None:
    """Dress-rehearse PLAN against a sandbox copy of its tenant, with faults, and check the invariants.

    The plan's inventory becomes a sandbox tenant (apps are given the Entra SMTP.SendAsApp role, which an
    inventory does not record); every batch runs through the real executor and clients over HTTPS, resuming after
    failed items as an admin would, with the waits fast-forwarded on the sandbox's clock. Then the sandbox's
    timeline is checked: no access gap for any (app, mailbox) that had a grant, no over-grant for any other pair,
    and the tenant's end state equal to the plan's. The plan folder itself is not touched (the rehearsal runs on
    a copy, with its own journal). Exit 0 only when every rehearsal is clean; 1 when one is not; 2 bad plan.
    """
    from migrator.rehearse import CLAIM_RULES, rehearse

    rules = CLAIM_RULES if claim_rule == "both" else (claim_rule,)

    def started(rule: str) -> None:
        if not as_json:
            click.echo(f"Rehearsing {plan_path} under the {rule} claim rule (faults: {faults}, seed {seed})...",
                       err=True)

    def resumed(n: int, why: str) -> None:
        if not as_json:
            click.echo(f"  resumed ({n}): {why[:200]}", err=True)

    results = rehearse(plan_path, inventory=inventory, claim_rules=rules, seed=seed, faults=faults,
                       on_start=started, on_resume=resumed)
    clean = all(r.ok for r in results)
    if as_json:
        click.echo(json.dumps({"plan": str(plan_path), "ok": clean, "rehearsals": [r.to_dict() for r in results]},
                              indent=2))
    else:
        click.echo(render(results))
    sys.exit(ExitCode.OK if clean else ExitCode.CHECK_FAILED)


def _interval(i, start: float) -> str:
    end = "the end of the record" if i.end is None else f"{i.end - start:.0f} s"
    return f"app {i.app_id} on {i.mailbox}: {i.reason} (sandbox time {i.start - start:.0f} s to {end})"


def render(results) -> str:
    lines = []
    notes = results[0].notes if results else []
    if notes:
        lines.append("The sandbox tenant is the plan's inventory; where the inventory is silent it assumes:")
        lines += [f"  - {note}" for note in notes]
    for r in results:
        head = "CLEAN" if r.ok else "NOT CLEAN"
        batches = ", ".join(f"{b} {s}" for b, s in sorted(r.statuses.items()))
        lines.append(f"Claim rule {r.claim_rule}: {head}")
        lines.append(f"  batches:      {batches}")
        lines.append(f"  access gaps:  {len(r.gaps)}")
        lines.append(f"  over-grants:  {len(r.overgrants)}")
        if r.mail_followed:
            lines.append(f"  Graph/EWS:    {len(r.mail_gaps)} gap(s), {len(r.mail_overgrants)} over-grant(s), per "
                         "permission")
        lines.append(f"  end state:    {'as planned' if not r.end_state else f'{len(r.end_state)} difference(s)'}")
        if r.smtp:
            lines.append(f"  SMTP sends:   {r.smtp['probes']} sign-ins ({r.smtp['granted']} accepted, "
                         f"{r.smtp['denied']} refused): {len(r.smtp['gaps'])} gap(s), "
                         f"{len(r.smtp['overgrants'])} over-grant(s), {r.smtp['disagreements']} answer(s) unlike "
                         f"the timeline, {len(r.smtp['errors'])} error(s)")
            for app_id, mailbox, _ in r.smtp["gaps"][:5] + r.smtp["overgrants"][:5]:
                lines.append(f"  SMTP: {app_id} as {mailbox} answered unlike its original access")
        faults = ", ".join(f"{n} {k}" for k, n in sorted(r.faults.items()) if n) or "none fired"
        lines.append(f"  faults:       {faults}; {r.resumes} resume(s); {r.calls.get('read', 0)} reads, "
                     f"{r.calls.get('write', 0)} writes; {r.seconds:.1f} s")
        for what, items in (("gap", r.gaps), ("over-grant", r.overgrants), ("Graph/EWS gap", r.mail_gaps),
                            ("Graph/EWS over-grant", r.mail_overgrants)):
            for i in items[:10]:
                lines.append(f"  {what}: {_interval(i, r.start)}")
            if len(items) > 10:
                lines.append(f"  ... and {len(items) - 10} more {what}s")
        for problem in r.end_state[:10]:
            lines.append(f"  end state: {problem}")
        for reason in r.problems[-3:] if not all(s in FINISHED for s in r.statuses.values()) else ():
            lines.append(f"  stopped on: {reason[:300]}")
    return "\n".join(lines)


commands = [demo_command, rehearse_command]
