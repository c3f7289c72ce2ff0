"""Generate `migrator/samples/northwind/exports/*.csv`: the Northwind sample tenant (migrator/samples/northwind,
Application Access Policies with nested groups, Graph and EWS apps) as the export script's files show it, made by
serving the tenant in the sandbox and reading it through the real clients (migrator/sandbox/exports.py).

Deterministic (the sandbox derives every id from the fixture), so tests/test_plan_sample.py can compare; the
committed sample plan plans/northwind is made from these files:

    python samples/make_northwind.py            # rewrite migrator/samples/northwind/exports/
    python samples/make_northwind.py --check    # exit 1 if the files on disk differ from what it would write
    migrator inventory --from-exports migrator/samples/northwind/exports --out inventory/northwind --force
    migrator plan inventory/northwind --out plans/northwind --force
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from migrator.exchange.profile import load_profile
from migrator.inventory.tenant import Clients
from migrator.samples import NORTHWIND_EXPORTS, NORTHWIND_FIXTURE
from migrator.sandbox.exports import write_exports
from migrator.sandbox.server import start_sandbox


def generate(out: Path) -> None:
    """The export files of the Northwind tenant, written into `out` (which must not exist)."""
    with tempfile.TemporaryDirectory() as run_dir, \
            start_sandbox(NORTHWIND_FIXTURE, smtp=False, run_dir=Path(run_dir) / "sb") as sb:
        clients = Clients(load_profile(sb.profile_path))
        try:
            write_exports(clients, out)
        finally:
            clients.close()


def differences(fresh: Path, committed: Path) -> list[str]:
    names = sorted({p.name for p in fresh.iterdir()} | ({p.name for p in committed.iterdir()}
                                                         if committed.is_dir() else set()))
    return [n for n in names if not (fresh / n).exists() or not (committed / n).exists()
            or (fresh / n).read_bytes() != (committed / n).read_bytes()]


def main(argv: list[str]) -> int:
    with tempfile.TemporaryDirectory() as tmp:
        fresh = Path(tmp) / "exports"
        generate(fresh)
        stale = differences(fresh, NORTHWIND_EXPORTS)
        if "--check" in argv:
            if stale:
                print(f"stale: {', '.join(stale)}; run: python samples/make_northwind.py")
            return 1 if stale else 0
        NORTHWIND_EXPORTS.mkdir(parents=True, exist_ok=True)
        for p in fresh.iterdir():
            (NORTHWIND_EXPORTS / p.name).write_bytes(p.read_bytes())
        print(f"wrote {NORTHWIND_EXPORTS} ({len(stale)} file(s) changed)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
