"""The sandbox tenant: an Exchange Online + Entra + Graph emulator the tool talks to over the real protocols.

State and semantics live here (state.py, cmdlets.py, graph_ops.py, opath.py, dataplane.py, timeline.py); the HTTPS
server, token service and faults build on `TenantState` (INTERNALS.md §3).
"""

from migrator.sandbox.api import Caller, CmdletError, CmdletResult, GraphError
from migrator.sandbox.clock import Clock
from migrator.sandbox.settings import SandboxSettings
from migrator.sandbox.state import TenantState
from migrator.sandbox.timeline import Report, check

__all__ = [
           "Caller",
           "Clock",
           "CmdletError",
           "CmdletResult",
           "GraphError",
           "Report",
           "SandboxSettings",
           "TenantState",
           "check",
]
