"""One exit-code table (migrator/exitcodes.py): the README lists it word for word, and the errors use it."""

from __future__ import annotations

import re
from pathlib import Path

from migrator import errors
from migrator.executor.context import Stopped
from migrator.executor.journal import JournalLocked
from migrator.executor.steps import StepFailed
from migrator.exitcodes import README_TEXT, ExitCode, readme_line

README = Path(__file__).resolve().parents[1] / "README.md"


def test_the_readme_lists_the_table():
    text = re.sub(r"\s+", " ", README.read_text(encoding="utf-8"))
    assert readme_line() in text
    assert set(README_TEXT) == set(ExitCode)


def test_each_error_exits_with_its_code_from_the_table():
    assert errors.MigratorError.exit_code == ExitCode.CHECK_FAILED
    assert errors.InputError.exit_code == errors.PlanError.exit_code == ExitCode.BAD_INPUT
    assert errors.DriftError.exit_code == ExitCode.DRIFT
    assert errors.TenantError.exit_code == ExitCode.TENANT
    assert JournalLocked.exit_code == ExitCode.LOCKED
    assert StepFailed.exit_code == ExitCode.ITEMS_FAILED
    assert Stopped.exit_code == ExitCode.INCOMPLETE
    assert len({int(c) for c in ExitCode}) == len(ExitCode)  # no two names share a number
