"""One source of truth for the run's state: `status --json`, `status` and the report agree with the journal's own
records, before any run, after execute, after a rollback and after an interrupted run (no step left "running", an
interrupted run never "waiting")."""

from __future__ import annotations

import json
import sqlite3
from collections import Counter
from datetime import UTC, datetime

from click.testing import CliRunner

from exec_helpers import execute, rollback
from fakes import Fault, make_world
from migrator.cli import main
from migrator.executor.context import Control
from migrator.planner.plan import load_plan
from migrator.report.markdown import render_markdown
from migrator.report.model import build_report

APPS = {
    "55555555-0000-0000-0000-000000000001": {"a@contoso.com", "b@contoso.com"},
    "55555555-0000-0000-0000-000000000002": {"c@contoso.com", "d@contoso.com", "e@contoso.com", "f@contoso.com"},
}
A1, A2 = sorted(APPS)


def journal_counts(plan_path) -> tuple[Counter, Counter, Counter]:
    """Per app, straight from journal.db's actions (current generation of each batch): SendAs grants removed and
    not restored, grants restored, removals recorded without an answer."""
    db = plan_path / "journal.db"
    if not db.exists():
        return Counter(), Counter(), Counter()
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as con:
        gens = dict(con.execute("SELECT batch, generation FROM batches"))
        state = dict(con.execute("SELECT batch, state FROM batches"))
        rows = con.execute("SELECT batch, generation, phase, key, op, status FROM actions WHERE kind='sendas'")
        removed, restored, pending = set(), set(), set()
        for batch, gen, phase, key, op, status in rows:
            if gens.get(batch) != gen:
                continue
            if status == "intent" and (phase, op) == ("execute", "remove") and state.get(batch) != "rolled_back":
                pending.add(key)
            elif status in ("applied", "verified"):
                (removed if (phase, op) == ("execute", "remove") else restored).add(key)
    migrated = Counter(k.split("|")[0] for k in removed - restored)
    back = Counter(k.split("|")[0] for k in removed & restored)
    return migrated, back, Counter(k.split("|")[0] for k in pending - restored)


def status_json(plan_path) -> tuple[int, dict]:
    result = CliRunner().invoke(main, ["status", str(plan_path), "--json"], catch_exceptions=False)
    return result.exit_code, json.loads(result.output)


def check_agreement(tenant, plan_path) -> dict:
    """status --json and the report both say what the journal says, per app and in total; returns the JSON."""
    migrated, restored, pending = journal_counts(plan_path)
    _code, data = status_json(plan_path)
    apps = {a["app_id"]: a for b in data["batches"] for a in b["app_status"]}
    planned = {app: len(boxes) for app, boxes in APPS.items()}
    for app in APPS:
        row = apps[app]
        assert (row["planned"], row["migrated"], row["restored"], row["unconfirmed"]) == (
            planned[app], migrated[app], restored[app], pending[app]), (app, row)
        assert row["migrated"] + row["unconfirmed"] + row["on_legacy"] == row["planned"]
    total_migrated, total_pending = sum(migrated.values()), sum(pending.values())
    assert data["totals"] == {"planned": sum(planned.values()), "migrated": total_migrated,
                              "unconfirmed": total_pending,
                              "on_legacy": sum(planned.values()) - total_migrated - total_pending,
                              "restored": sum(restored.values())}
    report = build_report(load_plan(plan_path), now=datetime.fromtimestamp(tenant.clock.now(), UTC))
    assert report.totals == data["totals"]
    for batch in report.batches:
        for app in batch.apps:
            assert (app.sendas, app.migrated, app.restored) == (planned[app.app_id], migrated[app.app_id],
                                                                 restored[app.app_id])
    text = render_markdown(report)
    assert (f"| SendAs grants | {data['totals']['planned']} planned: {total_migrated} migrated to RBAC, "
            f"{data['totals']['on_legacy']} still on legacy grants") in text
    return data


class StopAfterRemovals(Control):
    """Ctrl-C, as the executor sees it, once `n` legacy grants have been removed."""

    def __init__(self, plan_path, tenant, n: int) -> None:
        super().__init__(plan_path)
        self.tenant, self.n = tenant, n

    def check(self) -> None:
        if sum(1 for method, _ in self.tenant.log if method == "remove_recipient_permission") >= self.n:
            self.interrupt()
        super().check()


def test_counts_before_any_run_after_execute_after_rollback_and_after_an_interrupted_run(tmp_path):
    tenant, plan_path = make_world(tmp_path, APPS, [[A1], [A2]])

    data = check_agreement(tenant, plan_path)  # no journal yet: everything planned, nothing migrated
    assert [b["condition"] for b in data["batches"]] == ["planned", "planned"] and data["totals"]["migrated"] == 0

    assert execute(tenant, plan_path, [1]).outcomes[0].status == "done"
    data = check_agreement(tenant, plan_path)
    assert [b["condition"] for b in data["batches"]] == ["applied", "planned"]
    assert data["totals"]["migrated"] == len(APPS[A1])

    assert rollback(tenant, plan_path, 1).outcomes[0].status == "done"
    data = check_agreement(tenant, plan_path)
    assert data["batches"][0]["condition"] == "rolled back"
    assert data["totals"]["migrated"] == 0 and data["totals"]["restored"] == len(APPS[A1])

    done_before = sum(1 for method, _ in tenant.log if method == "remove_recipient_permission")  # batch 1's
    control = StopAfterRemovals(plan_path, tenant, done_before + 2)
    assert execute(tenant, plan_path, [2], control=control).outcomes[0].status == "stopped"
    code, data = status_json(plan_path)
    check_agreement(tenant, plan_path)
    batch2 = data["batches"][1]
    assert code == 12 and batch2["condition"] == "interrupted" and batch2["waiting_until"] is None
    assert "running" not in {s["status"] for s in batch2["steps"]}
    assert {s["step"]: s["status"] for s in batch2["steps"]}["remove_legacy"] == "interrupted"
    assert 0 < batch2["counts"]["migrated"] < len(APPS[A2])
    text = CliRunner().invoke(main, ["status", str(plan_path)]).output
    assert "interrupted: stopped part-way, run the same command again to go on" in text and "running" not in text


def test_a_crashed_run_is_interrupted_and_a_held_lock_is_running(tmp_path):
    from fakes import Crash
    from migrator.executor.journal import Journal

    tenant, plan_path = make_world(tmp_path, APPS, [[A1, A2]])
    tenant.faults = [Fault("remove_recipient_permission", 3, "crash")]
    try:
        execute(tenant, plan_path, [1])
    except Crash:
        pass
    tenant.faults = []
    code, data = status_json(plan_path)
    assert code == 12 and data["batches"][0]["condition"] == "interrupted"
    check_agreement(tenant, plan_path)
    with Journal(plan_path):  # another process would hold it the same way: the lock file is locked
        _code, data = status_json(plan_path)
        assert data["batches"][0]["condition"] == "running" and "pid" in data["batches"][0]["holder"]
