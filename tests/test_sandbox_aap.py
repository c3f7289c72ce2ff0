"""Application Access Policies in the sandbox: the cmdlets (fields, errors, the space limit), Microsoft's evaluation
rules with nested groups, the Graph/EWS data plane per permission and the timeline checker's per-permission
gaps and over-grants."""

from __future__ import annotations

import pytest

from aap_tenant import ARCHIVE_SET, ARCHIVER, EWSAPP, GRAPH, MAILBOXES, OPEN, aap_fixture
from migrator.sandbox import Clock, SandboxSettings, TenantState
from migrator.sandbox.api import CmdletError
from migrator.sandbox.cmdlets.aap import SPACE_EXCEEDED
from migrator.sandbox.graph_ops import delete_app_role_assignment
from sandbox_tenant import CRM, TENANT_ID


def make(**settings) -> TenantState:
    base = {"sendas_delay": 0.0, "graph_replication_delay": 0.0, "propagation_delay": 100.0,
            "access_policy_delay": 50.0, "token_lifetime": 30.0}
    base.update(settings)
    return TenantState.from_fixture(aap_fixture(), clock=Clock.manual(), settings=SandboxSettings(**base))


def run(state, cmdlet, **params):
    return state.invoke(cmdlet, params, caller=state.admin_caller())


def refused(state, cmdlet, **params) -> CmdletError:
    with pytest.raises(CmdletError) as err:
        run(state, cmdlet, **params)
    return err.value


def reach(state, app_id, perm, *, token_has=None) -> set[str]:
    return {m for m in MAILBOXES if state.can_use_mailbox(app_id, perm, m, token_has=token_has)}


def identity_of(state, app_id) -> str:
    return next(r["Identity"] for r in run(state, "Get-ApplicationAccessPolicy") if r["AppId"] == app_id)


# ------------------------------------------------------------------------------------------------ cmdlets
def test_get_rows_carry_microsofts_fields():
    state = make()
    rows = run(state, "Get-ApplicationAccessPolicy")
    assert len(rows) == 3
    row = next(r for r in rows if r["AppId"] == ARCHIVER)
    sid, oid = row["ScopeIdentityRaw"].split(";")
    group = state.find_recipients("archive-scope")[0]
    assert row["Identity"] == f"{TENANT_ID}\\{ARCHIVER}:{sid};{oid}" and oid == group.external_id
    assert sid.startswith("S-1-5-21-") and row["ScopeName"] == "Archive Scope"
    assert (row["AccessRight"], row["Description"], row["ShardType"], row["IsValid"]) == \
        ("RestrictAccess", " ", "All", True)
    assert run(state, "Get-ApplicationAccessPolicy", Identity=row["Identity"]) == [row]
    assert len(run(state, "Get-ApplicationAccessPolicy", Identity="no-such-policy")) == 3  # the hazard


def test_new_makes_one_policy_per_app_and_refuses_what_exchange_refuses():
    state = make()
    rows = run(state, "New-ApplicationAccessPolicy", AccessRight="RestrictAccess", AppId=[OPEN, CRM],
               PolicyScopeGroupId="Archive Flat", Description="calendar bots")
    assert [r["AppId"] for r in rows] == [OPEN, CRM] and {r["ScopeName"] for r in rows} == {"Archive Flat"}
    assert refused(state, "New-ApplicationAccessPolicy", AccessRight="RestrictAccess", AppId=OPEN,
                   PolicyScopeGroupId="nobody@contoso.com").exception_type == "ManagementObjectNotFoundException"
    err = refused(state, "New-ApplicationAccessPolicy", AccessRight="RestrictAccess", AppId=OPEN,
                  PolicyScopeGroupId="all-staff@contoso.com")  # a distribution list: not a security principal
    assert err.exception_type == "InvalidOperationException" and "security principal" in str(err)
    err = refused(state, "New-ApplicationAccessPolicy", AccessRight="RestrictAccess", AppId=OPEN,
                  PolicyScopeGroupId="erin.li@contoso.com")  # a shared mailbox
    assert err.exception_type == "InvalidOperationException"
    assert refused(state, "New-ApplicationAccessPolicy", AccessRight="RestrictAccess", AppId=OPEN,
                   PolicyScopeGroupId="archive-flat").exception_type == "ADObjectAlreadyExistsException"
    assert refused(state, "New-ApplicationAccessPolicy", AccessRight="Allow", AppId=OPEN,
                   PolicyScopeGroupId="archive-flat").exception_type == "ParameterBindingException"
    assert refused(state, "New-ApplicationAccessPolicy", AccessRight="DenyAccess", AppId="not-a-guid",
                   PolicyScopeGroupId="archive-flat").exception_type == "ParameterBindingException"
    assert len(run(state, "Get-ApplicationAccessPolicy")) == 5


