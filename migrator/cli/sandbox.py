"""`migrator sandbox serve`: run the bundled sandbox tenant (Exchange Online + Entra + Graph over HTTPS)."""

from __future__ import annotations

import json
import logging
import signal
import sys
import threading
from pathlib import Path
from typing import Any

import click

from migrator.sandbox.settings import SandboxSettings

_DEFAULTS = SandboxSettings()


@click.group("sandbox")
def sandbox() -> None:
    """The sandbox tenant: an Exchange Online, Entra ID and Graph emulator on 127.0.0.1 for demos, tests and
    rehearsals. The tool talks to it exactly as it talks to Microsoft."""


@sandbox.command("serve")
@click.option("--tenant", "fixture", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Tenant fixture (JSON, see docs/INTERNALS.md §2). Default: the bundled sample tenant, Contoso.")
@click.option("--seed", type=int, default=0, show_default=True,
              help="Seed of the fault generator: the same seed and calls give the same faults.")
@click.option("--faults", default="none", show_default=True,
              help="Fault profile: none, mild, chaos, or a JSON/TOML file of FaultProfile settings.")
@click.option("--port", type=click.IntRange(0, 65535), default=0, show_default=True,
              help="Port on 127.0.0.1; 0 picks a free one (read it from the ready line).")
@click.option("--smtp-port", type=click.IntRange(0, 65535), default=0, show_default=True,
              help="Port of the SMTP submission endpoint (STARTTLS + AUTH XOAUTH2) on 127.0.0.1; 0 picks a free "
                   "one (smtp_port in the ready line and the profile).")
@click.option("--run-dir", type=click.Path(file_okay=False, path_type=Path),
              help="Folder for ca.pem, the connection profile and the 0600 secret file. Default: a temporary "
                   "folder removed on exit.")
@click.option("--propagation-delay", type=click.FloatRange(min=0),
              help="Seconds before RBAC changes reach the data plane (Microsoft: 30 min to 2 h). "
                   f"Default: {_DEFAULTS.propagation_delay:g}.")
@click.option("--token-lifetime", type=click.FloatRange(min=1),
              help=f"Lifetime of the access tokens issued to the apps, in seconds (Entra: 60-90 min). "
                   f"Default: {_DEFAULTS.token_lifetime:g}.")
@click.option("--admin-token-lifetime", type=click.FloatRange(min=1),
              help="Lifetime, in seconds, of the tokens issued to the admin app (the migrator's own client); "
                   "--token-lifetime covers the other apps' tokens, whose SMTP.SendAsApp claim the data plane "
                   f"follows. Default: {_DEFAULTS.admin_token_lifetime:g}.")
@click.option("--claim-rule", type=click.Choice(["documented", "union"]),
              help="How the data plane treats a token with the SMTP.SendAsApp claim: documented (needs the SendAs "
                   f"grant) or union (either path works). Default: {_DEFAULTS.claim_rule}.")
@click.option("--replication-delay", type=click.FloatRange(min=0),
              help="Seconds a newly created group stays invisible to Get-* cmdlets (directory replication). "
                   f"Default: {_DEFAULTS.replication_delay:g}.")
@click.option("--access-policy-delay", type=click.FloatRange(min=0),
              help="Seconds before Graph/EWS calls see an Application Access Policy change (Microsoft: can take "
                   "longer than an hour; Test-ApplicationAccessPolicy sees it at once). "
                   f"Default: {_DEFAULTS.access_policy_delay:g}.")
@click.option("--least-privilege", is_flag=True,
              help="Split the admin app: `profile` lacks Graph AppRoleAssignment.ReadWrite.All (the run's least "
                   "privilege), a second app holding only that and Application.Read.All is served as "
                   "`cutover_profile` (for execute/rollback --cutover-profile).")
@click.option("-v", "--verbose", is_flag=True, help="Log every request line to stderr (never headers or bodies).")
def serve(fixture: Path | None, seed: int, faults: str, port: int, smtp_port: int, run_dir: Path | None,
          propagation_delay: float | None, token_lifetime: float | None, admin_token_lifetime: float | None,
          claim_rule: str | None, replication_delay: float | None, access_policy_delay: float | None,
          least_privilege: bool, verbose: bool) -> None:
    """Serve a sandbox tenant until SIGTERM or SIGINT.

    Prints one JSON line on stdout once ready, with authority, exchange_url, graph_url, ca_bundle, tenant_id,
    client_id, client_secret, profile (a connection profile for --profile), smtp_host and smtp_port (SMTP
    submission with STARTTLS and AUTH XOAUTH2, answered from the tenant's data plane), and cutover_profile when the
    tenant has a second admin app (--least-privilege, or a fixture with `cutover_admin`). The line holds the admin
    app's secret: treat stdout as sensitive.
    """
    from migrator.sandbox.server import start_sandbox

    logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="sandbox: %(message)s")
    if verbose:
        logging.getLogger("migrator.sandbox").setLevel(logging.DEBUG)
    overrides: dict[str, Any] = {"propagation_delay": propagation_delay, "token_lifetime": token_lifetime,
                 "admin_token_lifetime": admin_token_lifetime, "claim_rule": claim_rule,
                 "replication_delay": replication_delay, "access_policy_delay": access_policy_delay}
    settings = SandboxSettings(**{k: v for k, v in overrides.items() if v is not None})
    stop = threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        sb = start_sandbox(fixture, seed=seed, faults=faults, settings=settings, port=port, run_dir=run_dir,
                           smtp_port=smtp_port, least_privilege=least_privilege)
        try:
            sys.stdout.write(json.dumps(sb.ready_line()) + "\n")
            sys.stdout.flush()
            while not stop.wait(0.5):
                pass
        finally:
            sb.stop()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    click.echo("sandbox stopped", err=True)


commands = [sandbox]
