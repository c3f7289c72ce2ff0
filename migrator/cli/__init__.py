"""The `migrator` command: click commands only. Each module in this package parses options, calls the core
and renders the result; no migration logic lives here."""

from __future__ import annotations

import importlib
import sys

import click

from migrator import __version__
from migrator.errors import MigratorError

# Command modules, each exposing `commands` (a list of click commands). One module per area of the tool.
COMMAND_MODULES: tuple[str, ...] = (
    "migrator.cli.inventory",
    "migrator.cli.plan",
    "migrator.cli.report",
    "migrator.cli.sandbox",
    "migrator.cli.execute",
    "migrator.cli.doctor",
    "migrator.cli.smtp",
    "migrator.cli.audit",
    "migrator.cli.change",
    "migrator.cli.demo",
)


# The order `migrator --help` lists the commands in: the order of the job. Commands not named here follow.
WORKFLOW_ORDER: tuple[str, ...] = (
    "inventory", "plan", "show", "doctor", "execute", "status", "report", "rollback", "export-ps1",
    "verify-smtp", "rehearse", "demo", "sandbox",
)


class MigratorGroup(click.Group):
    """Turns MigratorError into a one-line message and its exit code, never a traceback; lists the commands in
    workflow order."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        names = list(self.commands)
        rank = {name: i for i, name in enumerate(WORKFLOW_ORDER)}
        return sorted(names, key=lambda n: (rank.get(n, len(rank)), names.index(n)))

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except MigratorError as exc:
            click.secho(f"Error: {exc}", fg="red", err=True)
            sys.exit(exc.exit_code)


@click.group(cls=MigratorGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="migrator")
def main() -> None:
    """Move Exchange Online per-mailbox SendAs grants held by apps to RBAC for Applications.

    The job in four steps: `inventory` reads the legacy grants, `plan` groups the mailboxes into the fewest
    exact groups and writes a plan to review, `execute` applies one batch at a time, `rollback` undoes one.
    """


for _name in COMMAND_MODULES:
    for _command in importlib.import_module(_name).commands:
        main.add_command(_command)
