"""The undo log beside the journal: written ahead of every removal, enough on its own to roll a batch back when
journal.db is gone or damaged, a full disk stops the run with nothing lost, `status` says when the two differ."""

from __future__ import annotations

import errno
import json
import shutil

import pytest
from click.testing import CliRunner

from exec_helpers import execute, rollback, run_until_done
from fakes import make_world
from migrator.cli import main
from migrator.executor.journal import Journal, JournalDamaged
from migrator.executor.undolog import UNDO_LOG_NAME, UndoLog, read_undo_log

APPS = {
    "44444444-0000-0000-0000-000000000001": {"a@contoso.com", "b@contoso.com", "c@contoso.com"},
    "44444444-0000-0000-0000-000000000002": {"b@contoso.com", "c@contoso.com"},
    "44444444-0000-0000-0000-000000000003": {"d@contoso.com", "e@contoso.com"},
}
A1, A2, A3 = sorted(APPS)


def records(plan, kind=None):
    lines = (plan / UNDO_LOG_NAME).read_text(encoding="utf-8").splitlines()
    out = [json.loads(line) for line in lines]
    return [r for r in out if kind is None or r["record"] == kind]


def test_every_removal_is_in_the_undo_log_with_its_prior_state_and_the_journal_agrees(tmp_path):
    tenant, plan = make_world(tmp_path, APPS, [[A1, A2], [A3]])
    assert execute(tenant, plan, [1]).outcomes[0].status == "done"
    log = records(plan)
    assert log[0]["record"] == "plan" and len(log[0]["plan_sha256"]) == 64
    removals = {(r["kind"], r["key"]): r for r in records(plan, "removal")}
    want = {("sendas", f"{a}|{m}") for a in (A1, A2) for m in APPS[a]} | {("entra_assignment", a) for a in (A1, A2)}
    assert set(removals) == want
    with Journal(plan, readonly=True) as j:
        for a in j.actions(op="remove") + j.actions(op="delete"):
            assert removals[(a.kind, a.key)]["prior"] == a.prior and a.prior  # the same full prior state
    one = removals[("sendas", f"{A1}|a@contoso.com")]
    assert one["target"] == {"app_id": A1, "mailbox": "a@contoso.com", "right": "SendAs"} and one["batch"] == 1
    states = [(r["batch"], r["state"]) for r in records(plan, "batch")]
    assert states == [(1, "executing"), (1, "done")]
    assert {r["kind"] for r in records(plan, "object")} >= {"group", "scope", "assignment"}
    assert str(tmp_path) not in (plan / UNDO_LOG_NAME).read_text()  # no path: the folder can move


def test_undo_record_and_journal_intent_are_both_durable_before_the_removal_is_sent(tmp_path, monkeypatch):
    tenant, plan = make_world(tmp_path, APPS, [[A1, A2], [A3]])
    seen = []
    from fakes import FakeExchange

    original = FakeExchange.remove_recipient_permission

    def remove(self, mailbox, trustee):
        app = next(a for a in APPS if tenant.oid_of(a) == trustee)
        keys = {(r["kind"], r["key"]) for r in records(plan, "removal")}
        with Journal(plan, readonly=True) as j:
            journal_keys = {(a.kind, a.key) for a in j.actions(op="remove")}
        seen.append(("sendas", f"{app}|{mailbox}") in keys & journal_keys)
        return original(self, mailbox, trustee)

    monkeypatch.setattr(FakeExchange, "remove_recipient_permission", remove)
    assert execute(tenant, plan, [1]).outcomes[0].status == "done"
    assert seen and all(seen)


