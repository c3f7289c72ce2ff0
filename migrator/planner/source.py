"""The planner's input: an inventory folder (INTERNALS.md §1), or a bare grants CSV.

A bare grants CSV has the columns `app_id, mailbox` and optionally `right` (SendAs or FullAccess, default SendAs)
and `app_name`, in any order, header names in any case. It carries no mailbox attributes and no existing
groups, so neither reuse nor attribute scopes apply to it. Anything doubtful is an InputError naming the file
and row: an unknown column, an empty app id, a bad address, a duplicate row.
"""

from __future__ import annotations

import csv
import hashlib
import itertools
import re
from dataclasses import dataclass
from pathlib import Path

from migrator import csvio
from migrator.errors import InputError
from migrator.inventory.store import Inventory, read_inventory
from migrator.model import Grant, Mailbox, Right, ServicePrincipal

GRANTS_CSV_REQUIRED = ("app_id", "mailbox")
GRANTS_CSV_OPTIONAL = ("right", "app_name")
# Deliberately plain: one @, no spaces, no separators we use inside cells, a dot in the domain.
_ADDRESS = re.compile(r"[^@\s;,<>\"]+@[^@\s;,<>\"']+\.[^@\s;,<>\"'.]+")
_APP_ID = re.compile(r"[^\s;,]+")
_RIGHTS = {r.value.lower(): r.value for r in Right}  # lower case -> canonical text


GrantRow = tuple[str, str, str]  # (app_id, mailbox, right as text): what the planner works on


@dataclass(frozen=True)
class Source:
    """What the planner reads. `grants` holds every legacy grant as a plain tuple, sorted; for a bare grants CSV
    `inventory.grants` is left empty (a million Grant objects cost seconds and nothing else would read them)."""

    inventory: Inventory
    kind: str  # "inventory" or "grants_csv"
    path: str  # as the user gave it (posix form)
    sha256: str  # of the grants CSV, or of the inventory's data files (see inventory_sha256)
    grants: tuple[GrantRow, ...] = ()

    @classmethod
    def from_inventory(cls, inv: Inventory, kind: str, path: str, sha256: str) -> Source:
        rows = list(dict.fromkeys([(g.app_id, g.mailbox, g.right.value)
                                   for g in inv.grants]))
        if any(a > b for a, b in itertools.pairwise(rows)):  # inventory.store writes them sorted already
            rows.sort()
        return cls(inv, kind, path, sha256, tuple(rows))


def load_source(path: Path) -> Source:
    path = Path(path)
    if path.is_dir():
        return Source.from_inventory(read_inventory(path), "inventory", path.as_posix(), inventory_sha256(path))
    if path.is_file():
        names, rows = parse_grants_csv(path)
        inv = Inventory(tuple(ServicePrincipal(app, "", names[app]) for app in sorted(names)),
                        tuple(Mailbox(m) for m in sorted({m for _a, m, _r in rows})), (),
                        manifest={"source": "grants_csv"})
        return Source(inv, "grants_csv", path.as_posix(), csvio.sha256_file(path),
                      tuple(sorted(rows)))
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
    names, rows = parse_grants_csv(path)
    sps = tuple(ServicePrincipal(app, "", names[app]) for app in sorted(names))
    mailboxes = tuple(Mailbox(m) for m in sorted({m for _a, m, _r in rows}))
    grants = tuple(Grant(a, m, Right(r)) for a, m, r in rows)
    return Inventory(sps, mailboxes, grants, manifest={"source": "grants_csv"})


def parse_grants_csv(path: Path) -> tuple[dict[str, str], list[GrantRow]]:
    """(app id -> app name, [(app_id, mailbox, right)] in file order); InputError naming file and row."""
    where = str(path)
    names: dict[str, str] = {}
    first_row: dict[GrantRow, int] = {}
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
            i_app, i_mailbox = header.index("app_id"), header.index("mailbox")
            i_right = header.index("right") if "right" in header else None
            i_name = header.index("app_name") if "app_name" in header else None
            width = len(header)
            ok_apps: set[str] = set()
            ok_mailboxes: set[str] = set()  # validate each distinct value once: 1M rows, 200k mailboxes
            send_as = Right.SEND_AS.value
            for row_no, cells in enumerate(reader, start=2):
                if len(cells) != width:
                    if not cells or all(not c.strip() for c in cells):
                        continue  # blank line
                    raise InputError(f"has {len(cells)} fields, the header has {width}", path=where, row=row_no)
                raw_app = cells[i_app]
                app_id = (csvio.unneutralise(raw_app) if raw_app.startswith("'") else raw_app).strip().lower()
                if app_id not in ok_apps:
                    if not app_id:
                        if all(not c.strip() for c in cells):
                            continue  # a line of empty fields
                        raise InputError("empty app id", path=where, row=row_no, field="app_id")
                    if not _APP_ID.fullmatch(app_id):
                        raise InputError("app id must not contain spaces, ';' or ','", path=where, row=row_no,
                                         field="app_id", value=raw_app)
                    ok_apps.add(app_id)
                    names.setdefault(app_id, "")
                raw_mailbox = cells[i_mailbox]
                mailbox = (csvio.unneutralise(raw_mailbox) if raw_mailbox.startswith("'") else raw_mailbox
                           ).strip().lower()
                if mailbox not in ok_mailboxes:
                    if not _ADDRESS.fullmatch(mailbox):
                        raise InputError("not a valid SMTP address", path=where, row=row_no, field="mailbox",
                                         value=cells[i_mailbox])
                    ok_mailboxes.add(mailbox)
                right = send_as
                if i_right is not None and cells[i_right]:
                    named = _RIGHTS.get(cells[i_right].strip().lower())
                    if named is None:
                        raise InputError("right must be SendAs or FullAccess", path=where, row=row_no,
                                         field="right", value=cells[i_right])
                    right = named
                key = (app_id, mailbox, right)
                if key in first_row:
                    raise InputError(f"duplicate of row {first_row[key]} ({app_id}, {mailbox}, {right})",
                                     path=where, row=row_no)
                first_row[key] = row_no
                if i_name is not None and not names[app_id]:
                    names[app_id] = csvio.unneutralise(cells[i_name]).strip()
    except UnicodeDecodeError as exc:
        raise InputError(f"not UTF-8 ({exc.reason})", path=where) from None
    except csv.Error as exc:
        raise InputError(f"malformed CSV ({exc})", path=where, row=row_no + 1) from None
    if not first_row:
        raise InputError("no grants: the file has a header but no rows", path=where)
    return names, list(first_row)
