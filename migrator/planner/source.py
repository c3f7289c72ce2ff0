"""The planner's input: an inventory folder (INTERNALS.md §1), or a bare grants CSV.

A bare grants CSV has the columns `app_id, mailbox` and optionally `right` (SendAs or FullAccess, default SendAs)
and `app_name`, in any order, header names in any case. It carries no mailbox attributes and no existing
groups, so neither reuse nor attribute scopes apply to it. Anything doubtful is an InputError naming the file
and row: an unknown column, an empty app id, a bad address, a duplicate row.
"""

from __future__ import annotations

import csv
import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

from migrator import csvio
from migrator.errors import InputError
from migrator.inventory.store import Inventory, read_inventory
from migrator.model import Grant, Mailbox, Right, ServicePrincipal, norm_id

GRANTS_CSV_REQUIRED = ("app_id", "mailbox")
GRANTS_CSV_OPTIONAL = ("right", "app_name")
# Deliberately plain: one @, no spaces, no separators we use inside cells, a dot in the domain.
_ADDRESS = re.compile(r"[^@\s;,<>\"]+@[^@\s;,<>\"']+\.[^@\s;,<>\"'.]+")
_APP_ID = re.compile(r"[^\s;,]+")
_RIGHTS = {r.value.lower(): r for r in Right}


@dataclass(frozen=True)
class Source:
    inventory: Inventory
    kind: str  # "inventory" or "grants_csv"
    path: str  # as the user gave it (posix form)
    sha256: str  # of the grants CSV, or of the inventory's data files (see inventory_sha256)


def load_source(path: Path) -> Source:
    path = Path(path)
    if path.is_dir():
        return Source(read_inventory(path), "inventory", path.as_posix(), inventory_sha256(path))
    if path.is_file():
        return Source(read_grants_csv(path), "grants_csv", path.as_posix(), csvio.sha256_file(path))
    raise InputError("not found: expected an inventory folder or a grants CSV file", path=str(path))


def inventory_sha256(folder: Path) -> str:
    """SHA-256 over the inventory's CSV files (name and content hash, sorted by name).

    manifest.json is left out on purpose: it holds the time the inventory was taken, and the same grants
    inventoried twice must give the same source hash (the committed sample plan relies on it).
    """
    lines = [f"{p.name}\0{csvio.sha256_file(p)}\n" for p in sorted(Path(folder).glob("*.csv"))]
    return hashlib.sha256("".join(lines).encode("utf-8")).hexdigest()


def read_grants_csv(path: Path) -> Inventory:
    """Parse a bare grants CSV into an Inventory (service principals and mailboxes derived from the grants)."""
    where = str(path)
    names: dict[str, str] = {}
    grants: list[Grant] = []
    first_row: dict[Grant, int] = {}
    row_no = 1
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            reader = csv.reader(fh, strict=True)
            raw_header = next(reader, None)
            if not raw_header:
                raise InputError("empty file: expected a header row with app_id, mailbox", path=where, row=1)
            header = [h.strip().lower() for h in raw_header]
            for h in header:
                if h not in GRANTS_CSV_REQUIRED + GRANTS_CSV_OPTIONAL:
                    raise InputError("unknown column; expected app_id, mailbox[, right][, app_name]",
                                     path=where, row=1, field=h)
            if len(set(header)) != len(header):
                dup = next(h for h in header if header.count(h) > 1)
                raise InputError("column appears twice", path=where, row=1, field=dup)
            for col in GRANTS_CSV_REQUIRED:
                if col not in header:
                    raise InputError("missing column", path=where, row=1, field=col)
            for row_no, cells in enumerate(reader, start=2):
                if not cells or all(not c.strip() for c in cells):
                    continue  # blank line
                if len(cells) != len(header):
                    raise InputError(f"has {len(cells)} fields, the header has {len(header)}", path=where,
                                     row=row_no)
                row = {h: csvio.unneutralise(c).strip() for h, c in zip(header, cells)}
                app_id = norm_id(row["app_id"])
                if not app_id:
                    raise InputError("empty app id", path=where, row=row_no, field="app_id")
                if not _APP_ID.fullmatch(app_id):
                    raise InputError("app id must not contain spaces, ';' or ','", path=where, row=row_no,
                                     field="app_id", value=row["app_id"])
                mailbox = norm_id(row["mailbox"])
                if not _ADDRESS.fullmatch(mailbox):
                    raise InputError("not a valid SMTP address", path=where, row=row_no, field="mailbox",
                                     value=row["mailbox"])
                right_text = row.get("right", "") or Right.SEND_AS.value
                right = _RIGHTS.get(right_text.lower())
                if right is None:
                    raise InputError("right must be SendAs or FullAccess", path=where, row=row_no,
                                     field="right", value=right_text)
                grant = Grant(app_id, mailbox, right)
                if grant in first_row:
                    raise InputError(f"duplicate of row {first_row[grant]} ({app_id}, {mailbox}, {right})",
                                     path=where, row=row_no)
                first_row[grant] = row_no
                grants.append(grant)
                name = row.get("app_name", "")
                if name and not names.get(app_id):
                    names[app_id] = name
                else:
                    names.setdefault(app_id, "")
    except UnicodeDecodeError as exc:
        raise InputError(f"not UTF-8 ({exc.reason})", path=where) from None
    except csv.Error as exc:
        raise InputError(f"malformed CSV ({exc})", path=where, row=row_no + 1) from None
    if not grants:
        raise InputError("no grants: the file has a header but no rows", path=where)
    sps = tuple(ServicePrincipal(app, "", names[app]) for app in sorted(names))
    mailboxes = tuple(Mailbox(m) for m in sorted({g.mailbox for g in grants}))
    return Inventory(sps, mailboxes, tuple(grants), manifest={"source": "grants_csv"})
