"""The undo log: `<plan>/undo-log.jsonl`, a plain second record beside the journal.

`journal.db` is one SQLite file: deleted with the plan folder's other files, damaged by a full disk or a bad copy,
it would leave removed grants that rollback can no longer restore. So before each removal the journal also appends
the prior state to this file, one JSON object a line, flushed and fsynced before the journal's own transaction
(and so before the write is sent). A person can read it; `rollback --from-undo-log` rebuilds a journal from it.

Records (`record` names the kind; every record has `time`, UTC ISO 8601):
- `plan`: `plan_sha256` of the plan.json the run executes (first line; a log of another plan is refused).
- `removal`: `batch, generation, phase, step, kind, key, op, target, prior` for every action whose op is `remove`
  or `delete` (legacy SendAs/FullAccess grants, the Entra SMTP.SendAsApp assignment, and what a rollback removes).
  `target` spells the key out (`app_id`, `mailbox`, `right`); `prior` is the tenant's rows before the removal.
- `object`: `kind, key, name, batch, state, identity` when the tool is about to create an object (`intent`), has
  created it (`created`) or a rollback removed it (`removed`): what rollback may delete.
- `batch`: `batch, generation, state` on every batch state change.
Nothing in it is secret: tenant rows, names and ids only. Paths are never written (a copied folder still works).
"""

from __future__ import annotations

import datetime as _dt
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from migrator.errors import MigratorError
from migrator.exitcodes import ExitCode

UNDO_LOG_NAME = "undo-log.jsonl"
DESTRUCTIVE_OPS = frozenset({"remove", "delete"})
FORMAT = 1


class JournalWriteError(MigratorError):
    """The journal or the undo log could not be written (disk full, read-only folder): the run stops before its
    next write, and everything written so far is recorded. Exit 12, like a clean stop: free space, run again."""

    exit_code = ExitCode.INCOMPLETE


def write_error(what: str, path: Path, exc: BaseException) -> JournalWriteError:
    reason = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
    return JournalWriteError(
        f"cannot write {what} {path.name} in {path.parent} ({reason}): the run stopped before its next change, and "
        "every change made so far is recorded. Free disk space (or make the folder writable) and run the same "
        "command again")


