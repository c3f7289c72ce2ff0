"""`migrator verify-smtp`: sign in over SMTP as a batch's apps (those whose credentials you hold) and compare."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from migrator.cli.options import json_option, profile_option
from migrator.errors import InputError, MigratorError


@click.command("verify-smtp")
@click.argument("plan_path", metavar="PLAN", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--batch", type=click.IntRange(min=1), required=True, help="The batch whose apps to probe.")
@profile_option
@click.option("--app-credentials", "creds_path", required=True,
              type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="TOML file naming, per app ([[app]] app_id = ...), the environment variable or file that holds "
                   "its secret, or its certificate file. Never the secret itself.")
@click.option("--per-app", type=click.IntRange(min=1), default=5, show_default=True,
              help="Mailboxes probed per app inside its set, and as many outside it.")
@click.option("--retry-for", type=click.FloatRange(min=0), default=0.0, show_default=True,
              help="Seconds to keep retrying an in-set mailbox refused with 535 5.7.3 (a change not yet "
                   "propagated looks exactly like a denial; Microsoft says up to 2 h, 7200).")
@click.option("--retry-every", type=click.FloatRange(min=1), default=60.0, show_default=True,
              help="Seconds between those retries.")
@json_option
def verify_smtp(plan_path: Path, batch: int, profile: Path | None, creds_path: Path, per_app: int,
                retry_for: float, retry_every: float, as_json: bool) -> None:
    """Probe SMTP AUTH as the apps of a batch, for the apps whose own credentials you hold (your relays).

    For each such app: STARTTLS, AUTH XOAUTH2 and MAIL FROM + RSET (nothing is sent) as a sample of the mailboxes
    the plan says it reaches (expected 235) and of mailboxes it must not reach (expected 535). Read-only; runs
    only when asked. Exit 0 when every pair answered as expected, 1 when one did not (a gap, an over-grant,
    SMTP AUTH disabled, or an error), 2 for bad input.
    """
    from migrator.exchange.profile import load_profile
    from migrator.planner.plan import load_plan
    from migrator.smtp.credentials import load_app_credentials
    from migrator.smtp.verify import OK, run_verify

    if profile is None:
        raise InputError("--profile is required (the tenant's connection profile; it names the SMTP host)")
    plan = load_plan(plan_path)
    prof = load_profile(profile)
    creds = load_app_credentials(creds_path)
    batch_row = next((b for b in plan.batches if b.number == batch), None)
    if batch_row is None:
        raise InputError(f"the plan has no batch {batch} (it has {len(plan.batches)})", path=str(plan_path))
    usable = sorted(set(creds) & set(batch_row.apps))
    if not usable:
        raise InputError(f"no app of batch {batch} has credentials in this file", path=str(creds_path))

    def show(result) -> None:
        if not as_json:
            p = result.pair
            click.echo(f"  {result.verdict:<18} {p.app_name[:28]:<28} {p.mailbox:<40} "
                       f"{'in set' if p.expected else 'out of set':<10} {result.answer.code} "
                       f"{result.answer.enhanced} ({result.attempts} tr{'y' if result.attempts == 1 else 'ies'})",
                       err=False)

    if not as_json:
        click.echo(f"Probing SMTP AUTH at {prof.smtp_host}:{prof.smtp_port} for {len(usable)} app(s) of batch "
                   f"{batch} (nothing is sent)")
    results = run_verify(plan, batch, prof, creds, per_app=per_app, retry_for=retry_for, retry_every=retry_every,
                         progress=show)
    bad = [r for r in results if r.verdict != OK]
    if as_json:
        json.dump({"batch": batch, "smtp": f"{prof.smtp_host}:{prof.smtp_port}", "ok": not bad,
                   "pairs": [r.to_dict() for r in results]}, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        click.echo(f"{len(results) - len(bad)} of {len(results)} pairs answered as the plan says.")
    if bad:
        kinds = sorted({r.verdict for r in bad})
        raise MigratorError(f"{len(bad)} pair(s) did not answer as expected: {', '.join(kinds)}")


commands = [verify_smtp]
