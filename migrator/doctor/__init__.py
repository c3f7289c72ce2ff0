"""`migrator doctor`: read-only checks of the assumptions the tool makes about a real tenant, before any write.

Each assumption gets a verdict: verified, differs (and what the tool will do about it), or cannot tell. The result
is written to doctor.json (the plan folder, the current folder, or --out). `execute` runs the same checks (all but
the FullAccess scan, an inventory matter) as its preflight, refuses on a blocking finding, and adapts to what they
found (trustee matching); the token wait follows the token lifetime policies read again at the cut-over.

Assumptions it cannot check (README lists them): the claim rule of the data plane (whether a token with the
SMTP.SendAsApp claim is served through RBAC), how long RBAC changes take to propagate and restored grants to apply,
how long Graph takes to replicate an app-role assignment, and whether a Get-EXO* name accepted by one endpoint is
accepted by every front end.
"""

from __future__ import annotations

import time
from pathlib import Path

from migrator.doctor.checks import (
    Probe,
    check_access_policies,
    check_admin_roles,
    check_cmdlets,
    check_fullaccess_scan,
    check_fullaccess_smtp,
    check_rbac_assignments,
    check_smtp_role,
    check_token_lifetimes,
    check_trustee_names,
)
from migrator.doctor.findings import DOCTOR_FILE, DoctorReport, fresh, read_report, write_report
from migrator.errors import MigratorError
from migrator.exitcodes import ExitCode

ALL_CHECKS = (check_admin_roles, check_cmdlets, check_smtp_role, check_trustee_names, check_fullaccess_scan,
              check_token_lifetimes, check_rbac_assignments, check_fullaccess_smtp, check_access_policies)
PREFLIGHT_CHECKS = tuple(c for c in ALL_CHECKS if c is not check_fullaccess_scan)
PREFLIGHT_MAX_AGE = 3600.0  # s: a clean doctor.json of the same plan and tenant younger than this is reused


class DoctorBlocked(MigratorError):
    """A doctor finding blocks the run (before any write)."""

    exit_code = int(ExitCode.DOCTOR_BLOCKED)


def run_doctor(conn, plan=None, *, checks=ALL_CHECKS, sample: int = 5, seed: int = 0,
               token_lifetime: float | None = None, cutover: bool = True) -> DoctorReport:
    """Run the checks (read-only) and collect their findings."""
    probe = Probe(conn, plan, sample=sample, seed=seed, token_lifetime=token_lifetime, cutover=cutover)
    before = dict(getattr(conn.session, "calls", {}) or {})
    findings = [check(probe) for check in checks]
    after = dict(getattr(conn.session, "calls", {}) or {})
    calls = {k: v - before.get(k, 0) for k, v in after.items() if v - before.get(k, 0)}
    return DoctorReport(conn.profile.tenant_id, _plan_key(plan), time.time(), findings, calls)


def _plan_key(plan) -> str | None:
    return str(Path(plan.path).resolve()) if plan is not None else None


def preflight(conn, plan, settings, *, write: bool = True, output=None) -> DoctorReport:
    """`execute`'s preflight: run (or reuse a fresh clean) doctor.json in the plan folder, refuse on a blocking
    finding, adapt `settings` to the rest (trustee matching). Read-only towards the tenant."""
    path = Path(plan.path) / DOCTOR_FILE
    report = read_report(path)
    if not fresh(report, tenant_id=conn.profile.tenant_id, plan=_plan_key(plan), max_age=PREFLIGHT_MAX_AGE):
        report = run_doctor(conn, plan, checks=PREFLIGHT_CHECKS, token_lifetime=settings.token_lifetime,
                            cutover=settings.cutover)
        if write:
            write_report(report, path)
    assert report is not None
    if report.blocking:
        lines = "\n".join(f.line() for f in report.blocking)
        raise DoctorBlocked(f"doctor: {len(report.blocking)} blocking finding(s), nothing was written:\n{lines}\n"
                            f"Details in {path if write else 'the doctor report'}; "
                            "`migrator doctor --profile P PLAN` checks again")
    for finding in report.findings:
        if finding.verdict != "verified" and output is not None:
            output.info(f"doctor: {finding.key} {finding.verdict}: {finding.action or finding.detail}")
    names = report.finding("trustee_names")
    if names is not None and names.data.get("match") == "object_id":
        settings.trustee_match = "object_id"
        if output is not None:
            output.info("doctor: permission rows name service principals by ObjectId: trustees are matched by "
                        "ObjectId")
    return report


__all__ = [
    "ALL_CHECKS",
    "DOCTOR_FILE",
    "PREFLIGHT_CHECKS",
    "DoctorBlocked",
    "DoctorReport",
    "preflight",
    "read_report",
    "run_doctor",
    "write_report",
]
