"""Every exit code a migrator command returns, in one table.

The errors (errors.py and the executor's), the CLI, `migrator status` and the PowerShell batch script take their
codes from here; the README's "Exit codes" paragraph lists the same table (a test compares them).
"""

from __future__ import annotations

import enum


class ExitCode(enum.IntEnum):
    OK = 0  # done
    CHECK_FAILED = 1  # a check failed (demo, rehearse); any other MigratorError
    BAD_INPUT = 2  # bad input or plan (click's usage errors exit 2 too)
    DRIFT = 3  # the tenant changed since the plan was made
    TENANT = 4  # the tenant could not be read or written, or a permission is missing
    LOCKED = 5  # another executor holds the plan's journal
    NEEDS_YES = 6  # a change needs a yes, and there is no terminal and no --yes
    DOCTOR_BLOCKED = 7  # a blocking `doctor` finding (execute's preflight, `migrator doctor`)
    WAITING = 10  # a batch waits for its time (execute, rollback, status, the PowerShell batch script)
    ITEMS_FAILED = 11  # items failed; the batch is resumable
    INCOMPLETE = 12  # stopped (Ctrl-C, pause file, "n", disk full, read-only plan folder); status: work remains
    HANDOVER = 13  # a step is handed over to a privileged admin (handover-batch-N-*.ps1 in the plan folder)


# The README's wording of each code, in order (tests/test_exitcodes.py checks the README says exactly this).
README_TEXT: dict[ExitCode, str] = {
    ExitCode.OK: "done",
    ExitCode.CHECK_FAILED: "a check failed (demo, rehearse)",
    ExitCode.BAD_INPUT: "bad input or plan",
    ExitCode.DRIFT: "drift",
    ExitCode.TENANT: "tenant error or missing permission",
    ExitCode.LOCKED: "another executor holds the plan",
    ExitCode.NEEDS_YES: "a change needs a yes and there is no terminal and no `--yes`",
    ExitCode.DOCTOR_BLOCKED: "a blocking `doctor` finding (nothing written)",
    ExitCode.WAITING: "waiting (run the same command again after the time shown; also `migrator status` and the "
                      "PowerShell batch script)",
    ExitCode.ITEMS_FAILED: "items failed (the batch is resumable; `migrator status --profile`: also a claim that "
                           "came back)",
    ExitCode.INCOMPLETE: "stopped (Ctrl-C, `PAUSE` file, \"n\", also: disk full, read-only plan folder; `migrator "
                         "status`: work remains)",
    ExitCode.HANDOVER: "handed over to a privileged admin (run the `handover-batch-N-*.ps1` in the plan folder, "
                       "then the same command)",
}


def readme_line() -> str:
    """The README's exit-code list, one sentence: "Exit codes: 0 done ...; 1 ...; ... ."."""
    return "Exit codes: " + "; ".join(f"{int(code)} {text}" for code, text in README_TEXT.items()) + "."
