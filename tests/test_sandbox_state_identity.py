"""Identity resolution as Exchange does it, ResultSize defaults, and order that does not depend on paging."""

from __future__ import annotations

import random

import pytest

from migrator.sandbox import Clock, CmdletError, SandboxSettings, TenantState
from migrator.sandbox.cmdlets import RESULT_SIZE_WARNING
from sandbox_tenant import SUFFIX, fixture, make_state, run


@pytest.fixture(scope="module")
def state():
    return make_state()


def test_every_identity_form_finds_the_mailbox(state):
    rec = state.find_recipients("adele.vance@contoso.com")[0]
    forms = ["adele.vance", "ADELE.VANCE", "adele.vance@contoso.com", "Adele.Vance@Contoso.com",
             "adele@contoso.onmicrosoft.com", "smtp:adele@contoso.onmicrosoft.com", "SMTP:adele.vance@contoso.com",
             rec.guid, rec.guid.upper(), "{" + rec.guid + "}", rec.external_id, f"CN=adele.vance,{SUFFIX}".lower(),
             rec.upn]
    for form in forms:
        assert run(state, "Get-Mailbox", Identity=form)[0]["Guid"] == rec.guid, form


def test_display_name_is_not_an_identity(state):
    with pytest.raises(CmdletError) as info:
        run(state, "Get-Mailbox", Identity="Adele Vance")
    assert info.value.exception_type == "ManagementObjectNotFoundException"


def test_group_by_dn_and_cn_differs_from_name(state):
    row = run(state, "Get-DistributionGroup", Identity=f"CN=Sales Senders 7f3a,{SUFFIX}")[0]
    assert row["Name"] == "Sales Senders" and row["DistinguishedName"].startswith("CN=Sales Senders 7f3a,")


def test_ambiguous_identity_is_an_error_like_exchange():
    data = fixture()
    # a second mailbox whose alias equals the first one's name
    data["mailboxes"].append({"name": "zed", "alias": "adele.vance", "primary_smtp": "zed@contoso.com"})
    state = TenantState.from_fixture(data, clock=Clock.manual())
    with pytest.raises(CmdletError) as info:
        run(state, "Get-Mailbox", Identity="adele.vance")
    assert info.value.exception_type == "ManagementObjectAmbiguousException"
    assert "matches multiple entries" in info.value.message
    assert run(state, "Get-Mailbox", Identity="zed@contoso.com")[0]["Alias"] == "adele.vance"


def _big(n: int, shuffle_seed: int | None = None) -> TenantState:
    data = fixture()
    extra = [{"primary_smtp": f"user{i:05d}@contoso.com", "attributes": {"Department": f"D{i % 7}"}}
             for i in range(n)]
    if shuffle_seed is not None:
        random.Random(shuffle_seed).shuffle(extra)
        random.Random(shuffle_seed).shuffle(data["mailboxes"])
    data["mailboxes"] += extra
    return TenantState.from_fixture(data, clock=Clock.manual(), settings=SandboxSettings())


def test_result_size_default_unlimited_and_number():
    state = _big(1200)
    rows = run(state, "Get-Mailbox")
    assert len(rows) == 1000 and rows.warnings == [RESULT_SIZE_WARNING]
    assert len(run(state, "Get-EXOMailbox")) == 1000
    assert len(run(state, "Get-Mailbox", ResultSize="Unlimited")) == 1205
    small = run(state, "Get-Mailbox", ResultSize=10)
    assert len(small) == 10 and small.warnings == []
    with pytest.raises(CmdletError):
        run(state, "Get-Mailbox", ResultSize="lots")


def test_order_is_independent_of_load_order_and_pages_concatenate():
    a, b = _big(300, shuffle_seed=1), _big(300, shuffle_seed=2)
    for cmdlet in ("Get-Mailbox", "Get-Recipient", "Get-RecipientPermission", "Get-DistributionGroupMember"):
        full_a = run(a, cmdlet, ResultSize="Unlimited")
        full_b = run(b, cmdlet, ResultSize="Unlimited")
        assert [r.get("Guid", r.get("Identity")) for r in full_a] == [r.get("Guid", r.get("Identity"))
                                                                       for r in full_b]
        # a server paging by slices of any size returns the same rows as one big answer
        for size in (1, 7, 100):
            pages = [full_a[i:i + size] for i in range(0, len(full_a), size)]
            again = run(a, cmdlet, ResultSize="Unlimited")
            assert [r for page in pages for r in page] == list(again)
