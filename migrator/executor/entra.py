"""Who changes the apps' Entra SMTP.SendAsApp app-role assignments: the cut-over removes them, a rollback re-grants
them. Everything else in a run needs only Exchange.ManageAsApp, Application.Read.All and the Exchange role.

The Graph permission for that write, AppRoleAssignment.ReadWrite.All, lets its holder grant itself any permission
in the tenant, so a run need not hold it. Three ways (`EntraWrites.mode`):
- `run`: the run's own profile holds it (one profile does everything; the default when its token has the role);
- `profile`: a second connection profile holds it (`--cutover-profile`), opened only when the cut-over or re-grant
  first has something to write, never for the rest of the run;
- `handover`: nobody here holds it: the step records the prior state as usual, writes the exact Microsoft.Graph
  PowerShell for a privileged admin into the plan folder (`handover-batch-N-<step>.ps1`), prints it and stops
  (exit 13). The next run reads the assignments back: once they are as the script leaves them, it goes on (the
  token wait after a cut-over starts then, later than the admin's change, which only lengthens it).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from migrator.exitcodes import ExitCode
from migrator.powershell.quote import ps_literal

EXIT_HANDOVER = ExitCode.HANDOVER
GRAPH_MODULE_SCOPES = "'AppRoleAssignment.ReadWrite.All', 'Application.Read.All'"


@dataclass
class EntraWrites:
    mode: str = "run"  # run | profile | handover
    open_graph: Callable[[], Any] | None = None  # mode profile: connects the second profile, checks its roles
    tenant_id: str = ""  # for Connect-MgGraph in a handover script

    def __post_init__(self) -> None:
        if self.mode not in ("run", "profile", "handover"):
            raise ValueError(f"unknown Entra write mode {self.mode!r}")
        if self.mode == "profile" and self.open_graph is None:
            raise ValueError("mode 'profile' needs open_graph")


@dataclass(frozen=True)
class Pending:
    """One app's assignment change left to a privileged admin."""

    app_id: str
    app_name: str
    sp_id: str  # the app's service principal (object id)
    assignment_ids: tuple[str, ...] = ()  # cut-over: the assignments to remove


@dataclass(frozen=True)
class PendingConsent:
    """One app's Entra consent of a Graph/EWS permission (Mail.Read, full_access_as_app, ...) left to a privileged
    admin: removed by the cut-over, granted back by a rollback."""

    app_id: str
    app_name: str
    sp_id: str  # the app's service principal (object id)
    permission: str
    resource_id: str  # the resource's service principal (Microsoft Graph, or Office 365 Exchange Online)
    role_id: str  # the app role of `permission` on that resource
    assignment_ids: tuple[str, ...] = ()  # cut-over: the assignments to remove


def _header(what: str, batch: int, tenant_id: str) -> list[str]:
    tenant = f" -TenantId {ps_literal(tenant_id)}" if tenant_id else ""
    return [
        f"# migrator: batch {batch}, {what}: handed over to a privileged administrator",
        f"# (written {time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime())}).",
        "# The run's own app does not hold AppRoleAssignment.ReadWrite.All. Run this once, signed in as an admin who",
        "# may change app role assignments (Privileged Role Administrator, or Cloud Application Administrator),",
        "# with the Microsoft.Graph PowerShell module (Microsoft.Graph.Applications). Then run the same migrator",
        "# command again: it reads the assignments back and goes on only when they are as this script leaves them.",
        "$ErrorActionPreference = 'Stop'",
        f"Connect-MgGraph{tenant} -Scopes {GRAPH_MODULE_SCOPES} -NoWelcome",
    ]


def cutover_script(batch: int, pending: list[Pending], resource_id: str, role_id: str, tenant_id: str = "",
                   consents: list[PendingConsent] | tuple[PendingConsent, ...] = ()) -> str:
    what = "remove the apps' Entra SMTP.SendAsApp assignments" if pending else ""
    if consents:
        what = (what + " and " if what else "remove the apps' ") + "Graph/EWS consents now served by RBAC"
    lines = _header(f"cut-over ({what})", batch, tenant_id)
    for p in sorted(pending, key=lambda p: p.app_id):
        lines.append(f"# app {p.app_id} ({p.app_name})")
        lines += [f"Remove-MgServicePrincipalAppRoleAssignment -ServicePrincipalId {ps_literal(p.sp_id)} "
                  f"-AppRoleAssignmentId {ps_literal(a)}" for a in p.assignment_ids]
    for c in _sorted(consents):
        lines.append(f"# app {c.app_id} ({c.app_name}): {c.permission}")
        lines += [f"Remove-MgServicePrincipalAppRoleAssignment -ServicePrincipalId {ps_literal(c.sp_id)} "
                  f"-AppRoleAssignmentId {ps_literal(a)}" for a in c.assignment_ids]
    lines += _verify(pending, resource_id, role_id, expect="none", consents=consents)
    return "\n".join(lines) + "\n"