def _iso(ts: float) -> str:
    return _dt.datetime.fromtimestamp(ts, _dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def target_of(kind: str, key: str) -> dict:
    """The key spelled out for a reader: grants are `<app_id>|<mailbox>`, Entra assignments the app id, Graph/EWS
    consents `<app_id>|<permission>`, access policies their Identity."""
    if kind in ("sendas", "fullaccess") and "|" in key:
        app_id, mailbox = key.split("|", 1)
        return {"app_id": app_id, "mailbox": mailbox, "right": "SendAs" if kind == "sendas" else "FullAccess"}
    if kind == "entra_assignment":
        return {"app_id": key, "permission": "SMTP.SendAsApp"}
    if kind == "mail_consent" and "|" in key:  # executor/aap.py: a Graph/EWS consent
        app_id, permission = key.split("|", 1)
        return {"app_id": app_id, "permission": permission}
    if kind == "access_policy":
        return {"policy": key}
    return {"key": key}


class UndoLog:
    """Appends records to `<plan>/undo-log.jsonl`, each batch of lines flushed and fsynced before returning."""

    def __init__(self, plan_dir: Path, *, clock) -> None:
        self.path = Path(plan_dir) / UNDO_LOG_NAME
        self._clock = clock

    def exists(self) -> bool:
        return self.path.exists() and self.path.stat().st_size > 0

    def append(self, records: list[dict]) -> None:
        """Write the records durably, or raise JournalWriteError (nothing after it may be sent)."""
        if not records:
            return
        now = _iso(self._clock())
        text = "".join(json.dumps({"record": r["record"], "time": now, **{k: v for k, v in r.items()
                                                                          if k != "record"}},
                                  default=str, ensure_ascii=False) + "\n" for r in records)
        created = not self.path.exists()
        try:
            self._write(text)
            if created:
                _fsync_dir(self.path.parent)  # the new file's name is durable too, not just its bytes
        except OSError as exc:
            raise write_error("the undo log", self.path, exc) from None

    def _write(self, text: str) -> None:
        data = text.encode("utf-8")
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            if _ends_torn(self.path):  # a write cut short (a kill, a full disk): end that line, never extend it
                data = b"\n" + data
            view = memoryview(data)
            while view:  # one write call for the whole batch of lines as a rule; loop on a short write
                written = os.write(fd, view)
                view = view[written:]
            os.fsync(fd)
        finally:
            os.close(fd)

    def note_plan(self, plan_sha256: str) -> None:
        if not self.exists():
            self.append([{"record": "plan", "format": FORMAT, "plan_sha256": plan_sha256}])

    def removals(self, items: list[dict]) -> None:
        self.append([{"record": "removal", "batch": it["batch"], "generation": it["generation"],
                      "phase": it["phase"], "step": it["step"], "kind": it["kind"], "key": it["key"], "op": it["op"],
                      "target": target_of(it["kind"], it["key"]), "prior": it.get("prior")}
                     for it in items if it["op"] in DESTRUCTIVE_OPS])

    def object(self, kind: str, key: str, *, state: str, batch: int | None = None, name: str | None = None,
               identity: str | None = None) -> None:
        self.append([{"record": "object", "kind": kind, "key": key, "state": state, "batch": batch, "name": name,
                      "identity": identity}])

    def batch(self, batch: int, generation: int, state: str) -> None:
        self.append([{"record": "batch", "batch": batch, "generation": generation, "state": state}])


def _ends_torn(path: Path) -> bool:
    with open(path, "rb") as fh:
        fh.seek(0, os.SEEK_END)
        if fh.tell() == 0:
            return False
        fh.seek(-1, os.SEEK_END)
        return fh.read(1) != b"\n"


def _fsync_dir(folder: Path) -> None:
    if os.name != "posix":  # Windows cannot open a directory; NTFS journals the name with the file
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# ---- reading -------------------------------------------------------------------------------------------------

@dataclass
class UndoRecords:
    """What an undo log says, folded: the first prior state of each removal (a resumed run's later record of the
    same removal may hold the already-changed state, as in the journal), each object's and batch's last state."""

    plan_sha256: str | None = None
    removals: dict[tuple, dict] = field(default_factory=dict)  # (batch, generation, phase, kind, key, op) -> record
    objects: dict[tuple[str, str], dict] = field(default_factory=dict)  # (kind, key) -> last record
    batches: dict[int, dict] = field(default_factory=dict)  # batch -> last record
    lines: int = 0
    torn_tail: bool = False
    torn_lines: list[int] = field(default_factory=list)  # records cut short and ended by the next append

    @property
    def empty(self) -> bool:
        return not (self.removals or self.objects or self.batches)


def read_undo_log(path: Path) -> UndoRecords:
    """Parse the log. A last line without its newline is a write a crash cut short (nothing was sent after it):
    it is skipped. Any other unreadable line is an InputError naming it."""
    from migrator.errors import InputError

    out = UndoRecords()
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        return out
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read the undo log: {exc}", path=str(path)) from None
    lines = text.split("\n")
    tail = lines.pop()  # "" when the file ends with a newline
    if tail.strip():
        out.torn_tail = True
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
            kind = rec["record"]
        except (ValueError, KeyError, TypeError):
            if line.startswith('{"record": '):  # a record cut short (its write never completed, so nothing was
                out.torn_lines.append(number)  # sent after it): skipped
                continue
            raise InputError("not an undo-log record (JSON object with a 'record' field)", path=str(path),
                             row=number) from None
        out.lines += 1
        try:
            if kind == "plan":
                out.plan_sha256 = out.plan_sha256 or rec["plan_sha256"]
            elif kind == "removal":
                ident = (int(rec["batch"]), int(rec["generation"]), rec["phase"], rec["kind"], rec["key"], rec["op"])
                out.removals.setdefault(ident, rec)
            elif kind == "object":
                prev = out.objects.get((rec["kind"], rec["key"]), {})
                merged = {**prev, **{k: v for k, v in rec.items() if v is not None}}
                if rec["state"] == "intent" and prev.get("state") == "removed":
                    merged["identity"] = None  # created again after a rollback: the old identity is gone
                out.objects[(rec["kind"], rec["key"])] = merged
            elif kind == "batch":
                out.batches[int(rec["batch"])] = rec
        except (KeyError, TypeError, ValueError):
            raise InputError(f"undo-log record {kind!r} lacks a field or has a bad value", path=str(path),
                             row=number) from None
    return out


# ---- rebuilding a journal ------------------------------------------------------------------------------------

def replay(journal, records: UndoRecords) -> dict[str, int]:
    """Fill an empty journal from the log: batch states, removals with their prior state, created objects.

    The rebuilt actions are marked `intent`: whether the write went out is unknown, and rollback reads the
    tenant before it restores anything, so that does not matter."""
    counts = {"batches": 0, "removals": 0, "objects": 0}
    for batch, rec in sorted(records.batches.items()):
        journal.set_batch_state(batch, rec["state"], int(rec["generation"]))
        counts["batches"] += 1
    items = [{"batch": r["batch"], "generation": r["generation"], "phase": r["phase"], "step": r.get("step") or "",
              "kind": r["kind"], "key": r["key"], "op": r["op"], "prior": r.get("prior")}
             for r in records.removals.values()]
    journal.record_intents(items)
    counts["removals"] = len(items)
    for (kind, key), rec in sorted(records.objects.items()):
        journal.claim_object(kind, key, rec.get("name") or key, int(rec.get("batch") or 0))
        if rec.get("state") in ("created", "removed"):
            journal.set_object(kind, key, rec["state"], identity=rec.get("identity"))
        counts["objects"] += 1
    return counts


def disagreements(journal, records: UndoRecords, *, log_present: bool) -> list[str]:
    """Where the journal and the undo log tell different stories about removals (for `status`)."""
    actions = {(a.batch, a.generation, a.phase, a.kind, a.key, a.op): a for a in journal.actions()
               if a.op in DESTRUCTIVE_OPS}
    if not actions and records.empty:
        return []
    if not log_present:
        return [f"the journal records {len(actions)} removal(s) but {UNDO_LOG_NAME} is missing: if journal.db is "
                "lost too, nothing can restore them. Keep a copy of the plan folder"]
    out = []
    only_journal = sorted(set(actions) - set(records.removals))
    only_log = sorted(set(records.removals) - set(actions))
    differ = sorted(k for k in set(actions) & set(records.removals)
                    if _canon(actions[k].prior) != _canon(records.removals[k].get("prior")))
    if only_journal:
        out.append(f"{len(only_journal)} removal(s) in the journal are not in {UNDO_LOG_NAME} (e.g. batch "
                   f"{only_journal[0][0]} {only_journal[0][3]} {only_journal[0][4]})")
    if only_log:
        out.append(f"{len(only_log)} removal(s) in {UNDO_LOG_NAME} are not in the journal (e.g. batch {only_log[0][0]}"
                   f" {only_log[0][3]} {only_log[0][4]}): a run stopped between the two records (the removal was "
                   "then never sent), or journal.db was replaced")
    if differ:
        out.append(f"{len(differ)} removal(s) have a different prior state in the journal and in {UNDO_LOG_NAME} "
                   f"(e.g. batch {differ[0][0]} {differ[0][3]} {differ[0][4]})")
    if records.torn_tail or records.torn_lines:
        where = ", ".join(map(str, records.torn_lines[:5])) or "the last"
        out.append(f"{UNDO_LOG_NAME}: line(s) {where} were cut short (a crash or a full disk while writing them; "
                   "nothing was sent after such a line, so nothing is missing)")
    return out


def _canon(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str)
