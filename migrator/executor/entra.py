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


def cutover_script(batch: int, pending: list[Pending], resource_id: str, role_id: str, tenant_id: str = "") -> str:
    lines = _header("cut-over (remove the apps' Entra SMTP.SendAsApp assignments)", batch, tenant_id)
    for p in sorted(pending, key=lambda p: p.app_id):
        lines.append(f"# app {p.app_id} ({p.app_name})")
        lines += [f"Remove-MgServicePrincipalAppRoleAssignment -ServicePrincipalId {ps_literal(p.sp_id)} "
                  f"-AppRoleAssignmentId {ps_literal(a)}" for a in p.assignment_ids]
    lines += _verify(pending, resource_id, role_id, expect="none")
    return "\n".join(lines) + "\n"


def regrant_script(batch: int, pending: list[Pending], resource_id: str, role_id: str, tenant_id: str = "") -> str:
    lines = _header("rollback re-grant (give the apps back their Entra SMTP.SendAsApp assignment)", batch,
                    tenant_id)
    for p in sorted(pending, key=lambda p: p.app_id):
        lines.append(f"# app {p.app_id} ({p.app_name})")
        lines.append(f"New-MgServicePrincipalAppRoleAssignment -ServicePrincipalId {ps_literal(p.sp_id)} "
                     f"-PrincipalId {ps_literal(p.sp_id)} -ResourceId {ps_literal(resource_id)} "
                     f"-AppRoleId {ps_literal(role_id)}")
    lines += _verify(pending, resource_id, role_id, expect="one")
    return "\n".join(lines) + "\n"


def _verify(pending: list[Pending], resource_id: str, role_id: str, *, expect: str) -> list[str]:
    want = "no SMTP.SendAsApp assignment is left" if expect == "none" else "each app holds SMTP.SendAsApp"
    lines = [f"# Verify ({want}):"]
    for p in sorted(pending, key=lambda p: p.app_id):
        lines.append(f"$left = @(Get-MgServicePrincipalAppRoleAssignment -ServicePrincipalId {ps_literal(p.sp_id)} "
                     f"-All | Where-Object {{ $_.ResourceId -eq {ps_literal(resource_id)} -and $_.AppRoleId -eq "
                     f"{ps_literal(role_id)} }})")
        check = "$left.Count -ne 0" if expect == "none" else "$left.Count -eq 0"
        lines.append(f"if ({check}) {{ throw {ps_literal(f'app {p.app_id}: not done')} }}")
    lines.append("Write-Output 'Done: run the same migrator command again.'")
    return lines


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


def handover_message(path: Path, count: int, what: str) -> str:
    return (f"handed over: {count} app(s) need their Entra SMTP.SendAsApp assignment {what} by a privileged admin; "
            f"the commands are in {path.name} in the plan folder. Run the same command again once they are done: "
            "it verifies them and goes on")
