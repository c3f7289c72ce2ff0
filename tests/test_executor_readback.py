"""The drift check and read-after-write lag (executor/readback.py), on the in-memory fake tenant with a manual clock.

A real tenant answers each read from whichever replica serves it, so even after a write showed once, a later read
may reach a replica that has not seen it. Here the SendAs scan misses a grant the tool restored (a rollback) for
its first reads: a difference about the tool's own write is read again until it shows, while someone else's change
still stops the run at once, before any write."""

from __future__ import annotations

import pytest

import fakes
from exec_helpers import execute, rollback
from fakes import make_world
from migrator.errors import DriftError

APPS = {
    "33333333-0000-0000-0000-000000000001": {"a@contoso.com", "b@contoso.com"},
    "33333333-0000-0000-0000-000000000002": {"b@contoso.com", "c@contoso.com"},
}
A1, A2 = sorted(APPS)


LATE = dict(replication_timeout=900)  # the rollback's restores (its last waits ago) are still "recent"


def _executed_and_rolled_back(tmp_path):
    tenant, plan = make_world(tmp_path, APPS, [[A1, A2]])
    assert execute(tenant, plan, [1]).outcomes[0].status == "done"
    assert rollback(tenant, plan, 1).outcomes[0].status == "done"
    assert ("a@contoso.com", tenant.oid_of(A1)) in tenant.sendas  # restored
    return tenant, plan


def _stale_scans(monkeypatch, tenant, hidden: tuple[str, str], reads: int) -> list[int]:
    """The next `reads` SendAs scans come from a replica that has not seen the restore of `hidden`."""
    original = fakes.FakeExchange.scan_recipient_permissions
    left = [reads]

    def scan(self, select=None):
        if left[0] <= 0:
            return original(self, select)
        left[0] -= 1
        tenant.sendas.discard(hidden)
        try:
            return original(self, select)
        finally:
            tenant.sendas.add(hidden)

    monkeypatch.setattr(fakes.FakeExchange, "scan_recipient_permissions", scan)
    return left


def test_a_restored_grant_a_lagging_replica_misses_is_read_again_not_drift(tmp_path, monkeypatch):
    tenant, plan = _executed_and_rolled_back(tmp_path)
    left = _stale_scans(monkeypatch, tenant, ("a@contoso.com", tenant.oid_of(A1)), reads=3)
    result = execute(tenant, plan, [1], **LATE)  # the batch again, right after its rollback
    assert result.outcomes[0].status == "done", result.outcomes[0].message
    assert left == [0]  # the stale reads were read through
    assert tenant.gaps == [] and tenant.overgrants == []


def test_someone_elses_change_stops_at_once_even_beside_a_lagging_read(tmp_path, monkeypatch):
    tenant, plan = _executed_and_rolled_back(tmp_path)
    left = _stale_scans(monkeypatch, tenant, ("a@contoso.com", tenant.oid_of(A1)), reads=100)
    tenant.grant("outsider0@contoso.com", tenant.oid_of(A1))  # someone added a grant the plan does not know
    tenant.allowed.add((tenant.oid_of(A1), "outsider0@contoso.com"))
    writes, start = tenant.writes, tenant.clock.now()
    with pytest.raises(DriftError, match=r"added.*outsider0@contoso\.com"):
        execute(tenant, plan, [1], **LATE)
    assert tenant.writes == writes
    assert left == [99] and tenant.clock.now() == start  # one read, no wait: someone else's change is not waited out


def test_a_write_of_the_tool_that_never_shows_stops_saying_so(tmp_path, monkeypatch):
    tenant, plan = _executed_and_rolled_back(tmp_path)
    _stale_scans(monkeypatch, tenant, ("a@contoso.com", tenant.oid_of(A1)), reads=10_000)
    writes = tenant.writes
    with pytest.raises(DriftError, match="written by this tool; reads still do not show it"):
        execute(tenant, plan, [1], **LATE)  # replication_timeout runs out: a stop, nothing written
    assert tenant.writes == writes


def test_an_old_write_of_the_tool_missing_now_is_someone_elses_change(tmp_path, monkeypatch):
    """Restored longer ago than replication_timeout: a read lagging that long would have stopped the rollback's
    own read-back, so the grant missing now was removed by someone: drift at once."""
    tenant, plan = _executed_and_rolled_back(tmp_path)
    tenant.sendas.discard(("c@contoso.com", tenant.oid_of(A2)))
    tenant.clock.sleep(1000)
    start = tenant.clock.now()
    with pytest.raises(DriftError, match=r"missing.*c@contoso\.com"):
        execute(tenant, plan, [1], **LATE)
    assert tenant.clock.now() == start