def test_policy_space_fits_300_one_space_descriptions_and_fewer_long_ones():
    state = make()
    mailboxes = [m for m in MAILBOXES if m != "erin.li@contoso.com"]  # erin is a shared mailbox
    made = len(state.access_policies)
    for i in range(400):
        app = f"a{i:07d}-0000-0000-0000-000000000000"
        try:
            run(state, "New-ApplicationAccessPolicy", AccessRight="RestrictAccess", AppId=app,
                PolicyScopeGroupId=mailboxes[i % len(mailboxes)], Description=" ")
        except CmdletError as exc:
            assert str(exc).endswith(SPACE_EXCEEDED) or SPACE_EXCEEDED in exc.detail()
            break
        made += 1
    # the fixture's three policies have descriptions of 1, 0 (charged 1) and 0 characters
    assert made == 300
    long_state = make()
    count = len(long_state.access_policies)
    with pytest.raises(CmdletError):
        for i in range(400):
            run(long_state, "New-ApplicationAccessPolicy", AccessRight="DenyAccess",
                AppId=f"b{i:07d}-0000-0000-0000-000000000000", PolicyScopeGroupId="archive-flat",
                Description="x" * 100)
            count += 1
    assert count < 160


def test_set_changes_the_description_and_remove_removes_unknown_identities_refused():
    state = make()
    ident = identity_of(state, ARCHIVER)
    run(state, "Set-ApplicationAccessPolicy", Identity=ident, Description="archive only")
    assert run(state, "Get-ApplicationAccessPolicy", Identity=ident)[0]["Description"] == "archive only"
    for cmdlet, extra in (("Set-ApplicationAccessPolicy", {"Description": "x"}),
                          ("Remove-ApplicationAccessPolicy", {})):
        err = refused(state, cmdlet, Identity=f"{TENANT_ID}\\{ARCHIVER}:S-1-5-21-1-2-3-4;x", **extra)
        assert err.exception_type == "ManagementObjectNotFoundException" and err.http_status == 404
    run(state, "Remove-ApplicationAccessPolicy", Identity=ident)
    assert ARCHIVER not in {r["AppId"] for r in run(state, "Get-ApplicationAccessPolicy")}


def test_test_cmdlet_follows_microsofts_rules_with_nested_groups():
    state = make()

    def result(mailbox, app):
        return run(state, "Test-ApplicationAccessPolicy", Identity=mailbox, AppId=app)[0]["AccessCheckResult"]

    # RestrictAccess on Archive Scope, which holds Sales Senders (adele, bob) nested, and carol directly
    assert {m: result(m, ARCHIVER) for m in sorted(MAILBOXES)} == {
        "adele.vance@contoso.com": "Granted", "bob.obrien@contoso.com": "Granted",
        "carol.diaz@contoso.com": "Granted", "dan.wu@contoso.com": "Denied", "erin.li@contoso.com": "Denied"}
    # DenyAccess on Sales Senders: everyone else granted
    assert result("adele.vance", EWSAPP) == "Denied" and result("dan.wu", EWSAPP) == "Granted"
    assert result("dan.wu", OPEN) == "Granted"  # no policy
    # a DenyAccess beside a RestrictAccess for the same mailbox wins
    run(state, "New-ApplicationAccessPolicy", AccessRight="DenyAccess", AppId=ARCHIVER,
        PolicyScopeGroupId="bob.obrien@contoso.com")
    assert result("bob.obrien", ARCHIVER) == "Denied" and result("adele.vance", ARCHIVER) == "Granted"
    row = run(state, "Test-ApplicationAccessPolicy", Identity="dan.wu", AppId=ARCHIVER)[0]
    assert set(row) == {"AppId", "Mailbox", "MailboxId", "MailboxSid", "AccessCheckResult"}


