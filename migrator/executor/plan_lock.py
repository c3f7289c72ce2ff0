"""The plan folder's lock: one executor per plan at a time, on POSIX and on Windows.

The lock is an OS lock on `<plan>/journal.lock`, held for the life of the run. The operating system drops it when
the process dies (SIGKILL or a closed console window included), so a crash never leaves a stale lock behind; a stale
*file* is harmless and is reused. The file holds "pid N on HOST since T" so a refused second executor can say who
holds the plan. The file is removed when the holder releases the lock: a run leaves the plan folder as it found it
apart from what it wrote on purpose.

The platform modules are imported inside the functions, never at module level: `fcntl` does not exist on Windows
and `msvcrt` does not exist elsewhere, and every command imports this module.
(flock and LockFileEx are not reliable on network filesystems: keep plan folders on a local disk.)
"""

from __future__ import annotations

import os
import socket
import sys
import time
from pathlib import Path
from typing import IO

from migrator.errors import MigratorError
from migrator.exitcodes import ExitCode

LOCK_NAME = "journal.lock"
# Windows locks are mandatory byte ranges: lock one byte far past the holder text, so a refused process can still
# read who holds the plan.
_WINDOWS_LOCK_OFFSET = 1 << 20


class JournalLocked(MigratorError):
    """Another executor holds this plan's journal."""

    exit_code = ExitCode.LOCKED


def _try_lock(fh: IO[str]) -> bool:
    """Take the exclusive lock without blocking; False when another process holds it."""
    if sys.platform == "win32":
        import msvcrt

        fh.seek(_WINDOWS_LOCK_OFFSET)
        try:
            msvcrt.locking(fh.fileno(), msvcrt.LK_NBLCK, 1)
        except OSError:
            return False
        return True
    import fcntl

    try:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def _unlock(fh: IO[str]) -> None:
    if sys.platform == "win32":
        import msvcrt

        fh.seek(_WINDOWS_LOCK_OFFSET)
        msvcrt.locking(fh.fileno(), msvcrt.LK_UNLCK, 1)
    else:
        import fcntl

        fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def _same_file(fh: IO[str], path: Path) -> bool:
    """Whether `path` still names the file we locked (the previous holder may have removed it in between)."""
    try:
        return os.path.samestat(os.fstat(fh.fileno()), os.stat(path))
    except FileNotFoundError:
        return False


class PlanLock:
    """The exclusive lock of one plan folder. `acquire()` raises JournalLocked naming the holder."""

    def __init__(self, plan_dir: Path) -> None:
        self.plan_dir = Path(plan_dir)
        self.path = self.plan_dir / LOCK_NAME
        self._fh: IO[str] | None = None

    @property
    def held(self) -> bool:
        return self._fh is not None

    def acquire(self) -> None:
        from migrator.executor.undolog import write_error

        for _ in range(20):  # only loops when a holder removed the file between our open and our lock
            try:  # a read-only folder (or a full disk) stops the command here, before anything else, clearly
                self.plan_dir.mkdir(parents=True, exist_ok=True)
                fh = open(self.path, "a+", encoding="utf-8")  # noqa: SIM115 - held until release()
            except OSError as exc:
                raise write_error("the lock file", self.path, exc) from None
            if not _try_lock(fh):
                holder = _read_holder(fh)
                fh.close()
                raise JournalLocked(f"{self.plan_dir}: another executor is running this plan ({holder}); wait for it "
                                    "to finish (or stop it) and run the command again")
            if sys.platform == "win32" or _same_file(fh, self.path):
                break
            _unlock(fh)
            fh.close()
        else:  # pragma: no cover - needs twenty holders in a row to come and go within microseconds
            raise JournalLocked(f"{self.plan_dir}: the lock file keeps being replaced; run the command again")
        self._fh = fh
        try:
            fh.seek(0)
            fh.truncate()
            fh.write(f"pid {os.getpid()} on {socket.gethostname()} since "
                     f"{time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())}")
            fh.flush()
        except OSError as exc:
            self.release()
            raise write_error("the lock file", self.path, exc) from None

    def release(self) -> None:
        """Remove the lock file and drop the lock. On POSIX the file goes first, while still locked, so a process
        that opened it meanwhile sees (by _same_file) that it locked a removed file and tries again."""
        fh, self._fh = self._fh, None
        if fh is None:
            return
        if sys.platform != "win32":
            _remove(self.path)
        _unlock(fh)
        fh.close()
        if sys.platform == "win32":  # Windows cannot remove an open file
            _remove(self.path)


def _read_holder(fh: IO[str]) -> str:
    try:
        fh.seek(0)
        return fh.read(200).strip() or "unknown process"
    except OSError:
        return "unknown process"


def _remove(path: Path) -> None:
    try:
        path.unlink()
    except OSError:  # already gone, or (Windows) opened by a waiting process: the next holder reuses it
        pass


def lock_holder(plan_dir: Path) -> str | None:
    """Who holds the plan's lock right now ("pid N on HOST since T"), or None when no process does. Reads only:
    the lock file is never created here (status and report must not change the plan folder)."""
    path = Path(plan_dir) / LOCK_NAME
    try:
        fh = open(path, encoding="utf-8")  # noqa: SIM115 - closed below, after the probe
    except OSError:
        return None  # no file: nobody holds it (the holder removes it on release)
    try:
        if sys.platform == "win32":
            import msvcrt

            fh.seek(_WINDOWS_LOCK_OFFSET)
            try:
                msvcrt.locking(fh.fileno(), msvcrt.LK_NBLCK, 1)
            except OSError:
                return _read_holder(fh)
            fh.seek(_WINDOWS_LOCK_OFFSET)
            msvcrt.locking(fh.fileno(), msvcrt.LK_UNLCK, 1)
            return None
        import fcntl

        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return _read_holder(fh)
        fcntl.flock(fh.fileno(), fcntl.LOCK_UN)
        return None
    finally:
        fh.close()
