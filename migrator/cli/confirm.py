"""The question `execute` and `rollback` ask before their first change, and the refusal when nobody can answer.

Shown on stderr (stdout stays clean for `--json`): the tenant, the batch, its apps by name, the counts of what will
be created and removed, and the steps to run. Without a terminal on stdin and without `--yes` the command refuses
(exit 6) instead of guessing: a scheduled job must say `--yes` explicitly.
"""

from __future__ import annotations

import sys

import click

from migrator.errors import MigratorError
from migrator.exitcodes import ExitCode

EXIT_NEEDS_CONFIRMATION = ExitCode.NEEDS_YES


class ConfirmationNeeded(MigratorError):
    """A change needs a yes, and there is no terminal to ask on and no --yes."""

    exit_code = EXIT_NEEDS_CONFIRMATION


def stdin_is_terminal() -> bool:
    """Whether a person can answer on stdin (tests replace this to act as a terminal)."""
    return sys.stdin is not None and sys.stdin.isatty()


def ask(change) -> bool:
    """Show `change` (a review.PendingChange) and ask; raise ConfirmationNeeded when no one can answer."""
    click.echo(change.text(), err=True)
    command = "rollback" if change.phase == "rollback" else "execute"
    if not stdin_is_terminal():
        raise ConfirmationNeeded(f"{command} changes the tenant and there is no terminal to ask on: nothing was "
                                 "changed. Review the changes above (or run with --dry-run) and run the same command "
                                 "with --yes to go ahead")
    question = f"Roll back batch {change.batch}?" if change.phase == "rollback" else f"Apply batch {change.batch}?"
    return click.confirm(question, default=False, err=True)
