"""Errors a user is meant to read. The CLI prints them without a traceback and exits non-zero.

Every message names the object at fault: the file, row and field of bad input, or the tenant object.
Messages never contain secrets (see exchange/redact.py for the helpers that strip them).
"""

from __future__ import annotations

from migrator.exitcodes import ExitCode


class MigratorError(Exception):
    """Base class: a failure explained to the user. exit_code is what the CLI returns."""

    exit_code: int = ExitCode.CHECK_FAILED


class InputError(MigratorError):
    """Bad input: a malformed CSV, an unknown trustee, an ambiguous name, a tampered plan."""

    exit_code = ExitCode.BAD_INPUT

    def __init__(self, message: str, *, path: str | None = None, row: int | None = None,
                 field: str | None = None, value: str | None = None) -> None:
        self.path, self.row, self.field, self.value = path, row, field, value
        where = []
        if path:
            where.append(str(path))
        if row is not None:
            where.append(f"row {row}")
        if field:
            where.append(f"field {field!r}")
        if value is not None:
            where.append(f"value {value!r}")
        prefix = ", ".join(where)
        super().__init__(f"{prefix}: {message}" if prefix else message)


class PlanError(InputError):
    """A plan that is not exact, does not match its hashes, or does not fit the tenant."""


class DriftError(MigratorError):
    """The tenant changed since the plan was made: the run stops before writing."""

    exit_code = ExitCode.DRIFT


class TenantError(MigratorError):
    """The tenant could not be read or written (after retries): never taken to mean 'absent'."""

    exit_code = ExitCode.TENANT
