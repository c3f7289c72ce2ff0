"""The sandbox's read-after-write lag (sandbox/readlag.py): after a write, admin reads of the object it touched show
the earlier state until the write's own delay has passed on the sandbox clock; writes, the data plane and the
timeline follow the real state. Deterministic: manual clock, fixed lag (jitter only where the draws are tested)."""

from __future__ import annotations

import pytest

from migrator.sandbox import CmdletError
from migrator.sandbox.faults import PROFILES, FaultProfile, load_profile
from migrator.sandbox.readlag import ReadLag
from sandbox_tenant import BILLING, CRM, make_state, run

LAG = 10.0


@pytest.fixture
def state():
    s = make_state()
    s.read_lag.configure(LAG)
    return s


def _sendas(state, mailbox):
    return [r["Trustee"] for r in run(state, "Get-RecipientPermission", Identity=mailbox, AccessRights="SendAs")]


def _pointer_name(state, app_id):
    return state.apps[app_id].pointer_name


# ---------------------------------------------------------------------------------------------- the model itself
def test_model_shows_the_state_before_the_first_hidden_write_in_write_order():
    now = [0.0]
    lag = ReadLag(lambda: now[0], mean=5.0)
    assert lag.stale("k", 1) is None  # nothing written: live
    lag.wrote("k", 1, "v0")
    now[0] = 2.0
    lag.wrote("k", 1, "v1")  # visible at 7, after the first (visible at 5)
    assert lag.stale("k", 1).before == "v0"
    now[0] = 5.0
    assert lag.stale("k", 1).before == "v1"  # the first write shows; the second not yet
    now[0] = 7.0
    assert lag.stale("k", 1) is None and lag.stale_of("k") == {}
    assert lag.writes == 2


def test_model_never_shows_a_later_write_before_an_earlier_one():
    now = [0.0]
    lag = ReadLag(lambda: now[0], mean=5.0, jitter=5.0, seed=3)
    for i in range(50):  # delays from 0 to 10 s, drawn per write
        lag.wrote("k", 1, i)
        now[0] += 0.1
    seen = []
    while (hit := lag.stale("k", 1)) is not None:
        seen.append(hit.before)
        now[0] += 0.05
    assert seen == sorted(seen)  # what reads show only moves forward


def test_model_draws_are_seeded_and_bounded():
    def delays(seed):
        now = [0.0]
        lag = ReadLag(lambda: now[0], mean=3.0, jitter=2.0, seed=seed)
        out = []
        for key in range(20):
            lag.wrote("k", key, None)
        while lag.visible_by() is not None and lag.stale_of("k"):
            out.append(len(lag.stale_of("k")))
            now[0] += 0.25
        return out, lag

    a, _ = delays(7)
    b, _ = delays(7)
    c, _ = delays(8)
    assert a == b and a != c  # the same seed and write order give the same lags
    assert 1 * 4 <= len(a) <= 5 * 4 + 1  # every lag within mean +/- jitter (1 to 5 s, read every 0.25 s)
    with pytest.raises(ValueError):
        ReadLag(lambda: 0.0, mean=-1)


def test_off_by_default_and_in_the_chaos_profile():
    assert not make_state().read_lag.active
    assert PROFILES["none"].read_lag_s == 0 and PROFILES["mild"].read_lag_s == 0
    assert load_profile("chaos").read_lag_s > 0 and load_profile("chaos").read_lag_jitter_s > 0
    with pytest.raises(ValueError):
        FaultProfile(read_lag_s=-1)