def test_fixture_round_trip_keeps_policies_and_refuses_bad_scopes():
    from migrator.sandbox.fixture import FixtureError

    state = make()
    again = TenantState.from_fixture(state.to_fixture(), clock=Clock.manual())
    assert run(again, "Get-ApplicationAccessPolicy") == run(state, "Get-ApplicationAccessPolicy")
    data = aap_fixture()
    data["application_access_policies"].append({"app_id": OPEN, "scope": "all-staff@contoso.com"})
    with pytest.raises(FixtureError, match=r"application_access_policies\[3\].*not a mail-enabled security"):
        TenantState.from_fixture(data, clock=Clock.manual())
    data["application_access_policies"][-1] = {"app_id": OPEN, "scope": "ghost@contoso.com"}
    with pytest.raises(FixtureError, match="unknown"):
        TenantState.from_fixture(data, clock=Clock.manual())


# ------------------------------------------------------------------------------------------------ data plane
def test_data_plane_fences_the_consent_with_the_policy_nested_members_included():
    state = make()
    assert reach(state, ARCHIVER, "Mail.Read") == ARCHIVE_SET
    assert reach(state, ARCHIVER, "Mail.Send") == ARCHIVE_SET
    assert reach(state, ARCHIVER, "Calendars.Read") == set()  # not consented: no claim
    assert reach(state, EWSAPP, "full_access_as_app") == MAILBOXES - {"adele.vance@contoso.com",
                                                                       "bob.obrien@contoso.com"}
    assert reach(state, OPEN, "Calendars.ReadWrite") == MAILBOXES
    assert reach(state, ARCHIVER, "Mail.Read", token_has=False) == set()  # no RBAC role yet
    # a token the app holds now carries what Entra consented (the default: read from the record)
    assert state.can_use_mailbox(ARCHIVER, "Mail.Read", "carol.diaz@contoso.com")
    assert not state.can_use_mailbox(ARCHIVER, "Mail.Read", "dan.wu@contoso.com")


def test_a_new_policy_and_a_nested_member_reach_the_data_plane_after_the_delay():
    state = make()
    run(state, "New-ApplicationAccessPolicy", AccessRight="RestrictAccess", AppId=OPEN,
        PolicyScopeGroupId="archive-scope")
    assert reach(state, OPEN, "Calendars.ReadWrite") == MAILBOXES  # Test- says Denied at once; Graph lags
    state.clock.advance(51)
    assert reach(state, OPEN, "Calendars.ReadWrite") == ARCHIVE_SET
    run(state, "Add-DistributionGroupMember", Identity="sales-senders", Member="dan.wu@contoso.com")
    assert run(state, "Test-ApplicationAccessPolicy", Identity="dan.wu", AppId=OPEN)[0]["AccessCheckResult"] == \
        "Granted"
    state.clock.advance(51)
    assert "dan.wu@contoso.com" in reach(state, OPEN, "Calendars.ReadWrite")


