"""The run log: `<plan>/run-log.jsonl`, one JSON line per write sent to the tenant, for the change record.

Each line: `time` (UTC ISO 8601), `run` (the journal's run id), `phase`, `batch`, `step`, `cmdlet` (the Exchange cmdlet
or the Microsoft.Graph cmdlet of the request), `target` (the object it changes: identity, and trustee/user/member/app
where the cmdlet has one) and `outcome` (`ok`, or `failed: <error type>: <message>`). No secret ever: the writes carry
none, and error text goes through redact(). Appended (and flushed) after each answer, so a file read later shows
what was sent and how it ended; the file is created by the first write, so a run that writes nothing leaves none.
The journal stays the record of state; this log is for people (an auditor, a change board).
"""

from __future__ import annotations

import datetime as _dt
import json
import threading
from pathlib import Path

RUN_LOG_NAME = "run-log.jsonl"
# The parameters that name what a cmdlet changes, in the order they are shown.
TARGET_PARAMS = ("Identity", "Name", "Trustee", "User", "Member", "App", "AppId", "ServicePrincipalId")


def target_of(call) -> str:
    """What a write changes, in words: `Identity=x Trustee=y` (cmdlets) or the Graph path."""
    if call.kind == "graph":
        return call.path
    shown = [f"{k}={call.params[k]}" for k in TARGET_PARAMS if isinstance(call.params.get(k), str)]
    if "Members" in call.params:
        shown.append(f"Members=<{len(call.params['Members'])}>")
    return " ".join(shown)


def cmdlet_of(call) -> str:
    if call.kind == "cmdlet":
        return call.name
    method = call.name.split(" ", 1)[0]
    return {"POST": "New-MgServicePrincipalAppRoleAssignment",
            "DELETE": "Remove-MgServicePrincipalAppRoleAssignment"}.get(method, f"Invoke-MgGraphRequest {method}")


class RunLog:
    """Appends a line per write. Thread-safe (the executor sends some writes from a small pool)."""

    def __init__(self, plan_dir: Path, *, clock=None) -> None:
        import time

        self.path = Path(plan_dir) / RUN_LOG_NAME
        self._clock = clock or time.time
        self._lock = threading.Lock()

    def write(self, *, run: int | None, phase: str, batch: int | None, step: str, calls: list,
              outcome: str) -> None:
        stamp = _dt.datetime.fromtimestamp(self._clock(), _dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        lines = "".join(json.dumps({"time": stamp, "run": run, "phase": phase, "batch": batch, "step": step,
                                    "cmdlet": cmdlet_of(call), "target": target_of(call), "outcome": outcome},
                                   ensure_ascii=False) + "\n" for call in calls)
        with self._lock, open(self.path, "a", encoding="utf-8", newline="\n") as fh:
            fh.write(lines)
            fh.flush()


def read_run_log(plan_dir: Path) -> list[dict]:
    path = Path(plan_dir) / RUN_LOG_NAME
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
