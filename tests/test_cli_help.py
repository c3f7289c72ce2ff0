"""Every command and option has help text (sqlite-utils style): a command without docs fails here."""

from __future__ import annotations

import click
import pytest
from click.testing import CliRunner

from migrator.cli import main


def _walk(group: click.Group, prefix: tuple[str, ...] = ()):
    yield prefix, group
    if isinstance(group, click.Group):
        for name, command in sorted(group.commands.items()):
            yield from _walk(command, prefix + (name,))


COMMANDS = list(_walk(main))


@pytest.mark.parametrize("path,command", COMMANDS, ids=[" ".join(p) or "migrator" for p, _ in COMMANDS])
def test_command_has_help(path, command):
    assert command.help and command.help.strip(), f"`migrator {' '.join(path)}` has no help text"
    for param in command.params:
        if isinstance(param, click.Option) and param.name not in ("help", "version"):
            assert param.help, f"option {param.opts} of `migrator {' '.join(path)}` has no help text"
    result = CliRunner().invoke(main, [*path, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage:" in result.output


def test_top_level_commands_are_listed_in_workflow_order():
    from migrator.cli import WORKFLOW_ORDER

    out = CliRunner().invoke(main, ["--help"]).output
    listed = [line.split()[0] for line in out.split("Commands:", 1)[1].splitlines() if line.startswith("  ")]
    expected = [name for name in WORKFLOW_ORDER if name in main.commands]
    assert listed[:len(expected)] == expected
    assert listed[:5] == ["inventory", "plan", "show", "execute", "status"] or listed[:5] == [
        "inventory", "plan", "show", "doctor", "execute"]