# ---------------------------------------------------------------------------------------------- Exchange reads
def test_sendas_removal_and_restore_lag_per_mailbox_and_in_scans(state):
    state.clock.advance(1)
    name = _pointer_name(state, BILLING)
    run(state, "Remove-RecipientPermission", Identity="adele.vance@contoso.com", Trustee=BILLING,
        AccessRights="SendAs")
    assert name in _sendas(state, "adele.vance@contoso.com")  # still read: the previous state
    assert ("adele.vance", name) in {(r["Identity"], r["Trustee"]) for r in run(
        state, "Get-RecipientPermission", ResultSize="Unlimited")}  # the full scan too
    assert "adele.vance@contoso.com" not in state.effective_sendas(state.apps[BILLING])  # the real state moved
    assert name in _sendas(state, "bob.obrien@contoso.com")  # other mailboxes are live
    state.clock.advance(LAG)
    assert name not in _sendas(state, "adele.vance@contoso.com")
    run(state, "Add-RecipientPermission", Identity="adele.vance@contoso.com", Trustee=BILLING, AccessRights="SendAs")
    assert name not in _sendas(state, "adele.vance@contoso.com")  # the restore lags too
    assert [r["Identity"] for r in run(state, "Get-RecipientPermission", Trustee=BILLING)] == ["bob.obrien"]
    state.clock.advance(LAG)
    assert name in _sendas(state, "adele.vance@contoso.com")


def test_fullaccess_lags(state):
    run(state, "Add-MailboxPermission", Identity="bob.obrien@contoso.com", User=CRM, AccessRights="FullAccess")
    assert run(state, "Get-MailboxPermission", Identity="bob.obrien@contoso.com", User=CRM) == []
    state.clock.advance(LAG)
    assert len(run(state, "Get-MailboxPermission", Identity="bob.obrien@contoso.com", User=CRM)) == 1
    run(state, "Remove-MailboxPermission", Identity="bob.obrien@contoso.com", User=CRM, AccessRights="FullAccess")
    assert len(run(state, "Get-MailboxPermission", Identity="bob.obrien@contoso.com", User=CRM)) == 1
    state.clock.advance(LAG)
    assert run(state, "Get-MailboxPermission", Identity="bob.obrien@contoso.com", User=CRM) == []


def test_group_creation_members_hiding_and_removal_lag(state):
    run(state, "New-DistributionGroup", Name="Lag Group", Alias="lag-group", Type="Security")
    with pytest.raises(CmdletError) as info:
        run(state, "Get-DistributionGroup", Identity="lag-group")
    assert info.value.exception_type == "ManagementObjectNotFoundException"
    with pytest.raises(CmdletError) as info:  # writes act on the real state: the name is taken
        run(state, "New-DistributionGroup", Name="Lag Group", Alias="lag-group", Type="Security")
    assert info.value.exception_type == "ADObjectAlreadyExistsException"
    state.clock.advance(LAG)
    run(state, "Update-DistributionGroupMember", Identity="lag-group", Members=["adele.vance@contoso.com"])
    run(state, "Set-DistributionGroup", Identity="lag-group", HiddenFromAddressListsEnabled=True)
    assert run(state, "Get-DistributionGroupMember", Identity="lag-group") == []
    assert run(state, "Get-DistributionGroup", Identity="lag-group")[0]["HiddenFromAddressListsEnabled"] is False
    state.clock.advance(LAG)
    assert [m["PrimarySmtpAddress"] for m in run(state, "Get-DistributionGroupMember", Identity="lag-group")] == [
        "adele.vance@contoso.com"]
    assert run(state, "Get-DistributionGroup", Identity="lag-group")[0]["HiddenFromAddressListsEnabled"] is True
    run(state, "Remove-DistributionGroup", Identity="lag-group")
    assert run(state, "Get-DistributionGroup", Identity="lag-group")  # removed, still read
    assert "lag-group@contoso.com" in {g["PrimarySmtpAddress"] for g in run(state, "Get-DistributionGroup")}
    state.clock.advance(LAG)
    with pytest.raises(CmdletError):
        run(state, "Get-DistributionGroup", Identity="lag-group")


