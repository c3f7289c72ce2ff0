"""The PowerShell a tenant write stands for, for `execute --dry-run` / `rollback --dry-run` (a change board reads it).

`capture(spec, method, args, kwargs)` runs the real client method (ExchangeClient or GraphClient) against a
recorder instead of the network: the method builds exactly the cmdlet and parameters (or the Graph request) it
would send, and the recorder keeps them. `render(call, label)` then writes the ExchangeOnlineManagement V3 cmdlet
or the Microsoft.Graph cmdlet of the same request, every value a single-quoted literal (quote.py), with a comment
naming the app or group an id belongs to. So the dry run prints what the real run sends, not a description of it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from migrator.powershell.quote import ps_array, ps_literal


@dataclass(frozen=True)
class Call:
    """One request a client method would send: a cmdlet with its parameters, or a Graph request."""

    kind: str  # "cmdlet" | "graph"
    name: str  # cmdlet name, or "POST /servicePrincipals/{id}/appRoleAssignments"-style operation
    params: dict = field(default_factory=dict)
    path: str = ""  # graph: the request path


class _Recorder:
    """Stands in for a client's transport: `invoke` and `request` record instead of sending."""

    def __init__(self) -> None:
        self.calls: list[Call] = []

    def invoke(self, cmdlet: str, params: dict | None = None, select: list[str] | None = None, *,
               scan: bool = False) -> list[dict]:
        self.calls.append(Call("cmdlet", cmdlet, dict(params or {})))
        return []

    def request(self, method: str, path: str, *, json: Any = None, operation: str | None = None) -> Any:
        self.calls.append(Call("graph", f"{method} {path}", dict(json or {}), path))
        return {}


def capture(spec: type, method: str, args: tuple, kwargs: dict) -> list[Call]:
    """The requests `spec.method(*args, **kwargs)` would send. `invoke` itself (any cmdlet) is recorded as is."""
    recorder = _Recorder()
    if method == "invoke":
        recorder.invoke(*args, **kwargs)
        return recorder.calls
    function = getattr(spec, method)
    shadow: Any = object.__new__(spec)  # the real class's method logic, with the transport replaced
    shadow.invoke = recorder.invoke
    shadow.request = recorder.request
    function(shadow, *args, **kwargs)
    return recorder.calls


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "$true" if value else "$false"
    if isinstance(value, (list, tuple, set, frozenset)):
        items = list(value)
        return ps_array(items, per_line=4, indent="        ") if len(items) > 4 else ps_array(items, per_line=4)
    return ps_literal(value)


def cmdlet_line(cmdlet: str, params: dict) -> str:
    """`Verb-Noun -Name 'value' -Switch:$false ...`, parameters in the order the client sends them."""
    parts = [cmdlet]
    for key, value in params.items():
        if isinstance(value, bool):
            parts.append(f"-{key}:{_value(value)}")
        else:
            parts.append(f"-{key} {_value(value)}")
    return " ".join(parts)


_GRAPH_GRANT = "/appRoleAssignments"


def graph_line(call: Call) -> str:
    """The Microsoft.Graph PowerShell cmdlet of a Graph request the executor sends."""
    method, _, path = call.name.partition(" ")
    segments = [s for s in path.split("/") if s]
    if method == "POST" and len(segments) == 3 and segments[0] == "servicePrincipals" and path.endswith(_GRAPH_GRANT):
        params = {"ServicePrincipalId": segments[1], **{k[0].upper() + k[1:]: v for k, v in call.params.items()}}
        return cmdlet_line("New-MgServicePrincipalAppRoleAssignment", params)
    if method == "DELETE" and len(segments) == 4 and segments[2] == "appRoleAssignments":
        return cmdlet_line("Remove-MgServicePrincipalAppRoleAssignment",
                           {"ServicePrincipalId": segments[1], "AppRoleAssignmentId": segments[3], "Confirm": False})
    body = f" -Body {ps_literal(_json(call.params))}" if call.params else ""
    return f"Invoke-MgGraphRequest -Method {method} -Uri {ps_literal('/v1.0' + path)}{body}"


def _json(value: Any) -> str:
    import json

    return json.dumps(value, sort_keys=True)


def render(call: Call, label: Callable[[str], str | None] | None = None) -> str:
    """The PowerShell line of `call`, with a trailing comment naming the apps/groups its ids stand for."""
    line = cmdlet_line(call.name, call.params) if call.kind == "cmdlet" else graph_line(call)
    if label is None:
        return line
    names = []
    for value in _ids(call):
        name = label(value)
        if name and name not in names:
            names.append(name)
    return f"{line}  # {'; '.join(names)}" if names else line


def _ids(call: Call) -> list[str]:
    values = [v for v in call.params.values() if isinstance(v, str)]
    if call.kind == "graph":
        values = [s for s in call.path.split("/") if s] + values
    return values


def dry_run_header(command: str, tenant: str, plan: str) -> str:
    """The first lines of a dry run: what it is and that nothing is sent (PowerShell comments)."""
    return (f"# migrator {command} --dry-run: tenant {tenant}, plan {plan}\n"
            "# Each command below is the ExchangeOnlineManagement V3 / Microsoft.Graph cmdlet a real run sends,\n"
            "# in order.\n"
            "# Nothing was changed: no write was sent to the tenant.")


DRY_RUN_FOOTER = "# Dry run finished: nothing was changed."
