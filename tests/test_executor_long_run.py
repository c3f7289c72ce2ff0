"""Long runs through the real clients against the sandbox: a run whose waits outlast the admin's tokens (they
expire while cached, are refused once and refreshed, never a 401 loop), and a batch resumed from a copy of its
plan folder in another place (nothing in the journal or the undo log is tied to the old path)."""

from __future__ import annotations

import shutil
import sqlite3

import pytest

from migrator.executor import Connection
from migrator.executor.context import ExecSettings, Output
from migrator.executor.session import RunOptions, RunSession
from migrator.executor.undolog import UNDO_LOG_NAME
from migrator.planner.plan import load_plan
from sandbox_world import ADMIN, make_fixture, make_plan

pytestmark = pytest.mark.integration


def _sandbox(tmp_path, **settings):
    from migrator.sandbox.clock import Clock
    from migrator.sandbox.server import start_sandbox
    from migrator.sandbox.settings import SandboxSettings

    fixture, grants = make_fixture(seed=11, mailboxes=8, apps=3, clusters=2)
    plan = make_plan(fixture, tmp_path / "site-a" / "plan", pilot=1, batch_size=2)
    sb = start_sandbox(fixture, run_dir=tmp_path / "sb", clock=Clock(), settings=SandboxSettings(**settings))
    return sb, plan, grants


def _run(sb, plan_dir, conn, batches, *, wait, **kw):
    clock = sb.state.clock  # the executor's waits fast-forward the sandbox clock (as a rehearsal does)
    settings = ExecSettings(replication_poll=0.2, verify_retry_delay=0.2, concurrency=2, **kw)
    options = RunOptions(settings, wait=wait, output=Output(quiet=True), now=clock.now, sleep=clock.advance)
    with RunSession.open(load_plan(plan_dir), conn, options, journal_clock=clock.now) as session:
        return session.execute(batches)


def _admin_tokens(sb) -> int:
    return sum(1 for e in sb.state.timeline.log if e.kind == "token" and e.data.get("app_id") == ADMIN)


def test_waits_longer_than_the_admin_token_lifetime_refresh_the_token_without_a_401_loop(tmp_path):
    # Admin tokens live 10 minutes (past msal's 5-minute refresh margin, so msal keeps them cached); each wait is
    # 20 minutes of sandbox time, so the cached token has expired when the run comes back from the wait.
    sb, plan, grants = _sandbox(tmp_path, admin_token_lifetime=600, token_lifetime=60, propagation_delay=1.0)
    with sb:
        conn = Connection(sb.profile_path)
        result = _run(sb, plan, conn, [1, 2], wait=True, propagation_wait=1200, token_lifetime=1200)
        assert [o.status for o in result.outcomes] == ["done", "done"], [o.message for o in result.outcomes]
        refreshed = conn.session.retry_kinds["refresh"]
        assert refreshed >= 1  # an expired token was refused and replaced ...
        calls = sum(conn.session.calls.values())
        assert refreshed <= 2 * 2 * 4 < calls  # ... once per expiry and call in flight, not on every call
        assert conn.tokens.acquired >= 3 and _admin_tokens(sb) == conn.tokens.acquired
        report = sb.state.check(grants)
        assert report.gaps == [] and report.overgrants == [], report.to_dict()


def test_admin_tokens_shorter_than_msal_margin_are_fetched_anew_never_refused(tmp_path):
    # 4-second admin tokens: msal never reuses one (its margin is 5 minutes), so no call meets an expired token.
    sb, plan, grants = _sandbox(tmp_path, admin_token_lifetime=4, token_lifetime=1, propagation_delay=0.0)
    with sb:
        conn = Connection(sb.profile_path)
        result = _run(sb, plan, conn, [1], wait=True, propagation_wait=30, token_lifetime=30)
        assert [o.status for o in result.outcomes] == ["done"]
        assert conn.session.retry_kinds["refresh"] == 0
        assert conn.tokens.acquired > 5
        assert sb.state.check(grants).gaps == []


def test_a_batch_resumes_from_a_copy_of_its_plan_folder_in_another_place(tmp_path):
    sb, plan, grants = _sandbox(tmp_path, admin_token_lifetime=3600, token_lifetime=60, propagation_delay=1.0)
    with sb:
        conn = Connection(sb.profile_path)
        first = _run(sb, plan, conn, [1], wait=False, propagation_wait=600, token_lifetime=600)
        assert first.outcomes[0].status == "waiting"  # mid-batch: set up and verified, waiting for propagation
        moved = tmp_path / "site-b" / "renamed-plan"
        shutil.copytree(plan, moved)  # journal.db with its WAL, undo log, plan files
        shutil.rmtree(tmp_path / "site-a")  # the original place is gone
        for name in ("journal.db", UNDO_LOG_NAME):
            data = (moved / name).read_bytes()
            assert str(tmp_path).encode() not in data and b"site-a" not in data
        with sqlite3.connect(moved / "journal.db") as db:
            assert "site-a" not in repr(db.execute("SELECT * FROM meta").fetchall())
        done = _run(sb, moved, conn, [1, 2], wait=True, propagation_wait=600, token_lifetime=600)
        assert [o.status for o in done.outcomes] == ["done", "done"], [o.message for o in done.outcomes]
        report = sb.state.check(grants)
        assert report.gaps == [] and report.overgrants == [], report.to_dict()
