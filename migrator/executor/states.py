"""The states the journal records and the outcomes a run reports, as named values.

StrEnums: each member equals its text, so rows read back from journal.db (plain strings) compare equal to them
and they are written as their text.
"""

from __future__ import annotations

import enum


class BatchState(enum.StrEnum):
    """A batch's state in the journal (batches.state)."""

    NEW = "new"  # never executed (or rolled back and executed again)
    EXECUTING = "executing"
    DONE = "done"
    ROLLING_BACK = "rolling_back"
    ROLLED_BACK = "rolled_back"


class StepStatus(enum.StrEnum):
    """A step's status in the journal (steps.status)."""

    PENDING = "pending"  # not reached yet (status shows it; never written)
    RUNNING = "running"
    WAITING = "waiting"  # a wait step whose time has not come (not_before)
    DONE = "done"
    FAILED = "failed"
    HANDOVER = "handover"  # handed over to a privileged admin (a script in the plan folder)


class Outcome(enum.StrEnum):
    """What one run did with a batch (BatchOutcome.status)."""

    DONE = "done"
    WAITING = "waiting"  # stopped at a wait: run again after `until`
    FAILED = "failed"  # items failed: resumable, or rolled back
    STOPPED = "stopped"  # Ctrl-C, the pause file, or not confirmed
    SKIPPED = "skipped"  # nothing to do (already done / nothing to roll back)
    HANDOVER = "handover"  # a step waits for a privileged admin to run the handover script


# The outcomes that leave a batch with nothing more to do.
FINISHED = (Outcome.DONE, Outcome.SKIPPED)
