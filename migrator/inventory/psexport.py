"""Read one PowerShell `Export-Csv` file and recognise which cmdlet produced it, by its columns only.

Copes with what real exports carry (docs/exchange.md §3): a `#TYPE ...` first line, UTF-8 with or without BOM,
UTF-16 LE/BE with BOM, the remoting columns (PSComputerName, RunspaceId, PSShowComputerName), and multi-valued
cells written as `SendAs`, `{SendAs}` or `FullAccess, ReadPermission`. Column names are matched
case-insensitively, as PowerShell matches property names.

Row numbers are the ones a spreadsheet shows for the file: the first record is row 1 (the `#TYPE` line when
present, else the header).
"""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass, field
from pathlib import Path

from migrator.csvio import sha256_file
from migrator.errors import InputError

# Kinds, with the cmdlet an admin would recognise.
SERVICE_PRINCIPALS = "service_principals"
MAILBOXES = "mailboxes"
RECIPIENT_PERMISSIONS = "recipient_permissions"
MAILBOX_PERMISSIONS = "mailbox_permissions"
GROUPS = "groups"
GROUP_MEMBERS = "group_members"
APP_ROLE_ASSIGNMENTS = "app_role_assignments"
ACCESS_POLICIES = "access_policies"  # Get-ApplicationAccessPolicy
APP_ROLE_ASSIGNED_TO = "app_role_assigned_to"  # a resource's appRoleAssignedTo (who holds its app roles)
ROLE_ASSIGNMENTS = "role_assignments"  # Exchange RBAC: Get-ManagementRoleAssignment
MANAGEMENT_SCOPES = "management_scopes"  # Get-ManagementScope
EMPTY = "empty"  # Export-Csv given no rows writes an empty file: nothing to recognise, nothing to read

CMDLETS = {
    SERVICE_PRINCIPALS: "Get-ServicePrincipal",
    MAILBOXES: "Get-EXOMailbox/Get-Mailbox",
    RECIPIENT_PERMISSIONS: "Get-RecipientPermission",
    MAILBOX_PERMISSIONS: "Get-MailboxPermission/Get-EXOMailboxPermission",
    GROUPS: "Get-DistributionGroup",
    GROUP_MEMBERS: "Get-DistributionGroupMember (with a GroupIdentity column)",
    APP_ROLE_ASSIGNMENTS: "Get-MgServicePrincipalAppRoleAssignment (with an AppRoleValue column)",
    ACCESS_POLICIES: "Get-ApplicationAccessPolicy",
    APP_ROLE_ASSIGNED_TO: "Get-MgServicePrincipalAppRoleAssignedTo (with PrincipalAppId and AppRoleValue columns)",
    ROLE_ASSIGNMENTS: "Get-ManagementRoleAssignment",
    MANAGEMENT_SCOPES: "Get-ManagementScope",
    EMPTY: "(empty file)",
}

# Columns (lower case) each kind must carry once recognised; a missing one is an error naming the file.
REQUIRED = {
    SERVICE_PRINCIPALS: ("appid", "objectid"),
    MAILBOXES: ("primarysmtpaddress",),
    RECIPIENT_PERMISSIONS: ("identity", "trustee", "accessrights", "accesscontroltype", "isinherited"),
    MAILBOX_PERMISSIONS: ("identity", "user", "accessrights", "deny", "isinherited"),
    GROUPS: ("primarysmtpaddress", "distinguishedname"),
    GROUP_MEMBERS: (),  # checked in recognise(): one group column and one member column
    # Graph's rows name the role by its id only; the export script adds its value (SMTP.SendAsApp, ...)
    APP_ROLE_ASSIGNMENTS: ("principalid", "resourcedisplayname", "approlevalue"),
    ACCESS_POLICIES: ("identity", "appid", "accessright", "scopename", "scopeidentityraw"),
    APP_ROLE_ASSIGNED_TO: ("principalid", "principalappid", "resourcedisplayname", "approlevalue"),
    ROLE_ASSIGNMENTS: ("name", "role", "customresourcescope"),  # and RoleAssigneeName or RoleAssignee
    MANAGEMENT_SCOPES: ("name", "recipientfilter"),
}

GROUP_ID_COLUMNS = ("groupidentity", "groupprimarysmtpaddress", "group")
MEMBER_ID_COLUMNS = ("primarysmtpaddress", "externaldirectoryobjectid", "identity", "name")
GROUP_MARKERS = ("grouptype", "memberjoinrestriction", "memberdepartrestriction", "managedby")

NOISE_COLUMNS = ("pscomputername", "runspaceid", "psshowcomputername")