def test_scope_assignment_and_authorization_lag_but_the_data_plane_does_not(state):
    dn = run(state, "Get-DistributionGroup", Identity="sales-senders")[0]["DistinguishedName"]
    run(state, "New-ManagementScope", Name="lag-scope", RecipientRestrictionFilter=f"MemberOfGroup -eq '{dn}'")
    with pytest.raises(CmdletError):
        run(state, "Get-ManagementScope", Identity="lag-scope")
    assert "lag-scope" not in {s["Name"] for s in run(state, "Get-ManagementScope")}
    run(state, "New-ManagementRoleAssignment", Name="lag-ra", Role="Application SMTP.SendAsApp", App=CRM,
        CustomResourceScope="lag-scope")  # the write sees the scope the reads do not yet
    assert "lag-ra" not in {a["Name"] for a in run(state, "Get-ManagementRoleAssignment",
                                                     Role="Application SMTP.SendAsApp")}
    assert run(state, "Test-ServicePrincipalAuthorization", Identity=CRM, Resource="adele.vance@contoso.com") == []
    assert "adele.vance@contoso.com" in state.effective_rbac(state.apps[CRM])  # the real configuration
    state.clock.advance(LAG)
    assert run(state, "Get-ManagementScope", Identity="lag-scope")[0]["RecipientFilter"] == f"MemberOfGroup -eq '{dn}'"
    rows = run(state, "Test-ServicePrincipalAuthorization", Identity=CRM, Resource="adele.vance@contoso.com")
    assert [r["InScope"] for r in rows] == [True]
    # a member removed: Test-ServicePrincipalAuthorization still reads the old membership for a while
    run(state, "Remove-DistributionGroupMember", Identity="sales-senders", Member="adele.vance@contoso.com")
    rows = run(state, "Test-ServicePrincipalAuthorization", Identity=CRM, Resource="adele.vance@contoso.com")
    assert [r["InScope"] for r in rows] == [True]
    state.clock.advance(LAG)
    rows = run(state, "Test-ServicePrincipalAuthorization", Identity=CRM, Resource="adele.vance@contoso.com")
    assert [r["InScope"] for r in rows] == [False]
    run(state, "Remove-ManagementRoleAssignment", Identity="lag-ra")
    run(state, "Remove-ManagementScope", Identity="lag-scope")
    assert {a["Name"] for a in run(state, "Get-ManagementRoleAssignment", Identity="lag-ra")} == {"lag-ra"}
    assert run(state, "Get-ManagementScope", Identity="lag-scope")
    state.clock.advance(LAG)
    with pytest.raises(CmdletError):
        run(state, "Get-ManagementScope", Identity="lag-scope")


def test_pointer_creation_and_removal_lag(state):
    run(state, "Remove-ServicePrincipal", Identity=CRM)
    name = _pointer_name(state, CRM)
    assert [r["DisplayName"] for r in run(state, "Get-ServicePrincipal", Identity=CRM)] == [name]
    state.clock.advance(LAG)
    assert CRM not in {r["AppId"] for r in run(state, "Get-ServicePrincipal")}
    oid = state.apps[CRM].object_id
    run(state, "New-ServicePrincipal", AppId=CRM, ObjectId=oid, DisplayName="CRM pointer")
    assert CRM not in {r["AppId"] for r in run(state, "Get-ServicePrincipal")}
    state.clock.advance(LAG)
    assert [r["DisplayName"] for r in run(state, "Get-ServicePrincipal", Identity=oid)] == ["CRM pointer"]


# ---------------------------------------------------------------------------------------------- Graph
def test_app_role_assignment_reads_lag_and_tokens_follow_the_real_state():
    state = make_state(graph_replication_delay=0.0)
    state.read_lag.configure(LAG)
    admin = state.admin_caller("https://graph.microsoft.com")
    sp = state.apps[BILLING].object_id
    rows = state.graph("list_app_role_assignments", sp, caller=admin)
    smtp = [r for r in rows if r["resourceDisplayName"] == "Office 365 Exchange Online"]
    assert smtp
    state.graph("delete_app_role_assignment", sp, smtp[0]["id"], caller=admin)
    for _ in range(3):  # every read in the window, not every other one: stale until the lag has passed
        assert smtp[0]["id"] in {r["id"] for r in state.graph("list_app_role_assignments", sp, caller=admin)}
    assert not state.claim_now(BILLING)  # the real state (what tokens follow) has moved
    state.clock.advance(LAG)
    assert smtp[0]["id"] not in {r["id"] for r in state.graph("list_app_role_assignments", sp, caller=admin)}