def test_rbac_role_serves_a_token_without_the_permission_after_propagation():
    state = make()
    run(state, "New-ManagementRoleAssignment", Name="archiver-read", Role="Application Mail.Read", App=ARCHIVER,
        RecipientGroupScope="archive-flat")
    assert reach(state, ARCHIVER, "Mail.Read", token_has=False) == set()
    state.clock.advance(101)
    assert reach(state, ARCHIVER, "Mail.Read", token_has=False) == ARCHIVE_SET
    assert reach(state, ARCHIVER, "Mail.Send", token_has=False) == set()  # per permission
    run(state, "New-ManagementRoleAssignment", Name="archiver-full", Role="Application Mail Full Access",
        App=ARCHIVER, RecipientGroupScope="archive-flat")
    state.clock.advance(101)
    assert reach(state, ARCHIVER, "Mail.Send", token_has=False) == ARCHIVE_SET  # the bundle serves Mail.Send


# ------------------------------------------------------------------------------------------------ the checker
def _remove_consent(state, app_id, *perms):
    app = state.apps[app_id]
    caller = state.admin_caller("https://graph.microsoft.com")
    for perm in perms:
        resource = state.resources[GRAPH]
        role_id = next(r["id"] for r in resource["appRoles"] if r["value"] == perm)
        aid = next(a["id"] for a in state.app_role_assignments[app.object_id].values()
                   if a["appRoleId"] == role_id and a["resourceId"] == resource["id"])
        delete_app_role_assignment(state, app.object_id, aid, caller=caller)


def _migrate(state, *, policy_first: bool) -> None:
    for role in ("Application Mail.Read", "Application Mail.Send"):
        run(state, "New-ManagementRoleAssignment", Name=role, Role=role, App=ARCHIVER,
            RecipientGroupScope="archive-flat")
    state.clock.advance(101)  # propagation
    ident = identity_of(state, ARCHIVER)
    if policy_first:  # the wrong order: the consent is tenant-wide until it goes
        run(state, "Remove-ApplicationAccessPolicy", Identity=ident)
        state.clock.advance(60)
        _remove_consent(state, ARCHIVER, "Mail.Read", "Mail.Send")
    else:
        _remove_consent(state, ARCHIVER, "Mail.Read", "Mail.Send")
        state.clock.advance(31)  # every token carrying the permissions has expired
        run(state, "Remove-ApplicationAccessPolicy", Identity=ident)
    state.clock.advance(300)


@pytest.mark.parametrize("delay", [0.0, 20.0])
def test_the_documented_order_migrates_without_gap_or_over_grant(delay):
    state = make(graph_replication_delay=delay)
    _migrate(state, policy_first=False)
    report = state.check()
    assert report.ok, report.to_dict()
    assert report.per_permission() == {}
    assert reach(state, ARCHIVER, "Mail.Read", token_has=False) == ARCHIVE_SET


def test_a_token_wait_that_forgets_graph_replication_is_caught_when_the_policy_applies_at_once():
    # the consent's removal reaches the token service 20 s late: tokens carrying the permissions are issued until
    # then and live 30 s more, but the policy goes 31 s after the removal and Graph applies that at once
    state = make(graph_replication_delay=20.0, access_policy_delay=0.0)
    _migrate(state, policy_first=False)
    report = state.check()
    assert report.per_permission() == {"Mail.Read": {"gaps": 0, "overgrants": 2},
                                       "Mail.Send": {"gaps": 0, "overgrants": 2}}


def test_removing_the_policy_before_the_consent_is_an_over_grant_per_permission():
    state = make()
    _migrate(state, policy_first=True)
    report = state.check()
    assert not report.ok
    assert report.per_permission() == {"Mail.Read": {"gaps": 0, "overgrants": 2},
                                       "Mail.Send": {"gaps": 0, "overgrants": 2}}
    assert {i.mailbox for i in report.mail_overgrants} == {"dan.wu@contoso.com", "erin.li@contoso.com"}
    assert all("access policy allows" in i.reason for i in report.mail_overgrants)
    assert report.to_dict()["per_permission"]["Mail.Read"]["overgrants"] == 2


