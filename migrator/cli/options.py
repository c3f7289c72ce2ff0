"""Options used by more than one command, defined once (pip-tools style)."""

from __future__ import annotations

from pathlib import Path

import click

profile_option = click.option(
    "--profile",
    "profile",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    envvar="MIGRATOR_PROFILE",
    help="Connection profile (TOML) of the tenant; `migrator sandbox serve` writes one. Env: MIGRATOR_PROFILE.",
)

force_option = click.option("--force", is_flag=True, help="Replace the output folder if it exists.")

json_option = click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON instead of text.")
