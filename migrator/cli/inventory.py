"""`migrator inventory`: read the legacy grants into an inventory folder, or print the export script.

One source per run. Each source's core function is imported lazily inside its branch, so a new source (the live
`--profile` read) is one more option and one more branch.
"""

from __future__ import annotations

import json
from pathlib import Path

import click

from migrator.cli.options import force_option, json_option, profile_option

SOURCES = ("--from-exports", "--export-script", "--profile")


@click.command("inventory")
@click.option("--from-exports", "exports_dir", type=click.Path(file_okay=False, path_type=Path),
              help="Folder of PowerShell Export-Csv files (see --export-script). Each file is recognised by its "
                   "columns, whatever its name.")
@click.option("--export-script", is_flag=True,
              help="Print the PowerShell (ExchangeOnlineManagement V3) that produces the export files, and exit.")
@click.option("--out", type=click.Path(path_type=Path),
              help="Inventory folder to write, e.g. inventory/contoso. Written atomically: on any error nothing "
                   "is left there.")
@profile_option
@click.option("--fullaccess", type=click.Choice(["scan", "per-mailbox"]), default="scan", show_default=True,
              help="With --profile: how FullAccess is read. `scan` reads every mailbox's permissions in a few paged "
                   "calls (verified against per-mailbox answers for a sample); `per-mailbox` makes one call per "
                   "mailbox.")
@force_option
@click.option("--allow-unknown-trustees", is_flag=True,
              help="Skip and report permission rows whose trustee matches no service principal and no recipient, "
                   "instead of stopping with an error.")
@json_option
def inventory(exports_dir: Path | None, export_script: bool, out: Path | None, profile: Path | None,
              fullaccess: str, force: bool, allow_unknown_trustees: bool, as_json: bool) -> None:
    """Read the per-mailbox SendAs/FullAccess grants that apps hold into an inventory folder.

    Offline: run the script from `migrator inventory --export-script` in Exchange Online PowerShell, then
    `migrator inventory --from-exports DIR --out inventory/NAME`. Only grants held by service principals
    are kept; SELF, inherited, Deny, orphaned-SID, human-delegate and other-rights rows are counted and
    reported in the folder's manifest.json.

    Live: `migrator inventory --profile P --out inventory/NAME` reads the same from the tenant through the
    Exchange admin API and Graph (few paged calls, retries and throttling handled; API calls in the manifest).
    """
    ctx = click.get_current_context()
    if profile is not None and (exports_dir is not None or export_script) and \
            ctx.get_parameter_source("profile") is click.core.ParameterSource.ENVIRONMENT:
        profile = None  # MIGRATOR_PROFILE from the environment does not compete with an explicit source
    chosen = [name for name, on in zip(SOURCES, (exports_dir is not None, export_script, profile is not None)) if on]
    if len(chosen) != 1:
        raise click.UsageError(f"give exactly one of {', '.join(SOURCES)}"
                               + (f" (got {', '.join(chosen)})" if chosen else ""))
    if export_script:
        from migrator.inventory.export_script import export_script as script

        click.echo(script(), nl=False)
        return
    if out is None:
        raise click.UsageError("--out is required: the inventory folder to write, e.g. --out inventory/contoso")

    if profile is not None:  # live: read the tenant through its APIs (progress bar on stderr)
        from migrator.inventory.tenant import live_inventory

        live_inventory(profile, out, overwrite=force, fullaccess=fullaccess,
                       allow_unknown_trustees=allow_unknown_trustees)
        _report(out, as_json)
        return

    from migrator.inventory.exports import inventory_from_exports
    from migrator.inventory.store import write_inventory

    assert exports_dir is not None  # the one source left (checked above)
    inv = inventory_from_exports(exports_dir, allow_unknown_trustees=allow_unknown_trustees)
    write_inventory(inv, out, overwrite=force)
    _report(out, as_json)


def _report(out: Path, as_json: bool) -> None:
    """Summarise from the manifest just written, so the terminal shows exactly what the folder holds."""
    manifest = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    if as_json:
        click.echo(json.dumps({"out": str(out), "counts": manifest["counts"], "sources": manifest["sources"],
                               "skipped": manifest["skipped"]}, indent=2))
        return
    c = manifest["counts"]
    click.echo(f"Inventory written to {out}")
    for s in manifest.get("sources", []):
        if "file" in s:
            click.echo(f"  {s['file']:<28} {s.get('cmdlet', s['kind'])}, {s['rows']} rows")
        elif "tenant_id" in s:
            click.echo(f"  tenant {s['tenant_id']}: {sum(manifest.get('api_calls', {}).values())} API calls")
    click.echo(f"Grants to migrate: {c['grants_sendas']} SendAs + {c['grants_fullaccess']} FullAccess, held by "
               f"{c['apps']} apps")
    click.echo(f"Objects: {c['service_principals']} service principals, {c['mailboxes']} mailboxes, "
               f"{c['groups']} groups")
    skipped = [s for s in manifest.get("skipped", []) if s["count"]]
    if skipped:
        click.echo("Skipped rows (not migrated):")
        width = max(len(s["class"]) for s in skipped)
        for s in skipped:
            click.echo(f"  {s['class']:<{width}} {s['count']:>6}  {s['reason']}")
    idle = [s["class"] for s in manifest.get("skipped", []) if not s["count"]]
    if idle:
        click.echo(f"  (none: {', '.join(idle)})")


commands = [inventory]
