"""The executor's journal: `<plan>/journal.db`, SQLite in WAL mode.

What it holds, and why:
- `steps`: per batch, generation (a batch executed again after a full rollback starts a new generation), phase
  (`execute` or `rollback`) and step: its status (`running`, `waiting`, `done`, `failed`), the time it may go on
  (`not_before`, for the propagation and token-lifetime waits) and a JSON detail.
- `actions`: one row per object a step touches: the intent, the prior state captured *before* the write (JSON;
  never overwritten once recorded, so a resume after the write cannot replace it with the already-changed state),
  the result, the verification, the status (`intent` → `applied` → `verified`, or `failed`) and timestamps.
- `objects`: objects the tool created (groups, scopes, role assignments, service-principal pointers), recorded with
  their exact name *before* the create call: that record is how an `AlreadyExists` answer is told apart from
  someone else's object, and what rollback may delete.
- `runs`: who ran what, when, and how it ended.
Every recorded step is one transaction (`with self._tx()`), so a crash leaves either the old or the new row.

Beside it, `undo-log.jsonl` (undolog.py): every removal's prior state, every created object and every batch state
change is appended there and fsynced *before* the journal's transaction, so either file alone can undo a batch.
A write to either that fails (disk full, read-only folder) raises JournalWriteError: the run stops before the
next tenant write. At open, `PRAGMA integrity_check` runs; a damaged journal, or a missing one whose undo log holds
records, stops the command with a pointer to `rollback --from-undo-log`.

Nothing written, nothing left: a writable journal reads from the existing file or from an empty in-memory one
until its first change to the record (a step, an action, an object, a batch state). Only then is `journal.db`
created (or switched to WAL for writing), and the values staged before it (`start_run`, `set_meta(staged=True)`,
`note_plan`) are written with that first change. So a run that stops before its first write (failed sign-in,
unknown batch, drift, a "no" at the prompt) leaves the plan folder byte-identical (docs/design.md §2). At rest the
file is switched back to a rollback journal, so read-only readers (status, report) create no -wal/-shm files.

Locking: plan_lock.PlanLock, an OS lock on `<plan>/journal.lock` (flock on POSIX, msvcrt on Windows, imported
lazily) held for the life of the process and dropped by the kernel when it dies; a second executor is refused at
once with the holder's pid and host. The lock file is removed on release.

Schema changes go through `MIGRATIONS` (name, SQL), applied in order and recorded in `_migrations`, the way
sqlite-utils' migrations.py does it: never edit an applied migration, append a new one.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from migrator.errors import MigratorError
from migrator.executor.plan_lock import LOCK_NAME, JournalLocked, PlanLock
from migrator.executor.undolog import UNDO_LOG_NAME, UndoLog, read_undo_log, replay, write_error
from migrator.planner.plan import JOURNAL_FILE

JOURNAL_NAME = JOURNAL_FILE  # in the plan folder
__all__ = ["JOURNAL_NAME", "LOCK_NAME", "MIGRATIONS", "ActionRow", "Journal", "JournalDamaged", "JournalLocked",
           "ObjectRow", "StepRow"]

MIGRATIONS: tuple[tuple[str, str], ...] = (
    (
        "0001_initial",
        """
        CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
        CREATE TABLE runs (
            id INTEGER PRIMARY KEY, command TEXT NOT NULL, batch INTEGER, pid INTEGER, host TEXT,
            options TEXT, started_at REAL NOT NULL, ended_at REAL, outcome TEXT);
        CREATE TABLE batches (
            batch INTEGER PRIMARY KEY, generation INTEGER NOT NULL DEFAULT 1,
            state TEXT NOT NULL, updated_at REAL NOT NULL);
        CREATE TABLE steps (
            batch INTEGER NOT NULL, generation INTEGER NOT NULL, phase TEXT NOT NULL, step TEXT NOT NULL,
            status TEXT NOT NULL, not_before REAL, started_at REAL, finished_at REAL, detail TEXT,
            PRIMARY KEY (batch, generation, phase, step));
        CREATE TABLE actions (
            id INTEGER PRIMARY KEY, batch INTEGER NOT NULL, generation INTEGER NOT NULL, phase TEXT NOT NULL,
            step TEXT NOT NULL, kind TEXT NOT NULL, key TEXT NOT NULL, op TEXT NOT NULL,
            intent TEXT, prior TEXT, result TEXT, verification TEXT, status TEXT NOT NULL, error TEXT,
            created_at REAL NOT NULL, updated_at REAL NOT NULL, run_id INTEGER);
        CREATE UNIQUE INDEX actions_unique ON actions (batch, generation, phase, kind, key, op);
        CREATE TABLE objects (
            kind TEXT NOT NULL, key TEXT NOT NULL, name TEXT NOT NULL, identity TEXT,
            created_batch INTEGER NOT NULL, state TEXT NOT NULL, detail TEXT,
            created_at REAL NOT NULL, updated_at REAL NOT NULL,
            PRIMARY KEY (kind, key));
        """,
    ),
)


class JournalDamaged(MigratorError):
    """journal.db is unreadable, fails its integrity check, or is missing while the undo log holds records."""


@dataclass(frozen=True)
class StepRow:
    batch: int
    generation: int
    phase: str
    step: str
    status: str
    not_before: float | None
    started_at: float | None
    finished_at: float | None
    detail: dict


@dataclass(frozen=True)
class ActionRow:
    id: int
    batch: int
    generation: int
    phase: str
    step: str
    kind: str
    key: str
    op: str
    intent: Any
    prior: Any
    result: Any
    verification: Any
    status: str
    error: str | None
    created_at: float
    updated_at: float


@dataclass(frozen=True)
class ObjectRow:
    kind: str
    key: str
    name: str
    identity: str | None
    created_batch: int
    state: str  # intent | created | removed
    detail: dict


def _dumps(value: Any) -> str | None:
    return None if value is None else json.dumps(value, sort_keys=True, default=str)


def _loads(text: str | None) -> Any:
    return None if text is None else json.loads(text)


class Journal:
    """One plan's journal. Thread-safe (one connection guarded by a lock); use as a context manager."""

    def __init__(self, plan_dir: Path, *, lock: bool = True, readonly: bool = False, clock=time.time,
                 undo: bool = True, from_undo_log: bool = False) -> None:
        """`undo`: append removals, objects and batch states to undo-log.jsonl (off for read-only opens).
        `from_undo_log`: rebuild journal.db from the undo log (the old file, if any, is moved aside, never deleted);
        refused while journal.db is intact."""
        self.plan_dir = Path(plan_dir)
        self.path = self.plan_dir / JOURNAL_NAME
        self._clock = clock
        self._mutex = threading.RLock()
        self._lock = PlanLock(self.plan_dir) if lock and not readonly else None
        self._conn: sqlite3.Connection | None = None  # None once closed (or before it is opened)
        self.readonly = readonly
        self.undo = UndoLog(self.plan_dir, clock=clock) if undo and not readonly else None
        self.rebuilt: dict | None = None
        self.run_id: int | None = None
        self._writable = False  # journal.db opened for writing (created if need be): set by the first change
        self._staged_meta: dict[str, str] = {}
        self._staged_run: tuple | None = None  # (command, batch, options, started_at) until the first change
        self._staged_plan: str | None = None  # the undo log's first line, written with the first change
        if self._lock is not None:
            self._lock.acquire()
        try:
            if from_undo_log:
                self._rebuild_from_undo_log()
            else:
                self._open()
        except BaseException:
            self.close()
            raise

    def _open(self) -> None:
        existed = self.path.exists()
        was_empty = existed and self.path.stat().st_size == 0
        try:
            if self.readonly:
                if not existed:
                    self._conn = sqlite3.connect(":memory:", check_same_thread=False)
                    self._migrate()
                else:
                    self._conn = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, check_same_thread=False)
                    self._check_integrity()
            elif not existed:
                # Nothing on disk until the first change (_materialise): an empty journal in memory meanwhile.
                self._conn = sqlite3.connect(":memory:", check_same_thread=False, isolation_level=None)
                self._migrate()
            else:
                # Held under the lock, so no other writer: a read-write connection that only reads changes nothing
                # on disk, and unlike a read-only one it can recover a WAL left by a killed run.
                self._conn = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=30)
                self._check_integrity()
        except sqlite3.DatabaseError as exc:
            if isinstance(exc, sqlite3.OperationalError) and _is_write_failure(exc):
                raise write_error("the journal", self.path, exc) from None
            raise self._damaged(str(exc)) from None
        self._db.row_factory = sqlite3.Row
        if not self.readonly and self.undo is not None:
            self._refuse_if_lost(existed, was_empty)

    def _check_integrity(self) -> None:
        rows = [r[0] for r in self._db.execute("PRAGMA integrity_check").fetchall()]
        if rows != ["ok"]:
            raise self._damaged("; ".join(rows[:3]))

    def _damaged(self, detail: str) -> JournalDamaged:
        return JournalDamaged(
            f"{self.path} is damaged ({detail}); nothing was written. Its undo log ({UNDO_LOG_NAME}, beside it) "
            "holds the prior state of every removal: undo a batch with `migrator rollback PLAN --batch N "
            "--from-undo-log` (the damaged file is kept aside), or restore journal.db from a copy")

    def _refuse_if_lost(self, existed: bool, was_empty: bool) -> None:
        """A journal.db that was missing (or an empty file) while the undo log holds batch records was deleted or
        replaced: going on would run batches again as if nothing had happened. (A journal that exists but lacks the
        log's last batch record is only one step behind it: a run killed between the two writes.)"""
        if existed and not was_empty:
            return
        if self.undo is None or self.batch_states() or not self.undo.exists():
            return
        records = read_undo_log(self.undo.path)
        if records.batches:
            self.close_db()
            if not existed:
                self.path.unlink(missing_ok=True)
                for suffix in ("-wal", "-shm"):
                    Path(f"{self.path}{suffix}").unlink(missing_ok=True)
            raise JournalDamaged(
                f"{self.path} is {'missing' if not existed else 'empty'} but {UNDO_LOG_NAME} records "
                f"{len(records.batches)} batch(es) already run: the journal was deleted or replaced. Put it back, or "
                "undo a batch with `migrator rollback PLAN --batch N --from-undo-log`")

    def _rebuild_from_undo_log(self) -> None:
        if self.readonly or self.undo is None:
            raise RuntimeError("a journal is rebuilt read-write, with its undo log")
        records = read_undo_log(self.undo.path)
        if records.empty:
            raise JournalDamaged(f"{self.undo.path}: no undo log, or nothing in it: there is nothing to roll back from")
        if self.path.exists():
            try:
                self._open()
            except JournalDamaged:
                self.close_db()
            else:
                if self.batch_states():
                    raise JournalDamaged(f"{self.path} is intact: roll back without --from-undo-log (the journal "
                                         "holds everything the undo log does, and more)")
                self.close_db()
            stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
            for suffix in ("", "-wal", "-shm"):
                old = Path(f"{self.path}{suffix}")
                if old.exists():
                    old.replace(old.with_name(f"{old.name}.damaged-{stamp}"))
        undo, self.undo = self.undo, None  # the records replayed are in the log already
        try:
            self._open()
            if records.plan_sha256:
                self.set_meta("plan_sha256", records.plan_sha256)
            self.rebuilt = replay(self, records)
        finally:
            self.undo = undo

    def note_plan(self, plan_sha256: str) -> None:
        """Start the undo log with the plan it belongs to (once), with the first change: a run that changes
        nothing leaves no undo log either."""
        if self.undo is not None:
            self._staged_plan = plan_sha256

    def _undo_log(self) -> UndoLog | None:
        """The undo log, ready for a record: journal.db exists first (so a kill between the undo record and the
        journal's own leaves a journal one step behind, never a missing one that looks deleted), then the log's
        staged first line. Called before every undo record."""
        if self.undo is None:
            return None
        with self._mutex:
            self._materialise()
            if self._staged_plan is not None:
                plan, self._staged_plan = self._staged_plan, None
                self.undo.note_plan(plan)
        return self.undo

    def _materialise(self) -> None:
        """Open journal.db for writing (creating it), then write what was staged. Caller holds the mutex."""
        if self._writable:
            return
        if self.readonly:
            raise RuntimeError("journal opened read-only")
        existed = self.path.exists()
        try:
            if not existed:
                self.close_db()
                self.plan_dir.mkdir(parents=True, exist_ok=True)
                self._conn = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=30)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")  # a recorded step survives power loss, not just a crash
            self._migrate()
        except sqlite3.OperationalError as exc:
            if _is_write_failure(exc):
                raise write_error("the journal", self.path, exc) from None
            raise
        self._db.row_factory = sqlite3.Row
        self._writable = True
        staged_meta, self._staged_meta = self._staged_meta, {}
        staged_run, self._staged_run = self._staged_run, None
        if not staged_meta and staged_run is None:
            return
        with self._tx() as tx:
            for key, value in staged_meta.items():
                tx.execute("INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET "
                           "value=excluded.value", (key, value))
            if staged_run is not None:
                command, batch, options, started = staged_run
                cur = tx.execute(
                    "INSERT INTO runs (command, batch, pid, host, options, started_at) VALUES (?, ?, ?, ?, ?, ?)",
                    (command, batch, os.getpid(), socket.gethostname(), _dumps(options), started))
                self.run_id = cur.lastrowid

    @property
    def written(self) -> bool:
        """Whether this journal has opened journal.db for writing (its first change happened)."""
        return self._writable

    # ---- lifecycle -----------------------------------------------------------------------------------------

    @property
    def _db(self) -> sqlite3.Connection:
        if self._conn is None:
            raise RuntimeError("the journal is closed")
        return self._conn

    def close_db(self) -> None:
        with self._mutex:
            if self._conn is not None:
                self._db.close()
                self._conn = None

    def close(self) -> None:
        with self._mutex:
            if self._conn is not None and self._writable:
                # Back to a rollback journal at rest: WAL mode is recorded in the file, and a read-only reader of a
                # WAL file (status, report, the next run before its first change) would leave -wal/-shm files
                # behind. Fails harmlessly while a reader is connected (the file stays WAL until the next close).
                with contextlib.suppress(sqlite3.Error):
                    self._conn.execute("PRAGMA journal_mode=DELETE")
            self.close_db()
            self._writable = False
            if self._lock is not None:
                self._lock.release()
                self._lock = None

    def __enter__(self) -> Journal:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _migrate(self) -> None:
        db = self._db
        db.execute("CREATE TABLE IF NOT EXISTS _migrations (name TEXT PRIMARY KEY, applied_at REAL NOT NULL)")
        done = {row[0] for row in db.execute("SELECT name FROM _migrations")}
        for name, sql in MIGRATIONS:
            if name in done:
                continue
            db.execute("BEGIN IMMEDIATE")
            try:
                for statement in filter(str.strip, sql.split(";")):
                    db.execute(statement)
                db.execute("INSERT INTO _migrations (name, applied_at) VALUES (?, ?)", (name, time.time()))
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise

    @contextlib.contextmanager
    def _tx(self):
        if self.readonly:
            raise RuntimeError("journal opened read-only")
        with self._mutex:
            self._materialise()
            try:
                self._db.execute("BEGIN IMMEDIATE")
                try:
                    yield self._db
                except BaseException:
                    if self._db.in_transaction:
                        self._db.execute("ROLLBACK")
                    raise
                self._db.execute("COMMIT")
            except sqlite3.OperationalError as exc:  # disk full, read-only folder, I/O error: stop, lose nothing
                if not _is_write_failure(exc):
                    raise
                if self._db.in_transaction:
                    with contextlib.suppress(sqlite3.Error):
                        self._db.execute("ROLLBACK")
                raise write_error("the journal", self.path, exc) from None

    def now(self) -> float:
        return self._clock()

    # ---- meta and runs -------------------------------------------------------------------------------------

    def get_meta(self, key: str) -> str | None:
        with self._mutex:
            if key in self._staged_meta:
                return self._staged_meta[key]
            row = self._db.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        return row[0] if row else None

    def set_meta(self, key: str, value: str, *, staged: bool = False) -> None:
        """Set a meta value; `staged`: keep it in memory until the journal's first other change (or drop it)."""
        if self.readonly:
            raise RuntimeError("journal opened read-only")
        with self._mutex:
            if staged and not self._writable:
                self._staged_meta[key] = value
                return
        with self._tx() as db:
            db.execute("INSERT INTO meta (key, value) VALUES (?, ?) "
                       "ON CONFLICT(key) DO UPDATE SET value=excluded.value",
                       (key, value))

    def start_run(self, command: str, batch: int | None, options: dict) -> int | None:
        """Record a run. Staged until its first change: a run that changes nothing leaves no trace."""
        with self._mutex:
            if not self._writable:
                self._staged_run = (command, batch, options, self.now())
                return None
        with self._tx() as db:
            cur = db.execute(
                "INSERT INTO runs (command, batch, pid, host, options, started_at) VALUES (?, ?, ?, ?, ?, ?)",
                (command, batch, os.getpid(), socket.gethostname(), _dumps(options), self.now()))
            self.run_id = cur.lastrowid
        return self.run_id

    def end_run(self, outcome: str) -> None:
        self._staged_run = None
        if self.run_id is None:
            return
        with self._tx() as db:
            db.execute("UPDATE runs SET ended_at=?, outcome=? WHERE id=?", (self.now(), outcome, self.run_id))

    def runs(self) -> list[dict]:
        with self._mutex:
            return [dict(r) for r in self._db.execute("SELECT * FROM runs ORDER BY id")]

    # ---- batches -------------------------------------------------------------------------------------------

    def batch_state(self, batch: int) -> tuple[str, int]:
        """(state, generation); ('new', 1) for a batch never touched."""
        with self._mutex:
            row = self._db.execute("SELECT state, generation FROM batches WHERE batch=?", (batch,)).fetchone()
        return (row[0], row[1]) if row else ("new", 1)

    def set_batch_state(self, batch: int, state: str, generation: int) -> None:
        undo = self._undo_log()
        if undo is not None:
            undo.batch(batch, generation, state)
        with self._tx() as db:
            db.execute(
                "INSERT INTO batches (batch, generation, state, updated_at) VALUES (?, ?, ?, ?) "
                "ON CONFLICT(batch) DO UPDATE SET generation=excluded.generation, state=excluded.state, "
                "updated_at=excluded.updated_at", (batch, generation, state, self.now()))

    def batch_states(self) -> dict[int, tuple[str, int]]:
        with self._mutex:
            return {r[0]: (r[1], r[2]) for r in self._db.execute("SELECT batch, state, generation FROM batches")}

    # ---- steps ---------------------------------------------------------------------------------------------

    def step(self, batch: int, generation: int, phase: str, step: str) -> StepRow | None:
        with self._mutex:
            row = self._db.execute(
                "SELECT * FROM steps WHERE batch=? AND generation=? AND phase=? AND step=?",
                (batch, generation, phase, step)).fetchone()
        return self._step_row(row) if row else None

    def steps(self, batch: int | None = None, generation: int | None = None) -> list[StepRow]:
        sql, args = "SELECT * FROM steps WHERE 1=1", []
        if batch is not None:
            sql += " AND batch=?"
            args.append(batch)
        if generation is not None:
            sql += " AND generation=?"
            args.append(generation)
        with self._mutex:
            return [self._step_row(r) for r in self._db.execute(sql + " ORDER BY batch, generation, started_at", args)]

    @staticmethod
    def _step_row(row) -> StepRow:
        return StepRow(row["batch"], row["generation"], row["phase"], row["step"], row["status"], row["not_before"],
                       row["started_at"], row["finished_at"], _loads(row["detail"]) or {})

    def set_step(self, batch: int, generation: int, phase: str, step: str, status: str, *,
                 not_before: float | None = None, detail: dict | None = None) -> None:
        now = self.now()
        finished = now if status in ("done", "failed") else None
        with self._tx() as db:
            db.execute(
                "INSERT INTO steps (batch, generation, phase, step, status, not_before, started_at, finished_at, "
                "detail)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT(batch, generation, phase, step) DO UPDATE SET"
                " status=excluded.status, not_before=COALESCE(excluded.not_before, steps.not_before),"
                " finished_at=excluded.finished_at, detail=COALESCE(excluded.detail, steps.detail)",
                (batch, generation, phase, step, status, not_before, now, finished, _dumps(detail)))

    # ---- actions -------------------------------------------------------------------------------------------

    def record_intent(self, *, batch: int, generation: int, phase: str, step: str, kind: str, key: str, op: str,
                      intent: Any = None, prior: Any = None) -> int:
        """Record what is about to be written and the state before it, in one transaction, before the write.

        A row that exists already (a resumed run) keeps its first prior state: by now the write may have happened.
        """
        return self.record_intents([dict(batch=batch, generation=generation, phase=phase, step=step, kind=kind,
                                         key=key, op=op, intent=intent, prior=prior)])[0]

    def record_intents(self, items: list[dict]) -> list[int]:
        """record_intent for many objects in ONE transaction (one fsync): each dict has the keyword arguments of
        record_intent. Used before a chunk of removals, so the prior state of every grant in the chunk is on disk
        before the first of them is sent."""
        if not items:
            return []
        now = self.now()
        ids: list[int] = []
        with self._mutex:  # the undo log's order follows the journal's
            undo = self._undo_log()
            if undo is not None:
                undo.removals(items)  # write-ahead: the prior state is on disk twice before the write is sent
            return self._record_intents(items, now, ids)

    def _record_intents(self, items: list[dict], now: float, ids: list[int]) -> list[int]:
        with self._tx() as db:
            for it in items:
                args = (it["batch"], it["generation"], it["phase"], it["step"], it["kind"], it["key"], it["op"])
                db.execute(
                    "INSERT INTO actions (batch, generation, phase, step, kind, key, op, intent, prior, status,"
                    " created_at, updated_at, run_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 'intent', ?, ?, ?)"
                    " ON CONFLICT(batch, generation, phase, kind, key, op) DO UPDATE SET"
                    " intent=excluded.intent, prior=COALESCE(actions.prior, excluded.prior),"
                    " status=CASE WHEN actions.status='verified' THEN actions.status ELSE 'intent' END,"
                    " error=NULL, updated_at=excluded.updated_at, run_id=excluded.run_id",
                    (*args, _dumps(it.get("intent")), _dumps(it.get("prior")), now, now, self.run_id))
                row = db.execute("SELECT id FROM actions WHERE batch=? AND generation=? AND phase=? AND kind=?"
                                 " AND key=? AND op=?", (*args[:3], *args[4:])).fetchone()
                ids.append(row[0])
        return ids

    def mark_actions(self, action_ids: list[int], status: str) -> None:
        if not action_ids:
            return
        with self._tx() as db:
            db.executemany("UPDATE actions SET status=?, error=NULL, updated_at=? WHERE id=?",
                           [(status, self.now(), i) for i in action_ids])

    def mark_action(self, action_id: int, status: str, *, result: Any = None, verification: Any = None,
                    error: str | None = None) -> None:
        with self._tx() as db:
            db.execute(
                "UPDATE actions SET status=?, result=COALESCE(?, result), verification=COALESCE(?, verification),"
                " error=?, updated_at=? WHERE id=?",
                (status, _dumps(result), _dumps(verification), error, self.now(), action_id))

    def actions(self, *, batch: int | None = None, generation: int | None = None, phase: str | None = None,
                kind: str | None = None, op: str | None = None, key: str | None = None) -> list[ActionRow]:
        sql, args = "SELECT * FROM actions WHERE 1=1", []
        for col, val in (("batch", batch), ("generation", generation), ("phase", phase), ("kind", kind),
                         ("op", op), ("key", key)):
            if val is not None:
                sql += f" AND {col}=?"
                args.append(val)
        with self._mutex:
            rows = self._db.execute(sql + " ORDER BY id", args).fetchall()
        return [ActionRow(r["id"], r["batch"], r["generation"], r["phase"], r["step"], r["kind"], r["key"], r["op"],
                          _loads(r["intent"]), _loads(r["prior"]), _loads(r["result"]), _loads(r["verification"]),
                          r["status"], r["error"], r["created_at"], r["updated_at"]) for r in rows]

    def action(self, *, batch: int, generation: int, phase: str, kind: str, key: str, op: str) -> ActionRow | None:
        found = self.actions(batch=batch, generation=generation, phase=phase, kind=kind, key=key, op=op)
        return found[0] if found else None

    # ---- objects the tool created --------------------------------------------------------------------------

    def claim_object(self, kind: str, key: str, name: str, batch: int, detail: dict | None = None) -> None:
        """Record, before creating it, that the tool is about to create object `key` named `name`."""
        now = self.now()
        undo = self._undo_log()
        if undo is not None:
            undo.object(kind, key, state="intent", batch=batch, name=name)
        with self._tx() as db:
            db.execute(
                "INSERT INTO objects (kind, key, name, created_batch, state, detail, created_at, updated_at)"
                " VALUES (?, ?, ?, ?, 'intent', ?, ?, ?) ON CONFLICT(kind, key) DO UPDATE SET"
                " name=excluded.name, created_batch=CASE WHEN objects.state='removed' THEN excluded.created_batch"
                " ELSE objects.created_batch END,"
                " state=CASE WHEN objects.state='removed' THEN 'intent' ELSE objects.state END,"
                " identity=CASE WHEN objects.state='removed' THEN NULL ELSE objects.identity END,"
                " updated_at=excluded.updated_at",
                (kind, key, name, batch, _dumps(detail), now, now))

    def set_object(self, kind: str, key: str, state: str, identity: str | None = None,
                   detail: dict | None = None) -> None:
        with self._tx() as db:
            db.execute("UPDATE objects SET state=?, identity=COALESCE(?, identity), detail=COALESCE(?, detail),"
                       " updated_at=? WHERE kind=? AND key=?",
                       (state, identity, _dumps(detail), self.now(), kind, key))

    def object(self, kind: str, key: str) -> ObjectRow | None:
        with self._mutex:
            r = self._db.execute("SELECT * FROM objects WHERE kind=? AND key=?", (kind, key)).fetchone()
        if not r:
            return None
        return ObjectRow(r["kind"], r["key"], r["name"], r["identity"], r["created_batch"], r["state"],
                         _loads(r["detail"]) or {})

    def objects(self, kind: str | None = None) -> list[ObjectRow]:
        sql, args = "SELECT * FROM objects", []
        if kind:
            sql += " WHERE kind=?"
            args.append(kind)
        with self._mutex:
            rows = self._db.execute(sql + " ORDER BY kind, key", args).fetchall()
        return [ObjectRow(r["kind"], r["key"], r["name"], r["identity"], r["created_batch"], r["state"],
                          _loads(r["detail"]) or {}) for r in rows]


def _is_write_failure(exc: sqlite3.OperationalError) -> bool:
    """SQLite's answers when the file cannot take a write: full disk, read-only file or folder, I/O error."""
    text = str(exc).lower()
    return any(m in text for m in ("disk is full", "readonly", "read-only", "disk i/o", "unable to open",
                                   "no space"))
