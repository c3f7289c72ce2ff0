"""Every module imports without the POSIX-only standard modules (Windows has no fcntl, termios, pwd, grp, resource).

A subprocess installs a meta-path finder that refuses those names before anything else is imported, then imports
every module of the package; the plan lock must also still work there through its lazy, per-platform import.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import migrator

BLOCKED = ("fcntl", "termios", "pwd", "grp", "resource")

SCRIPT = f"""
import importlib, importlib.abc, pkgutil, sys
BLOCKED = {BLOCKED!r}
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name in BLOCKED:
            raise ImportError(f"{{name}} is blocked (as on Windows)")
        return None
for name in BLOCKED:
    sys.modules.pop(name, None)
sys.meta_path.insert(0, Block())
import migrator
failed = []
count = 0
for info in pkgutil.walk_packages(migrator.__path__, "migrator."):
    try:
        importlib.import_module(info.name)
        count += 1
    except Exception as exc:
        failed.append(f"{{info.name}}: {{type(exc).__name__}}: {{exc}}")
loaded = sorted(n for n in BLOCKED if n in sys.modules)
print(count, "modules")
print("\\n".join(failed))
print("loaded:", loaded)
sys.exit(1 if failed or loaded else 0)
"""


def test_every_module_imports_with_posix_only_modules_blocked():
    root = Path(migrator.__file__).resolve().parent
    expected = sum(1 for p in root.rglob("*.py"))
    proc = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    imported = int(proc.stdout.split()[0])
    assert imported >= expected - 1, proc.stdout  # every module file (migrator/__init__ is the root, not walked)