@dataclass
class ExportFile:
    path: Path
    kind: str
    columns: list[str]  # as written in the file
    rows: list[tuple[int, dict[str, str]]] = field(default_factory=list)  # (row number, {lower column: value})
    sha256: str = ""
    encoding: str = ""
    type_line: str = ""  # the `#TYPE ...` line, when present

    @property
    def name(self) -> str:
        return self.path.name


def read_export(path: Path) -> ExportFile:
    """Decode, parse and recognise one export file. InputError on anything it cannot read with certainty."""
    path = Path(path)
    raw = path.read_bytes()
    text, encoding = decode(raw, path) if raw else ("", "")
    if not text.strip("\ufeff \r\n\t"):
        return ExportFile(path, EMPTY, [], [], sha256_file(path), encoding, "")
    records = _parse(text, path)
    _row_no, first = records[0] if records else (1, [])
    type_line = ""
    if first and first[0].lstrip().startswith("#TYPE"):
        type_line = ",".join(first).strip()
        records = records[1:]
    if not records:
        raise InputError("no header line after the #TYPE line", path=str(path))
    header_row, header = records[0]
    columns = [c.strip() for c in header]
    lower = [c.lower() for c in columns]
    dupes = sorted({c for c in lower if lower.count(c) > 1 and c})
    if dupes:
        raise InputError(f"repeated column(s) {', '.join(dupes)}", path=str(path), row=header_row)
    kind = recognise(lower, path, columns)
    rows = []
    for number, cells in records[1:]:
        if len(cells) != len(lower):
            shown = ",".join(cells)
            raise InputError(f"has {len(cells)} fields where the header has {len(lower)} (truncated or malformed?)",
                             path=str(path), row=number, value=shown if len(shown) <= 120 else shown[:120] + "...")
        rows.append((number, dict(zip(lower, (c.strip() for c in cells)))))
    return ExportFile(path, kind, columns, rows, sha256_file(path), encoding, type_line)


def decode(raw: bytes, path: Path) -> tuple[str, str]:
    """Bytes to text: BOM first, then UTF-16 without BOM (NUL bytes), then UTF-8, then Windows-1252."""
    if raw.startswith(b"\xef\xbb\xbf"):
        return _strict(raw[3:], "utf-8", path), "utf-8-sig"
    if raw.startswith(b"\xff\xfe"):
        return _strict(raw[2:], "utf-16-le", path), "utf-16-le"
    if raw.startswith(b"\xfe\xff"):
        return _strict(raw[2:], "utf-16-be", path), "utf-16-be"
    if len(raw) >= 4 and raw[1] == 0 and raw[3] == 0 and raw[0] != 0:
        return _strict(raw, "utf-16-le", path), "utf-16-le"
    if b"\x00" in raw:
        raise InputError("binary content (NUL bytes): not a CSV export", path=str(path))
    try:
        return raw.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        # Windows PowerShell 5.1 `-Encoding Default` writes the ANSI code page; names only, ids stay ASCII.
        return raw.decode("cp1252", errors="replace"), "cp1252"


def _strict(raw: bytes, encoding: str, path: Path) -> str:
    try:
        return raw.decode(encoding)
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].decode(encoding, errors="replace").count("\n") + 1
        raise InputError(f"not valid {encoding} at byte {exc.start} (truncated file?)", path=str(path),
                         row=line) from None


def _parse(text: str, path: Path) -> list[tuple[int, list[str]]]:
    """CSV records with their spreadsheet row numbers; blank lines are dropped (Export-Csv writes none)."""
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    records: list[tuple[int, list[str]]] = []
    number = 0
    start_line = 1  # physical line where the current record starts, to quote it in an error
    try:
        for cells in reader:
            number += 1
            if cells and any(c.strip() for c in cells):
                records.append((number, cells))
            start_line = reader.line_num + 1
    except csv.Error as exc:
        raise InputError(f"malformed CSV: {exc} (an unbalanced quote or a truncated file?)", path=str(path),
                         row=number + 1, value=_line(text, start_line)) from None
    return records


def _line(text: str, line_no: int, limit: int = 120) -> str:
    lines = text.splitlines()
    line = lines[line_no - 1] if 0 < line_no <= len(lines) else ""
    return line if len(line) <= limit else line[:limit] + "..."


