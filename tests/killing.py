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


def chaos_faults():
    """The chaos runs' fault profile: every random fault the sandbox can inject, NUL-byte 403s (transient, and half
    of the genuine ones) included, a Graph bucket of its own that the cut-over's reads and writes can run dry, and
    read-after-write lag on every admin read (0.1-0.9 s of real time: a run killed right after a write is resumed
    while its reads still lag)."""
    from migrator.sandbox.faults import FaultProfile

    return FaultProfile(name="chaos-test", latency_mean_ms=2, latency_jitter_ms=2, throttle_rate=80,
                        throttle_burst=15, graph_throttle_rate=20, graph_throttle_burst=5,
                        throttle_no_retry_after=0.3, throttle_concurrency_text=0.2, transient_rate=0.03,
                        drop_rate=0.01, nul_403_rate=0.03, forbidden_nul_share=0.5, post_commit_drop_rate=0.04,
                        read_lag_s=0.5, read_lag_jitter_s=0.4)


# What a failed item says when a transient fault outlived its retries (exchange/http.py): never acceptable in a
# chaos run (issue 11).
TRANSIENT_MARKS = ("throttled after", "server error after", "cannot reach", "refused the cmdlet",
                   "HTTP 403 access denied (", "inside $batch still")
MAX_RUNS = 40


def run_killed_at_random(args: list[str], rng, kill_window: tuple[float, float], deadline: float, *,
                         after_writes: Path | None = None, nth_range: tuple[int, int] = (1, 3)) -> int | None:
    """Run `migrator <args>`; SIGKILL it at a random moment in kill_window (None if killed, else its exit code).
    With after_writes (a plan folder), the window starts when this run has recorded its nth journal action.
    An exit 11 caused by a transient fault that outlived its retries fails the caller (AssertionError)."""
    delay = rng.uniform(*kill_window)
    nth = rng.randint(*nth_range)
    code, err = run_killed(args, delay=delay, deadline=deadline,
                           after_actions=(after_writes, nth) if after_writes else None)
    marks = [m for m in TRANSIENT_MARKS if m in err]
    assert not (code == 11 and marks), f"exit 11 from a transient fault ({marks}):\n{err[-3000:]}"
    return code


def last_action(folder: Path) -> str:
    """`step/kind status` of the journal action changed last in the folder ("" when none can be read): where a
    killed run was."""
    db = folder / "journal.db"
    if not db.exists():
        return ""
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1) as con:
            row = con.execute("SELECT step, kind, status FROM actions ORDER BY updated_at DESC, id DESC LIMIT 1")\
                .fetchone()
    except sqlite3.Error:
        return ""
    return f"{row[0]}/{row[1]} {row[2]}" if row else ""


def until_done(args: list[str], rng, *, kill_window=(0.8, 5.0), deadline: float, after_writes: Path | None = None,
               nth_range: tuple[int, int] = (1, 3), max_runs: int = MAX_RUNS, max_kills: int | None = None,
               first_kill_now: bool = False, kill_points: list[str] | None = None) -> tuple[int, int]:
    """Re-run `migrator <args>` until it exits 0, killing the first half of the runs at random (at most `max_kills`
    of them); returns (runs, kills). The last attempts (and any run starting within 20 s of the deadline) are left
    alone so it can end. `first_kill_now` (with after_writes): the first run is killed as soon as it has recorded
    its first journal action, so every loop has at least one kill mid-change whatever the randomness.
    `kill_points` (with after_writes) receives, per kill, the journal action changed last (last_action).
    Exits other than 0, 11 and 12 fail the caller."""
    kills = 0
    for run in range(1, max_runs + 1):
        killing = run <= max_runs // 2 and time.monotonic() < deadline - 20 and (max_kills is None or
                                                                                 kills < max_kills)
        window, nth = (kill_window, nth_range) if killing else ((1e9, 1e9), nth_range)
        if run == 1 and first_kill_now and after_writes is not None:
            window, nth = (0.0, 0.0), (1, 1)
        code = run_killed_at_random(args, rng, window, deadline, after_writes=after_writes, nth_range=nth)
        if code is None:
            kills += 1
            if kill_points is not None and after_writes is not None:
                kill_points.append(last_action(after_writes))
            continue
        if code == 0:
            return run, kills
        assert code in (11, 12), f"unexpected exit {code} from migrator {' '.join(args)}"
    raise AssertionError(f"did not finish in {max_runs} runs")