@pytest.mark.parametrize("nth,code", [(1, errno.ENOSPC), (2, errno.ENOSPC), (3, errno.ENOSPC), (4, errno.EROFS)])
def test_a_full_disk_mid_run_stops_before_the_next_write_and_the_rerun_converges(tmp_path, monkeypatch, nth, code):
    tenant, plan = make_world(tmp_path, APPS, [[A1, A2], [A3]])
    execute(tenant, plan, [1], wait=False)  # up to the propagation wait (creations logged)
    tenant.clock.sleep(200)
    start = len(records(plan))
    real = UndoLog._write
    count = {"n": 0, "lines": 0}

    def full(self, text):
        count["n"] += 1
        if count["n"] >= nth:
            raise OSError(code, "No space left on device" if code == errno.ENOSPC else "Read-only file system")
        count["lines"] += text.count("\n")
        return real(self, text)

    monkeypatch.setattr(UndoLog, "_write", full)
    stopped = execute(tenant, plan, [1])
    assert stopped.outcomes[0].status == "stopped" and stopped.exit_code == 12
    assert "cannot write the undo log undo-log.jsonl" in stopped.outcomes[0].message
    assert "run the same command again" in stopped.outcomes[0].message
    assert len(records(plan)) == start + count["lines"]  # whole records only
    # nothing lost: every grant gone from the tenant has its prior state in the undo log and in the journal
    removed = {(m, a) for a in (A1, A2) for m in APPS[a] if (m, tenant.oid_of(a)) not in tenant.sendas}
    logged = {tuple(r["key"].split("|")[::-1]) for r in records(plan, "removal") if r["kind"] == "sendas"}
    with Journal(plan, readonly=True) as j:
        journaled = {tuple(a.key.split("|")[::-1]) for a in j.actions(kind="sendas", op="remove")}
    assert removed <= logged and removed <= journaled
    cut = {a for a in (A1, A2) if not tenant.entra.get(tenant.oid_of(a))}
    assert cut <= {r["key"] for r in records(plan, "removal") if r["kind"] == "entra_assignment"}
    monkeypatch.setattr(UndoLog, "_write", real)  # space freed
    _, result = run_until_done(tenant, plan, [1, 2])
    assert [o.status for o in result.outcomes] in (["done", "done"], ["skipped", "done"])
    assert tenant.gaps == [] and tenant.overgrants == []
    assert not CliRunner().invoke(main, ["status", str(plan), "--json"]).output.count("are not in")


def test_a_journal_that_cannot_be_written_stops_the_run_cleanly(tmp_path, monkeypatch):
    import sqlite3

    tenant, plan = make_world(tmp_path, APPS, [[A1, A2], [A3]])
    execute(tenant, plan, [1], wait=False)
    tenant.clock.sleep(200)
    before = set(tenant.sendas)
    real = Journal._record_intents

    def full(self, items, now, ids):
        if any(it["kind"] == "sendas" for it in items):
            with self._tx():  # SQLite's own answer, inside the transaction, as a full disk gives it
                raise sqlite3.OperationalError("database or disk is full")
        return real(self, items, now, ids)

    monkeypatch.setattr(Journal, "_record_intents", full)
    stopped = execute(tenant, plan, [1])
    assert stopped.outcomes[0].status == "stopped" and "cannot write the journal journal.db" in \
        stopped.outcomes[0].message
    assert set(tenant.sendas) == before  # the removal whose intent failed was never sent
    monkeypatch.setattr(Journal, "_record_intents", real)
    assert execute(tenant, plan, [1]).outcomes[0].status == "done"
    assert tenant.gaps == [] and tenant.overgrants == []


def test_rollback_from_the_undo_log_alone_restores_the_batch_exactly(tmp_path):
    tenant, plan = make_world(tmp_path, APPS, [[A1, A2], [A3]])
    before = tenant.snapshot()
    assert execute(tenant, plan, [1]).outcomes[0].status == "done"
    (plan / "journal.db").unlink()
    for suffix in ("-wal", "-shm"):
        (plan / f"journal.db{suffix}").unlink(missing_ok=True)
    with pytest.raises(JournalDamaged, match=r"missing but undo-log\.jsonl records 1 batch"):
        execute(tenant, plan, [1])  # a lost journal is not a fresh start
    assert not (plan / "journal.db").exists()
    with Journal(plan, from_undo_log=True, clock=tenant.clock.now) as j:
        assert j.rebuilt["removals"] == 7 and j.batch_state(1) == ("done", 1)
    result = rollback(tenant, plan, 1)
    assert result.outcomes[0].status == "done", result.outcomes[0].message
    assert tenant.snapshot() == before
    assert tenant.gaps == [] and tenant.overgrants == []


def test_a_damaged_journal_is_refused_then_kept_aside_by_the_rebuild(tmp_path):
    tenant, plan = make_world(tmp_path, APPS, [[A1, A2], [A3]])
    before = tenant.snapshot()
    assert execute(tenant, plan, [1]).outcomes[0].status == "done"
    db = plan / "journal.db"
    with Journal(plan) as j:  # checkpoint the WAL into the file, then damage the file
        j._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    data = bytearray(db.read_bytes())
    data[100:4096] = b"\xff" * (4096 - 100)  # the first page's b-tree header and cells
    db.write_bytes(bytes(data))
    with pytest.raises(JournalDamaged, match="damaged"):
        Journal(plan)
    status = CliRunner().invoke(main, ["status", str(plan)])
    assert status.exit_code != 0 and "--from-undo-log" in status.output
    with Journal(plan, from_undo_log=True, clock=tenant.clock.now):
        pass
    assert [p.name for p in plan.glob("journal.db.damaged-*")]  # kept, never deleted
    with pytest.raises(JournalDamaged, match="intact"):
        Journal(plan, from_undo_log=True)  # only a lost or damaged journal is rebuilt
    assert rollback(tenant, plan, 1).outcomes[0].status == "done"
    assert tenant.snapshot() == before and tenant.gaps == []