def test_removing_the_consent_before_rbac_propagates_is_a_gap():
    state = make()
    run(state, "New-ManagementRoleAssignment", Name="r", Role="Application Mail.Read", App=ARCHIVER,
        RecipientGroupScope="archive-flat")
    _remove_consent(state, ARCHIVER, "Mail.Read")
    state.clock.advance(300)
    report = state.check()
    assert report.per_permission() == {"Mail.Read": {"gaps": 3, "overgrants": 0}}
    assert {i.mailbox for i in report.mail_gaps} == ARCHIVE_SET
    assert all(i.end is not None for i in report.mail_gaps)  # closed once RBAC propagated


def test_a_loaded_tenant_is_clean_and_untouched_apps_stay_so():
    state = make()
    state.clock.advance(500)
    report = state.check()
    assert report.ok and report.per_permission() == {}


def test_the_northwind_sample_reaches_what_its_readme_says():
    import json

    from migrator.samples import NORTHWIND_FIXTURE

    state = TenantState.from_fixture(json.loads(NORTHWIND_FIXTURE.read_text(encoding="utf-8")),
                                     clock=Clock.manual())
    every = {r.primary_smtp for r in state.recipients.values() if r.kind == "mailbox"}

    def names(app_no, perm):
        app = f"4e0f0000-0000-4000-8000-00000000000{app_no}"
        return {m.split("@")[0] for m in every if state.can_use_mailbox(app, perm, m)}

    assert names(2, "Mail.Read") == names(2, "Mail.Send") == {"ana.silva", "ben.okafor", "chen.li", "invoices"}
    assert names(3, "full_access_as_app") == {m.split("@")[0] for m in every} - {"eli.cohen", "fay.morgan"}
    assert names(4, "Calendars.ReadWrite") == {m.split("@")[0] for m in every}
    assert names(5, "Mail.ReadWrite") == names(5, "Calendars.Read") == {"eli.cohen", "fay.morgan", "chen.li",
                                                                        "dara.walsh"}
    assert names(1, "Mail.Read") == set()
    assert state.check().ok


def test_restricting_a_tenant_wide_app_is_a_gap_for_every_mailbox_left_outside():
    # OPEN reaches every mailbox through its consent (no policy): a RestrictAccess policy takes dan and erin away.
    # Mailboxes in no set are judged as one class and then listed one by one.
    state = make()
    created = state.clock.now()
    run(state, "New-ApplicationAccessPolicy", AccessRight="RestrictAccess", AppId=OPEN,
        PolicyScopeGroupId="archive-scope")
    state.clock.advance(200)
    report = state.check()
    assert report.per_permission() == {"Calendars.ReadWrite": {"gaps": 2, "overgrants": 0}}
    assert {i.mailbox for i in report.mail_gaps} == {"dan.wu@contoso.com", "erin.li@contoso.com"}
    assert {(i.start, i.end) for i in report.mail_gaps} == {(created + 50.0, None)}  # access_policy_delay later


def test_mail_access_now_says_what_a_fresh_token_reaches_per_permission():
    state = make()
    now = state.mail_access_now()
    assert now[ARCHIVER] == {"Mail.Read": frozenset(ARCHIVE_SET), "Mail.Send": frozenset(ARCHIVE_SET)}
    assert now[OPEN] == {"Calendars.ReadWrite": None}  # no policy: every mailbox
    assert set(now) == {ARCHIVER, EWSAPP, OPEN}
    for app, perms in now.items():
        for perm, reach in perms.items():
            assert {m for m in MAILBOXES if state.can_use_mailbox(app, perm, m)} == (MAILBOXES if reach is None
                                                                                   else reach)


def test_sandbox_serve_offers_the_access_policy_delay():
    from click.testing import CliRunner

    from migrator.cli import main

    result = CliRunner().invoke(main, ["sandbox", "serve", "--help"])
    assert result.exit_code == 0 and "--access-policy-delay" in result.output
