"""What the sandbox's HTTP layer and its tenant state exchange: the caller, results and errors.

The server renders a CmdletError as Exchange's REST error (`details[0].message` = `ErrId|Exception.Type|text`,
HTTP status `http_status`) and a GraphError as Graph's `{"error": {...}}` body.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

# Fully qualified .NET names of the exceptions Exchange reports; the short name is what clients match on.
_NAMESPACES = {
    "ManagementObjectNotFoundException": "Microsoft.Exchange.Configuration.Tasks",
    "ManagementObjectAmbiguousException": "Microsoft.Exchange.Configuration.Tasks",
    "ADObjectAlreadyExistsException": "Microsoft.Exchange.Data.Directory",
    "ProxyAddressExistsException": "Microsoft.Exchange.Data.Directory",
    "ParameterBindingException": "System.Management.Automation",
    "CommandNotFoundException": "System.Management.Automation",
    "DataValidationException": "Microsoft.Exchange.Data",
    "InvalidOperationException": "System",
    "MemberAlreadyExistsException": "Microsoft.Exchange.Management.RecipientTasks",
    "MemberNotFoundException": "Microsoft.Exchange.Management.RecipientTasks",
    "UnauthorizedAccessException": "System",
    "ArgumentException": "System",
    "RecipientTaskException": "Microsoft.Exchange.Configuration.Tasks",
}

# Directory roles (Entra) that may run Exchange cmdlets. Reads: any of READ_ROLES; writes: WRITE_ROLES.
WRITE_ROLES = frozenset({"Exchange Administrator", "Global Administrator"})
READ_ROLES = WRITE_ROLES | frozenset({"Global Reader", "Exchange Recipient Administrator", "Security Reader"})


@dataclass(frozen=True)
class Caller:
    """Who calls: the token's app id, its app-role claims and the app's Entra directory roles."""

    app_id: str
    roles: frozenset[str] = field(default_factory=frozenset)  # token `roles` claim
    directory_roles: frozenset[str] = field(default_factory=frozenset)

    def __post_init__(self) -> None:
        object.__setattr__(self, "app_id", (self.app_id or "").strip().lower())
        object.__setattr__(self, "roles", frozenset(self.roles))
        object.__setattr__(self, "directory_roles", frozenset(self.directory_roles))

    @property
    def can_read(self) -> bool:
        return bool(self.directory_roles & READ_ROLES)

    @property
    def can_write(self) -> bool:
        return bool(self.directory_roles & WRITE_ROLES)


class CmdletError(Exception):
    """A cmdlet failure as Exchange reports it. `exception_type` is the short .NET name (e.g.
    ManagementObjectNotFoundException); `http_status` is what the REST endpoint answers with."""

    def __init__(self, exception_type: str, message: str, errid: str | None = None, *, http_status: int = 400,
                 cmdlet: str = "") -> None:
        super().__init__(message)
        self.exception_type = exception_type
        self.message = message
        self.cmdlet = cmdlet
        self.http_status = http_status
        # Exchange's ErrId looks like "Ex6F9304": stable per exception type and cmdlet.
        self.errid = errid or "Ex" + hashlib.sha1(f"{exception_type}|{cmdlet}".encode()).hexdigest()[:6].upper()

    @property
    def full_type(self) -> str:
        ns = _NAMESPACES.get(self.exception_type)
        return f"{ns}.{self.exception_type}" if ns else self.exception_type

    def detail(self) -> str:
        """The `ErrId|Exception.Type|text` string of `error.details[0].message`."""
        return f"{self.errid}|{self.full_type}|{self.message}"

    def to_body(self) -> dict:
        """The REST error body Exchange's InvokeCommand returns."""
        return {"error": {"code": "BadRequest" if self.http_status == 400 else str(self.http_status),
                          "message": self.message,
                          "details": [{"code": "Context", "target": "", "message": self.detail()}],
                          "innererror": {"message": self.message, "type": self.full_type,
                                         "internalexception": {"message": self.message, "type": self.full_type}}}}

    def __repr__(self) -> str:
        return f"CmdletError({self.exception_type!r}, {self.message!r})"


class GraphError(Exception):
    """A Microsoft Graph error: HTTP status, `error.code`, `error.message`."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message

    def to_body(self, *, request_id: str = "", date: str = "") -> dict:
        return {"error": {"code": self.code, "message": self.message,
                          "innerError": {"date": date, "request-id": request_id, "client-request-id": request_id}}}

    def __repr__(self) -> str:
        return f"GraphError({self.status}, {self.code!r}, {self.message!r})"


class CmdletResult(list):
    """A cmdlet's output rows (JSON-ready dicts) plus the warnings Exchange returns in `@adminapi.warnings`."""

    def __init__(self, rows=(), warnings=()) -> None:
        super().__init__(rows)
        self.warnings: list[str] = list(warnings)
