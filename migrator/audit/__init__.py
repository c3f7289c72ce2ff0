"""`migrator audit`: keep a migrated tenant migrated. Read-only: compare the tenant with applied plans.

expected.py (what the plans and their journals say should be there, pure), observed.py (what the tenant holds,
read through the live inventory's reads), compare.py (findings and each app's reach, pure), and `run_audit` here,
which ties them together and renders the result as text, Markdown (for a ticket) or JSON.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from migrator.audit.compare import Finding, Reach, compare, reach
from migrator.audit.expected import expected_state
from migrator.audit.observed import read_observed


@dataclass
class AuditResult:
    plans: list[str]
    findings: list[Finding]
    reach: list[Reach]
    notes: list[str] = field(default_factory=list)
    apps: dict[str, str] = field(default_factory=dict)  # app id -> name
    api_calls: int = 0

    @property
    def clean(self) -> bool:
        return not self.findings and not any(r.extra or r.missing for r in self.reach)

    def to_dict(self) -> dict:
        return {"clean": self.clean, "plans": self.plans, "findings": [f.to_dict() for f in self.findings],
                "reach": [r.to_dict() for r in self.reach if r.extra or r.missing], "notes": self.notes,
                "api_calls": self.api_calls}


def run_audit(plan_paths: list[Path], profile: Path) -> AuditResult:
    from migrator.planner.plan import load_plan

    plans = [load_plan(p) for p in plan_paths]
    exp = expected_state(plans)
    obs = read_observed(profile)
    names = {e.app_id: e.name for e in exp.apps.values()}
    return AuditResult([str(p) for p in plan_paths], compare(exp, obs), reach(exp, obs), exp.notes, names,
                       obs.api_calls)


def _apps(result: AuditResult, finding: Finding) -> str:
    return ", ".join(result.apps.get(a) or a for a in finding.apps) or "-"


def render_text(result: AuditResult) -> str:
    lines = [f"Audit of {', '.join(result.plans)}: "
             + ("clean" if result.clean else f"{len(result.findings)} finding(s)")]
    lines += [f"  note: {n}" for n in result.notes]
    for f in result.findings:
        lines.append(f"  {f.kind}: {f.target}: {f.detail} [{f.effect}; apps: {_apps(result, f)}]")
    for r in result.reach:
        if r.extra or r.missing:
            lines.append(f"  reach of {r.name or r.app_id}: {r.now} mailboxes now, {r.planned} planned"
                         + (f"; over-granted {', '.join(r.extra[:5])}" if r.extra else "")
                         + (f"; cut off from {', '.join(r.missing[:5])}" if r.missing else ""))
    return "\n".join(lines)


def render_markdown(result: AuditResult) -> str:
    out = [f"# Audit: {'clean' if result.clean else f'{len(result.findings)} finding(s)'}", "",
           f"Plans: {', '.join(f'`{p}`' for p in result.plans)}. Read-only; {result.api_calls} API calls.", ""]
    out += [f"- {n}" for n in result.notes]
    if result.findings:
        out += ["", "| Finding | Object | What | Effect | Apps |", "|---|---|---|---|---|"]
        for f in result.findings:
            cells = [f.kind, f.target, f.detail, f.effect, _apps(result, f)]
            out.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    changed = [r for r in result.reach if r.extra or r.missing]
    if changed:
        out += ["", "| App | Reach now | Planned | Over-granted | Cut off from |", "|---|---:|---:|---|---|"]
        for r in changed:
            out.append(f"| {r.name or r.app_id} | {r.now} | {r.planned} | {', '.join(r.extra[:10])} | "
                       f"{', '.join(r.missing[:10])} |")
    return "\n".join(out) + "\n"


__all__ = ["AuditResult", "render_markdown", "render_text", "run_audit"]