def regrant_script(batch: int, pending: list[Pending], resource_id: str, role_id: str, tenant_id: str = "",
                   consents: list[PendingConsent] | tuple[PendingConsent, ...] = ()) -> str:
    what = "give the apps back their Entra SMTP.SendAsApp assignment" if pending else ""
    if consents:
        what = (what + " and " if what else "give the apps back ") + "their Graph/EWS consents"
    lines = _header(f"rollback re-grant ({what})", batch, tenant_id)
    for p in sorted(pending, key=lambda p: p.app_id):
        lines.append(f"# app {p.app_id} ({p.app_name})")
        lines.append(f"New-MgServicePrincipalAppRoleAssignment -ServicePrincipalId {ps_literal(p.sp_id)} "
                     f"-PrincipalId {ps_literal(p.sp_id)} -ResourceId {ps_literal(resource_id)} "
                     f"-AppRoleId {ps_literal(role_id)}")
    for c in _sorted(consents):
        lines.append(f"# app {c.app_id} ({c.app_name}): {c.permission}")
        lines.append(f"New-MgServicePrincipalAppRoleAssignment -ServicePrincipalId {ps_literal(c.sp_id)} "
                     f"-PrincipalId {ps_literal(c.sp_id)} -ResourceId {ps_literal(c.resource_id)} "
                     f"-AppRoleId {ps_literal(c.role_id)}")
    lines += _verify(pending, resource_id, role_id, expect="one", consents=consents)
    return "\n".join(lines) + "\n"


def _sorted(consents) -> list[PendingConsent]:
    return sorted(consents, key=lambda c: (c.app_id, c.permission))


def _verify(pending: list[Pending], resource_id: str, role_id: str, *, expect: str,
            consents: list[PendingConsent] | tuple[PendingConsent, ...] = ()) -> list[str]:
    perms = (["SMTP.SendAsApp"] if pending else []) + (["the Graph/EWS permissions"] if consents else [])
    want = (f"no {' or '.join(perms)} assignment is left" if expect == "none"
            else f"each app holds {' and '.join(perms)}")
    lines = [f"# Verify ({want}):"]
    checks = [(p.app_id, p.sp_id, resource_id, role_id) for p in sorted(pending, key=lambda p: p.app_id)]
    checks += [(f"{c.app_id} {c.permission}", c.sp_id, c.resource_id, c.role_id) for c in _sorted(consents)]
    for what, sp_id, res_id, rid in checks:
        lines.append(f"$left = @(Get-MgServicePrincipalAppRoleAssignment -ServicePrincipalId {ps_literal(sp_id)} "
                     f"-All | Where-Object {{ $_.ResourceId -eq {ps_literal(res_id)} -and $_.AppRoleId -eq "
                     f"{ps_literal(rid)} }})")
        check = "$left.Count -ne 0" if expect == "none" else "$left.Count -eq 0"
        lines.append(f"if ({check}) {{ throw {ps_literal(f'app {what}: not done')} }}")
    lines.append("Write-Output 'Done: run the same migrator command again.'")
    return lines


def handover_subject(pending: list[Pending], consents: list[PendingConsent]) -> tuple[int, str]:
    """(apps, what is handed over) for the hand-over message of a cut-over or a re-grant."""
    count = len({p.app_id for p in pending} | {c.app_id for c in consents})
    what = ("Entra SMTP.SendAsApp assignment" if not consents else
            "Entra Graph/EWS consents" if not pending else "Entra SMTP.SendAsApp assignment and Graph/EWS consents")
    return count, what


def write_handover(plan_dir: Path, batch: int, step: str, script: str) -> Path:
    """The script into the plan folder, atomically (a half-written script must never be run)."""
    path = Path(plan_dir) / f"handover-batch-{batch}-{step}.ps1"
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8-sig", newline="\r\n") as fh:  # a BOM: Windows PowerShell 5.1 reads UTF-8
        fh.write(script)
        fh.flush()
        os.fsync(fh.fileno())
    tmp.replace(path)
    return path


def handover_message(path: Path, count: int, what: str, *, assignment: str = "Entra SMTP.SendAsApp assignment") -> str:
    return (f"handed over: {count} app(s) need their {assignment} {what} by a privileged admin; "
            f"the commands are in {path.name} in the plan folder. Run the same command again once they are done: "
            "it verifies them and goes on")