def recognise(lower: list[str], path: Path, columns: list[str]) -> str:
    cols = set(lower)
    kind = None
    if cols & set(GROUP_ID_COLUMNS) and cols & set(MEMBER_ID_COLUMNS) and "trustee" not in cols \
            and "user" not in cols:
        kind = GROUP_MEMBERS
    elif {"accessright", "appid"} <= cols and cols & {"scopename", "scopeidentityraw"}:
        kind = ACCESS_POLICIES
    elif {"principalid", "principalappid"} <= cols:
        kind = APP_ROLE_ASSIGNED_TO
    elif {"principalid", "approleid"} <= cols:
        kind = APP_ROLE_ASSIGNMENTS
    elif {"role", "roleassigneename"} <= cols or {"role", "roleassignee", "customresourcescope"} <= cols:
        kind = ROLE_ASSIGNMENTS
    elif "recipientfilter" in cols and cols & {"scoperestrictiontype", "exclusive", "recipientroot"}:
        kind = MANAGEMENT_SCOPES
    elif {"trustee", "accessrights"} <= cols:
        kind = RECIPIENT_PERMISSIONS
    elif {"user", "accessrights"} <= cols:
        kind = MAILBOX_PERMISSIONS
    elif {"appid", "objectid"} <= cols and "primarysmtpaddress" not in cols:
        kind = SERVICE_PRINCIPALS
    elif "primarysmtpaddress" in cols and cols & set(GROUP_MARKERS):
        kind = GROUPS
    elif "primarysmtpaddress" in cols and cols & {"userprincipalname", "externaldirectoryobjectid",
                                                     "recipienttypedetails"}:
        kind = MAILBOXES
    if kind is None:
        shown = ", ".join(c for c in columns if c.lower() not in NOISE_COLUMNS)
        known = ", ".join(v for k, v in CMDLETS.items() if k != EMPTY)
        raise InputError(f"columns match no known export (expected one of: {known}); "
                         f"its columns: {shown or '(none)'}", path=str(path))
    missing = [c for c in REQUIRED[kind] if c not in cols]
    if missing:
        raise InputError(f"looks like a {CMDLETS[kind]} export but lacks column(s) {', '.join(missing)}",
                         path=str(path), row=1)
    return kind


def from_records(kind: str, records: list[dict], name: str) -> ExportFile:
    """Rows a cmdlet returned as JSON (the live path) as an ExportFile: lists joined with ", ", booleans as
    True/False, keys lower-cased, row numbers counted from 1. `name` labels the rows in error messages."""
    if kind not in CMDLETS:
        raise ValueError(f"unknown kind {kind!r}")
    columns: list[str] = []
    rows = []
    for number, record in enumerate(records, start=1):
        for key in record:
            if key not in columns:
                columns.append(key)
        rows.append((number, {str(k).lower(): _cell(v) for k, v in record.items()}))
    lower = {c.lower() for c in columns}
    if rows:
        missing = [c for c in REQUIRED[kind] if c not in lower]
        if kind == GROUP_MEMBERS and not lower & set(GROUP_ID_COLUMNS):
            missing.append("groupidentity")
        if missing:
            raise InputError(f"{CMDLETS[kind]} rows lack field(s) {', '.join(missing)}", path=name)
    for _, values in rows:  # every row carries every column, as a CSV would
        for c in lower - values.keys():
            values[c] = ""
    return ExportFile(Path(name), kind, columns, rows, "", "json", "")


def _cell(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "True" if value else "False"
    if isinstance(value, (list, tuple)):
        return ", ".join(_cell(v) for v in value)
    return str(value).strip()


# --------------------------------------------------------------------------------------------- cell values

_TYPE_NAME = re.compile(r"^(System|Microsoft|Deserialized)\.[\w.`\[\]]+$")


def multi_value(value: str, *, path: Path, row: int, column: str) -> list[str]:
    """`SendAs`, `{SendAs}`, `FullAccess, ReadPermission`, `{a, b}`, `a;b` -> list of items."""
    text = value.strip()
    if text.isalpha():  # the common case, one plain right: `SendAs`
        return [text]
    if _TYPE_NAME.match(text):
        raise InputError("a multi-valued field was exported as a .NET type name; re-export joining it "
                         "(see `migrator inventory --export-script`)", path=str(path), row=row, field=column,
                         value=value)
    if text.startswith("{") and text.endswith("}"):
        text = text[1:-1]
    return [item.strip() for item in re.split(r"[,;]", text) if item.strip()]


def boolean(value: str, *, path: Path, row: int, column: str) -> bool:
    text = value.strip().lower()
    if text in ("true", "$true", "1", "yes"):
        return True
    if text in ("false", "$false", "0", "no"):
        return False
    raise InputError("expected True or False", path=str(path), row=row, field=column, value=value)


def email_addresses(value: str) -> list[str]:
    """Proxy addresses `SMTP:a@x;smtp:b@y` (or `{...}`) -> the SMTP ones, lower case. Type names yield nothing."""
    text = value.strip()
    if not text or _TYPE_NAME.match(text):
        return []
    if text.startswith("{") and text.endswith("}"):
        text = text[1:-1]
    out = []
    for item in re.split(r"[,;\s]+", text):
        if item.lower().startswith("smtp:"):
            out.append(item[5:].strip().lower())
    return out
