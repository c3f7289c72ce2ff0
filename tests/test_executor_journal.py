"""The journal on its own: schema ledger, prior state kept on resume, the lock (and its release on SIGKILL)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest

from migrator.executor.journal import MIGRATIONS, Journal, JournalLocked


def test_migrations_are_recorded_once_and_wal_is_on_while_writing(tmp_path):
    with Journal(tmp_path) as j:
        j.set_meta("plan_sha256", "x")
        assert j._db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    with Journal(tmp_path) as j:  # re-open: nothing re-applied, data kept
        assert j.get_meta("plan_sha256") == "x"
        j.set_meta("other", "y")
        names = [r[0] for r in j._db.execute("SELECT name FROM _migrations")]
        assert names == [m[0] for m in MIGRATIONS]
        assert j._db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["journal.db"]  # no lock, -wal or -shm left at rest


def _folder_bytes(path):
    return {p.name: p.read_bytes() for p in sorted(path.iterdir())}


def test_a_journal_that_writes_nothing_leaves_no_file(tmp_path):
    with Journal(tmp_path) as j:
        assert (tmp_path / "journal.lock").exists()  # held while open
        j.set_meta("plan_sha256", "x", staged=True)
        assert j.start_run("execute", 1, {}) is None
        assert j.get_meta("plan_sha256") == "x" and j.batch_states() == {}
        j.end_run("nothing")
    assert list(tmp_path.iterdir()) == []


def test_an_existing_journal_is_left_byte_identical_by_a_run_that_writes_nothing(tmp_path):
    with Journal(tmp_path) as j:
        j.start_run("execute", 1, {})
        j.set_batch_state(1, "executing", 1)
        j.end_run("done")
    before = _folder_bytes(tmp_path)
    with Journal(tmp_path) as j:
        j.set_meta("plan_sha256", "x", staged=True)
        j.start_run("execute", 1, {})
        assert j.batch_state(1) == ("executing", 1) and len(j.runs()) == 1
        j.end_run("nothing")
    with Journal(tmp_path, readonly=True) as j:
        assert j.batch_state(1) == ("executing", 1)
    assert _folder_bytes(tmp_path) == before


def test_staged_run_and_meta_are_written_with_the_first_change(tmp_path):
    with Journal(tmp_path) as j:
        j.set_meta("plan_sha256", "x", staged=True)
        j.start_run("execute", 2, {"wait": False})
        j.set_batch_state(2, "executing", 1)
        assert j.run_id is not None
        j.end_run("done")
    with Journal(tmp_path, readonly=True) as j:
        assert j.get_meta("plan_sha256") == "x"
        (run,) = j.runs()
        assert (run["command"], run["batch"], run["outcome"]) == ("execute", 2, "done")


def test_prior_state_is_never_overwritten_by_a_resume(tmp_path):
    with Journal(tmp_path) as j:
        first = j.record_intent(batch=1, generation=1, phase="execute", step="remove_legacy", kind="sendas",
                                key="app|a@x", op="remove", prior=[{"Trustee": "App"}])
        again = j.record_intent(batch=1, generation=1, phase="execute", step="remove_legacy", kind="sendas",
                                key="app|a@x", op="remove", prior=[])
        assert first == again
        (row,) = j.actions(kind="sendas")
        assert row.prior == [{"Trustee": "App"}] and row.status == "intent"
        j.mark_action(first, "verified", verification={"ok": True})
        j.record_intent(batch=1, generation=1, phase="execute", step="remove_legacy", kind="sendas",
                        key="app|a@x", op="remove")
        assert j.actions(kind="sendas")[0].status == "verified"  # a verified action is not demoted


def test_second_journal_on_the_same_plan_is_refused(tmp_path):
    with Journal(tmp_path), pytest.raises(JournalLocked, match=f"pid {os.getpid()}"):
        Journal(tmp_path)
    Journal(tmp_path).close()  # released on close


def test_lock_is_released_when_the_holder_is_killed(tmp_path):
    code = ("import sys, time; from migrator.executor.journal import Journal; "
            f"j = Journal({str(tmp_path)!r}); print('locked', flush=True); time.sleep(60)")
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "locked"
        with pytest.raises(JournalLocked):
            Journal(tmp_path)
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        Journal(tmp_path).close()
    finally:
        if proc.poll() is None:
            proc.kill()


def test_readonly_journal_on_a_missing_file_is_empty_and_creates_nothing(tmp_path):
    with Journal(tmp_path, readonly=True) as j:
        assert j.steps() == [] and j.batch_states() == {}
    assert not (tmp_path / "journal.db").exists()
