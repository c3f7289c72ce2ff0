"""What `migrator doctor` found: one Finding per assumption, the verdicts, doctor.json and the terminal lines."""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

VERIFIED, DIFFERS, CANNOT_TELL = "verified", "differs", "cannot tell"
DOCTOR_FILE = "doctor.json"
FORMAT = 1


@dataclass
class Finding:
    """One assumption of the tool checked against the tenant."""

    key: str  # stable id: cmdlets, trustee_names, fullaccess_scan, admin_roles, smtp_role, token_lifetimes, ...
    assumption: str  # what the tool assumes, in a sentence
    verdict: str  # verified | differs | cannot tell
    detail: str  # what was seen
    action: str = ""  # what the tool will do about it (for differs / cannot tell)
    blocking: bool = False  # execute refuses while this holds
    data: dict[str, Any] = field(default_factory=dict)  # machine-readable facts (adaptations read these)

    def line(self) -> str:
        mark = {VERIFIED: "ok", DIFFERS: "!!", CANNOT_TELL: "??"}.get(self.verdict, "  ")
        text = f"[{mark}] {self.key}: {self.verdict} -- {self.detail}"
        if self.action:
            text += f"\n       the tool will: {self.action}"
        if self.blocking:
            text += "\n       BLOCKING: execute refuses until this is resolved"
        return text


@dataclass
class DoctorReport:
    tenant_id: str
    plan: str | None
    created: float
    findings: list[Finding]
    calls: dict[str, int] = field(default_factory=dict)

    @property
    def blocking(self) -> list[Finding]:
        return [f for f in self.findings if f.blocking]

    def finding(self, key: str) -> Finding | None:
        return next((f for f in self.findings if f.key == key), None)

    def to_dict(self) -> dict:
        return {"format": FORMAT, "tenant_id": self.tenant_id, "plan": self.plan, "created": self.created,
                "verdicts": {f.key: f.verdict for f in self.findings},
                "blocking": [f.key for f in self.blocking], "findings": [asdict(f) for f in self.findings],
                "calls": self.calls}

    @classmethod
    def from_dict(cls, data: dict) -> DoctorReport:
        return cls(data.get("tenant_id", ""), data.get("plan"), float(data.get("created", 0)),
                   [Finding(**f) for f in data.get("findings", [])], dict(data.get("calls", {})))

    def render(self) -> str:
        lines = [f"Doctor for tenant {self.tenant_id}" + (f", plan {self.plan}" if self.plan else "") + ":"]
        lines += [f.line() for f in self.findings]
        counts = {v: sum(1 for f in self.findings if f.verdict == v) for v in (VERIFIED, DIFFERS, CANNOT_TELL)}
        lines.append(f"{counts[VERIFIED]} verified, {counts[DIFFERS]} differ, {counts[CANNOT_TELL]} cannot tell; "
                     f"{len(self.blocking)} blocking.")
        return "\n".join(lines)


def write_report(report: DoctorReport, path: Path) -> Path:
    """Write doctor.json atomically (a temporary file renamed over it)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(report.to_dict(), indent=2, sort_keys=False) + "\n", encoding="utf-8")
    os.replace(tmp, path)
    return path


def read_report(path: Path) -> DoctorReport | None:
    try:
        return DoctorReport.from_dict(json.loads(Path(path).read_text(encoding="utf-8")))
    except (OSError, ValueError, TypeError, KeyError):
        return None


def fresh(report: DoctorReport | None, *, tenant_id: str, plan: str | None, max_age: float) -> bool:
    """A report of the same tenant and plan younger than `max_age` seconds, with nothing blocking."""
    return (report is not None and report.tenant_id == tenant_id and report.plan == plan
            and time.time() - report.created < max_age and not report.blocking)
