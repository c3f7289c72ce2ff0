"""Run `migrator` as a subprocess and SIGKILL it at a chosen moment: the kill tests' one way of crashing a run."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def journal_actions(folder: Path) -> int:
    """Actions recorded in the folder's journal so far (0 while there is none or it cannot be read yet)."""
    db = folder / "journal.db"
    if not db.exists():
        return 0
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1) as con:
            return con.execute("SELECT count(*) FROM actions").fetchone()[0]
    except sqlite3.Error:
        return 0


def run_killed(args: list[str], *, delay: float, deadline: float,
               after_actions: tuple[Path, int] | None = None) -> tuple[int | None, str]:
    """Run `migrator <args>` and SIGKILL it `delay` s after it starts or, with after_actions=(folder, n), `delay` s
    after it has recorded n more journal actions in that folder; at `deadline` (monotonic) it is killed anyway.
    Returns (its exit code, or None when killed; its stderr)."""
    base = journal_actions(after_actions[0]) if after_actions else 0
    with tempfile.TemporaryFile() as err:  # a file, not a pipe: a long stderr cannot block the child
        proc = subprocess.Popen([sys.executable, "-m", "migrator", *args], stdout=subprocess.DEVNULL, stderr=err,
                                env=dict(os.environ, PYTHONUNBUFFERED="1"), start_new_session=True)
        kill_at = None if after_actions else time.monotonic() + delay
        try:
            while True:
                code = proc.poll()
                if code is not None:
                    err.seek(0)
                    return code, err.read().decode("utf-8", "replace")
                now = time.monotonic()
                if kill_at is None and after_actions and journal_actions(after_actions[0]) >= base + after_actions[1]:
                    kill_at = now + delay
                if (kill_at is not None and now >= kill_at) or now >= deadline:
                    proc.send_signal(signal.SIGKILL)
                    proc.wait(10)
                    return None, ""
                time.sleep(0.005)
        finally:
            if proc.poll() is None:
                proc.kill()