def test_status_warns_when_journal_and_undo_log_disagree(tmp_path):
    tenant, plan = make_world(tmp_path, APPS, [[A1, A2], [A3]])
    execute(tenant, plan, [1])
    agree = CliRunner().invoke(main, ["status", str(plan), "--json"])
    assert json.loads(agree.stdout)["warnings"] == []
    path = plan / UNDO_LOG_NAME
    lines = path.read_text().splitlines(keepends=True)
    dropped = next(line for line in lines if '"removal"' in line)
    path.write_text("".join(line for line in lines if line is not dropped))
    warned = CliRunner().invoke(main, ["status", str(plan)])
    assert "Warning: 1 removal(s) in the journal are not in undo-log.jsonl" in warned.output
    path.unlink()
    gone = CliRunner().invoke(main, ["status", str(plan)])
    assert "undo-log.jsonl is missing" in gone.output


def test_a_torn_line_is_ended_by_the_next_append_skipped_on_reading_and_a_bad_line_is_named(tmp_path):
    path = tmp_path / UNDO_LOG_NAME
    good = json.dumps({"record": "batch", "batch": 1, "generation": 1, "state": "executing"})
    path.write_text(good + "\n" + '{"record": "removal", "batch": 1, "gen')  # killed mid-write
    got = read_undo_log(path)
    assert got.torn_tail and got.batches[1]["state"] == "executing" and not got.removals
    UndoLog(tmp_path, clock=lambda: 0.0).batch(1, 1, "done")  # the next run's append ends the torn line first
    lines = path.read_text().splitlines()
    assert len(lines) == 3 and json.loads(lines[2])["state"] == "done"
    got = read_undo_log(path)
    assert got.torn_lines == [2] and not got.torn_tail and got.batches[1]["state"] == "done"
    path.write_text(good + "\nnot json\n" + good + "\n")
    from migrator.errors import InputError

    with pytest.raises(InputError, match="row 2"):
        read_undo_log(path)


def test_a_copied_plan_folder_resumes_mid_batch_from_the_copy(tmp_path):
    tenant, plan = make_world(tmp_path, APPS, [[A1, A2], [A3]])
    assert execute(tenant, plan, [1], wait=False).outcomes[0].status == "waiting"
    copy = tmp_path / "elsewhere" / "moved-plan"
    shutil.copytree(plan, copy)
    shutil.rmtree(plan)  # the original folder is gone: nothing may point back at it
    tenant.clock.sleep(200)
    result = execute(tenant, copy, [1, 2])
    assert [o.status for o in result.outcomes] == ["done", "done"]
    assert tenant.gaps == [] and tenant.overgrants == []
    with Journal(copy, readonly=True) as j:
        assert j.steps(1)[0].batch == 1 and len(j.runs()) == 2


def test_a_run_killed_between_the_undo_record_and_the_journal_resumes(tmp_path, monkeypatch):
    """The undo log is written first, so a kill can leave it one record ahead of the journal: not a lost journal."""
    from fakes import Crash

    tenant, plan = make_world(tmp_path, APPS, [[A1, A2], [A3]])
    real = Journal.set_batch_state

    def killed(self, batch, state, generation):
        undo = self._undo_log()  # as set_batch_state does: journal.db made first, then the undo record
        if undo is not None:
            undo.batch(batch, generation, state)
        raise Crash("killed after the undo record, before the journal's")

    monkeypatch.setattr(Journal, "set_batch_state", killed)
    with pytest.raises(Crash):
        execute(tenant, plan, [1])
    monkeypatch.setattr(Journal, "set_batch_state", real)
    assert records(plan, "batch") and (plan / "journal.db").exists()
    _, result = run_until_done(tenant, plan, [1, 2])
    assert [o.status for o in result.outcomes] == ["done", "done"]
    assert tenant.gaps == [] and tenant.overgrants == []


def test_a_read_only_plan_folder_stops_the_command_before_anything_with_a_clear_message(tmp_path, monkeypatch):
    import migrator.executor.plan_lock as journal_module  # the lock file is opened there

    tenant, plan = make_world(tmp_path, APPS, [[A1, A2], [A3]])
    before = tenant.snapshot()

    def read_only(path, *args, **kw):
        raise PermissionError(errno.EROFS, "Read-only file system", str(path))

    monkeypatch.setattr(journal_module, "open", read_only, raising=False)
    from migrator.executor.undolog import JournalWriteError

    with pytest.raises(JournalWriteError, match=r"cannot write the lock file journal\.lock .*Read-only file system"):
        execute(tenant, plan, [1])
    assert tenant.snapshot() == before and tenant.writes == 0
