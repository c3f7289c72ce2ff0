"""The data plane (claim rule, propagation delay, token lifetime) and the timeline checker, on a manual clock."""

from __future__ import annotations

import pytest

from migrator.model import EXCHANGE_ONLINE_APP_ID
from migrator.sandbox.dataplane import can_send_with_claims
from sandbox_tenant import BILLING, CRM, make_state, run

DELAY, LIFE = 1800.0, 3600.0
ADELE, BOB, CAROL = "adele.vance@contoso.com", "bob.obrien@contoso.com", "carol.diaz@contoso.com"
ORIGINAL = {(BILLING, ADELE), (BILLING, BOB), (CRM, CAROL)}


def new(rule: str = "documented", **kwargs):
    return make_state(propagation_delay=DELAY, token_lifetime=LIFE, claim_rule=rule, **kwargs)


def scope_billing(state, members=("adele.vance", "bob.obrien")) -> None:
    """The RBAC side of a migration of Billing: group, scope, assignment."""
    dn = run(state, "New-DistributionGroup", Name="Billing Senders", Type="Security",
             Members=list(members))[0]["DistinguishedName"]
    run(state, "New-ManagementScope", Name="Billing Scope", RecipientRestrictionFilter=f"MemberOfGroup -eq '{dn}'")
    run(state, "New-ManagementRoleAssignment", Name="Billing SMTP", Role="Application SMTP.SendAsApp", App=BILLING,
        CustomResourceScope="Billing Scope")


def cut_over(state, app_id: str = BILLING) -> None:
    """Delete the app's Entra SMTP.SendAsApp app-role assignment through the Graph operations."""
    admin = state.admin_caller("https://graph.microsoft.com")
    sp = state.graph("get_service_principal_by_app_id", app_id, caller=admin)
    exo = state.graph("get_service_principal_by_app_id", EXCHANGE_ONLINE_APP_ID, caller=admin)
    role = next(r["id"] for r in exo["appRoles"] if r["value"] == "SMTP.SendAsApp")
    for a in state.graph("list_app_role_assignments", sp["id"], caller=admin):
        if a["appRoleId"] == role:
            state.graph("delete_app_role_assignment", sp["id"], a["id"], caller=admin)


def remove_sendas(state, *mailboxes: str) -> None:
    for m in mailboxes:
        run(state, "Remove-RecipientPermission", Identity=m, Trustee=BILLING, AccessRights="SendAs", Confirm=False)


# ---------------------------------------------------------------------------------------------- data plane
def test_documented_rule_claim_needs_sendas_no_claim_needs_propagated_rbac():
    state = new()
    assert state.can_send_as(BILLING, ADELE, token_claim=True)
    assert not state.can_send_as(BILLING, ADELE, token_claim=False)
    assert not state.can_send_as(BILLING, CAROL, token_claim=True)
    scope_billing(state)
    # Test-ServicePrincipalAuthorization sees the role at once; the data plane does not
    assert run(state, "Test-ServicePrincipalAuthorization", Identity=BILLING, Resource=ADELE)[0]["InScope"] is True
    assert not state.can_send_as(BILLING, ADELE, token_claim=False)
    state.clock.advance(DELAY - 1)
    assert not state.can_send_as(BILLING, ADELE, token_claim=False)
    state.clock.advance(1)
    assert state.can_send_as(BILLING, ADELE, token_claim=False)
    assert not state.can_send_as(BILLING, CAROL, token_claim=False)
    remove_sendas(state, ADELE)
    assert not state.can_send_as(BILLING, ADELE, token_claim=True)  # the claim triggers the SendAs check
    assert state.can_send_as(BILLING, ADELE, token_claim=False)


def test_union_rule_serves_any_token_by_either_path():
    state = new("union")
    assert state.can_send_as(BILLING, ADELE, token_claim=False)
    scope_billing(state)
    remove_sendas(state, ADELE)
    assert not state.can_send_as(BILLING, ADELE, token_claim=True)  # RBAC not propagated yet
    state.clock.advance(DELAY)
    assert state.can_send_as(BILLING, ADELE, token_claim=True)


def test_rbac_removal_also_takes_the_propagation_delay():
    state = new()
    scope_billing(state)
    state.clock.advance(DELAY)
    run(state, "Remove-ManagementRoleAssignment", Identity="Billing SMTP", Confirm=False)
    assert run(state, "Test-ServicePrincipalAuthorization", Identity=BILLING) == []
    assert state.can_send_as(BILLING, ADELE, token_claim=False)
    state.clock.advance(DELAY)
    assert not state.can_send_as(BILLING, ADELE, token_claim=False)


def test_token_claim_is_fixed_at_issue_and_tokens_expire():
    state = new()
    t0 = state.clock.now()
    claims = state.issue_token(BILLING, "https://outlook.office365.com")
    assert "SMTP.SendAsApp" in claims["roles"] and claims["exp"] == int(t0 + LIFE)
    scope_billing(state)
    state.clock.advance(DELAY)
    cut_over(state)
    fresh = state.issue_token(BILLING, "https://outlook.office365.com")
    assert "SMTP.SendAsApp" not in fresh["roles"]
    remove_sendas(state, ADELE)
    # the old token still carries the claim: it needs the SendAs grant that is now gone
    assert not can_send_with_claims(state, claims, ADELE)
    assert can_send_with_claims(state, fresh, ADELE)
    # token_claim=None reads the claim state at the token's issue time
    assert not state.can_send_as(BILLING, ADELE, token_issued_at=t0)
    assert state.can_send_as(BILLING, ADELE)
    state.clock.advance(LIFE)
    assert not can_send_with_claims(state, fresh, ADELE)  # expired
    assert not can_send_with_claims(state, {**fresh, "aud": "https://graph.microsoft.com"}, ADELE, at=fresh["iat"])


def test_past_instants_are_answered_from_the_timeline():
    state = new()
    t0 = state.clock.now()
    state.clock.advance(10)
    remove_sendas(state, ADELE)
    assert state.can_send_as(BILLING, ADELE, token_claim=True, at=t0 + 5, token_issued_at=t0)
    assert not state.can_send_as(BILLING, ADELE, token_claim=True)


# ---------------------------------------------------------------------------------------------- the checker
@pytest.mark.parametrize("rule", ["documented", "union"])
def test_correct_sequence_reports_nothing(rule):
    state = new(rule)
    scope_billing(state)
    state.clock.advance(DELAY)          # wait for propagation
    cut_over(state)
    state.clock.advance(LIFE)           # wait until every token with the claim has expired
    remove_sendas(state, ADELE, BOB)
    state.clock.advance(10)
    report = state.check(ORIGINAL)
    assert report.ok, report
    assert state.timeline.sendas_at(BILLING, ADELE, state.clock.now()) is False  # the grants really went


def test_sendas_removed_before_rbac_propagated_is_a_gap():
    state = new("union")
    t0 = state.clock.now()
    scope_billing(state)
    state.clock.advance(60)
    remove_sendas(state, ADELE)
    report = state.check(ORIGINAL)
    assert [(g.app_id, g.mailbox, g.start, g.end) for g in report.gaps] == [(BILLING, ADELE, t0 + 60, t0 + DELAY)]
    assert report.overgrants == []


def test_sendas_removed_while_tokens_carry_the_claim_is_a_gap_under_the_documented_rule():
    state = new()
    t0 = state.clock.now()
    scope_billing(state)
    state.clock.advance(DELAY)
    cut_over(state)
    state.clock.advance(600)  # too early: tokens issued before the cut-over still live
    remove_sendas(state, BOB)
    gaps = state.check(ORIGINAL).gaps
    assert [(g.mailbox, g.start, g.end) for g in gaps] == [(BOB, t0 + DELAY + 600, t0 + DELAY + LIFE)]
    assert "SendAs" in gaps[0].reason


def test_claim_removed_before_the_role_is_in_scope_is_a_gap():
    state = new()
    t0 = state.clock.now()
    scope_billing(state)
    state.clock.advance(300)
    cut_over(state)  # new tokens lack the claim while RBAC has not reached the data plane
    state.clock.advance(DELAY + LIFE)
    report = state.check(ORIGINAL)
    got = sorted((g.mailbox, g.start, g.end) for g in report.gaps)
    assert got == [(ADELE, t0 + 300, t0 + DELAY), (BOB, t0 + 300, t0 + DELAY)]
    assert all("RBAC" in g.reason for g in report.gaps)


def test_claim_removed_with_no_rbac_at_all_is_an_open_gap():
    state = new()
    t0 = state.clock.now()
    cut_over(state)
    report = state.check(ORIGINAL)
    assert {(g.mailbox, g.start, g.end) for g in report.gaps} == {(ADELE, t0, None), (BOB, t0, None)}


@pytest.mark.parametrize("rule", ["documented", "union"])
def test_group_with_one_extra_member_is_an_over_grant(rule):
    state = new(rule)
    t0 = state.clock.now()
    scope_billing(state, members=("adele.vance", "bob.obrien", "carol.diaz"))
    state.clock.advance(DELAY)
    run(state, "Remove-DistributionGroupMember", Identity="Billing Senders", Member="carol.diaz", Confirm=False)
    state.clock.advance(DELAY)
    report = state.check(ORIGINAL)
    assert report.gaps == []
    assert [(o.app_id, o.mailbox) for o in report.overgrants] == [(BILLING, CAROL)]
    o = report.overgrants[0]
    # in scope from creation; able to send until the removal propagated (documented: a claimless token can exist
    # only if the claim is gone, so there the interval is the configuration one)
    assert o.start == t0 and o.end == (t0 + 2 * DELAY if rule == "union" else t0 + DELAY)


def test_sendas_added_to_a_new_mailbox_is_an_over_grant():
    state = new()
    state.clock.advance(5)
    run(state, "Add-RecipientPermission", Identity="dan.wu", Trustee=BILLING, AccessRights="SendAs")
    report = state.check(ORIGINAL)
    assert [(o.mailbox, o.end) for o in report.overgrants] == [("dan.wu@contoso.com", None)]


def test_until_bounds_the_record_and_timeline_serialises():
    state = new()
    t0 = state.clock.now()
    state.clock.advance(100)
    remove_sendas(state, ADELE)
    assert state.check(ORIGINAL, until=t0 + 50).ok
    assert state.check(ORIGINAL, until=t0 + 200).gaps[0].end == t0 + 200
    data = state.timeline.to_dict()
    kinds = [e["kind"] for e in data["events"]]
    assert "sendas" in kinds and "change" in kinds and data["settings"]["propagation_delay"] == DELAY


def test_recipient_group_scope_covers_direct_members_only():
    state = new()
    # All Staff holds carol directly and adele/bob only through the nested Sales Senders group
    run(state, "New-ManagementRoleAssignment", Name="Staff", Role="Application SMTP.SendAsApp", App=CRM,
        RecipientGroupScope="all-staff")
    assert state.effective_rbac(state.apps[CRM]) == {CAROL}
    assert run(state, "Test-ServicePrincipalAuthorization", Identity=CRM, Resource=ADELE)[0]["InScope"] is False
    assert state.check(ORIGINAL).ok


def test_renaming_the_scoped_group_kills_the_scope_and_the_checker_sees_the_gap():
    state = new()
    t0 = state.clock.now()
    scope_billing(state)
    state.clock.advance(DELAY)
    cut_over(state)
    state.clock.advance(LIFE)
    remove_sendas(state, ADELE, BOB)
    state.clock.advance(100)
    run(state, "Set-DistributionGroup", Identity="Billing Senders", Name="Billing Senders v2")  # DN moves
    assert state.effective_rbac(state.apps[BILLING]) == set()
    gaps = state.check(ORIGINAL).gaps
    assert sorted((g.mailbox, g.start, g.end) for g in gaps) == [
        (ADELE, t0 + DELAY + LIFE + 100 + DELAY, None), (BOB, t0 + DELAY + LIFE + 100 + DELAY, None)]


def test_scope_created_before_its_group_starts_matching_when_the_group_appears():
    state = new()
    dn = f"CN=Later,{state.dn_suffix}"
    run(state, "New-ManagementScope", Name="Later", RecipientRestrictionFilter=f"MemberOfGroup -eq '{dn}'")
    run(state, "New-ManagementRoleAssignment", Name="L", Role="Application SMTP.SendAsApp", App=BILLING,
        CustomResourceScope="Later")
    assert state.effective_rbac(state.apps[BILLING]) == set()
    run(state, "New-DistributionGroup", Name="Later", Type="Security", Members=["adele.vance"])
    assert state.timeline.rbac_at(BILLING, ADELE, state.clock.now())


def test_recreated_scope_with_a_new_filter_is_not_served_from_a_stale_cache():
    state = new()
    run(state, "New-ManagementScope", Name="S", RecipientRestrictionFilter="Department -eq 'Sales'")
    run(state, "New-ManagementRoleAssignment", Name="A", Role="Application SMTP.SendAsApp", App=BILLING,
        CustomResourceScope="S")
    run(state, "Remove-ManagementRoleAssignment", Identity="A")
    run(state, "Remove-ManagementScope", Identity="S")
    run(state, "New-ManagementScope", Name="S", RecipientRestrictionFilter="Department -eq 'Finance'")
    run(state, "New-ManagementRoleAssignment", Name="A", Role="Application SMTP.SendAsApp", App=BILLING,
        CustomResourceScope="S")
    assert state.effective_rbac(state.apps[BILLING]) == {CAROL, "dan.wu@contoso.com"}


def test_pairs_unserved_at_start_are_not_gaps():
    from sandbox_tenant import DUP2

    state = new()
    # Twin App 2 holds a SendAs grant but no SMTP.SendAsApp claim: under the documented rule no token of it is
    # served at the start, so nothing the tool does later can open a gap for it
    run(state, "Add-RecipientPermission", Identity="erin.li", Trustee=DUP2, AccessRights="SendAs")
    state.clock.advance(10)
    assert not state.can_send_as(DUP2, "erin.li@contoso.com")
    run(state, "Remove-RecipientPermission", Identity=ADELE, Trustee=BILLING, AccessRights="SendAs")
    report = state.check(ORIGINAL | {(DUP2, "erin.li@contoso.com")})
    assert report.unserved_at_start == [(DUP2, "erin.li@contoso.com")]
    assert [(g.app_id, g.mailbox) for g in report.gaps] == [(BILLING, ADELE)]  # a real gap is still caught
    assert report.to_dict()["unserved_at_start"] == [[DUP2, "erin.li@contoso.com"]]


def test_attribute_change_moves_a_mailbox_into_an_attribute_scope():
    state = new()
    run(state, "New-ManagementScope", Name="Sales", RecipientRestrictionFilter="Department -eq 'Sales'")
    run(state, "New-ManagementRoleAssignment", Name="A", Role="Application SMTP.SendAsApp", App=BILLING,
        CustomResourceScope="Sales")
    assert state.effective_rbac(state.apps[BILLING]) == {ADELE, BOB}
    state.clock.advance(60)
    run(state, "Set-User", Identity="erin.li", Department="Sales")  # someone else edits the tenant
    run(state, "Set-Mailbox", Identity="adele.vance", CustomAttribute1="")
    assert run(state, "Get-Mailbox", Identity="erin.li")[0]["Department"] == "Sales"
    assert run(state, "Get-Mailbox", Identity="adele.vance")[0]["CustomAttribute1"] == ""
    assert state.effective_rbac(state.apps[BILLING]) == {ADELE, BOB, "erin.li@contoso.com"}
    over = state.check(ORIGINAL).overgrants
    assert [(o.mailbox, o.start) for o in over] == [("erin.li@contoso.com", state.clock.now())]


def _migrated(state):
    scope_billing(state)
    state.clock.advance(DELAY)
    cut_over(state)
    state.clock.advance(LIFE)
    remove_sendas(state, ADELE, BOB)
    state.clock.advance(600)  # longer than sendas_delay: the removal has reached the data plane


def _restore(state):
    for m in (ADELE, BOB):
        run(state, "Add-RecipientPermission", Identity=m, Trustee=BILLING, AccessRights="SendAs")


def test_rollback_regranting_the_claim_before_sendas_reaches_the_data_plane_is_a_gap():
    state = make_state(propagation_delay=DELAY, token_lifetime=LIFE, sendas_delay=300)
    _migrated(state)
    t = state.clock.now()
    _restore(state)
    from test_sandbox_timeline_bruteforce import regrant
    regrant(state, BILLING)  # too early: new tokens carry the claim, the SendAs grants are not served yet
    state.clock.advance(LIFE)
    run(state, "Remove-ManagementRoleAssignment", Identity="Billing SMTP")
    state.clock.advance(DELAY)
    gaps = state.check(ORIGINAL).gaps
    assert sorted((g.mailbox, g.start, g.end) for g in gaps) == [(ADELE, t, t + 300), (BOB, t, t + 300)]


def test_rollback_waiting_for_sendas_then_the_token_lifetime_has_no_gap():
    state = make_state(propagation_delay=DELAY, token_lifetime=LIFE, sendas_delay=300)
    _migrated(state)
    _restore(state)
    state.clock.advance(300)
    from test_sandbox_timeline_bruteforce import regrant
    regrant(state, BILLING)
    state.clock.advance(LIFE)  # tokens without the claim (RBAC path) have all expired
    run(state, "Remove-ManagementRoleAssignment", Identity="Billing SMTP")
    state.clock.advance(DELAY)
    assert state.check(ORIGINAL).ok


# ---------------------------------------------------------------------------------------------- FullAccess and IMAP/POP
@pytest.mark.parametrize("rule", ["documented", "union"])
def test_fullaccess_carries_smtp_and_a_cutover_without_rbac_over_it_is_an_smtp_gap(rule):
    """CRM holds FullAccess only on erin (and the claim): it sends as erin. Its cut-over with an RBAC scope that
    covers carol (its SendAs mailbox) but not erin cuts erin off: the checker shows that SMTP gap."""
    from sandbox_tenant import CRM as APP

    erin = "erin.li@contoso.com"
    state = new(rule, extra_mailbox_permissions=[(erin, APP)])
    assert state.can_send_as(APP, erin, token_claim=True)
    dn = run(state, "New-DistributionGroup", Name="CRM Senders", Type="Security",
             Members=["carol.diaz"])[0]["DistinguishedName"]
    run(state, "New-ManagementScope", Name="CRM Scope", RecipientRestrictionFilter=f"MemberOfGroup -eq '{dn}'")
    run(state, "New-ManagementRoleAssignment", Name="CRM SMTP", Role="Application SMTP.SendAsApp", App=APP,
        CustomResourceScope="CRM Scope")
    state.clock.advance(DELAY)
    cut_over(state, APP)
    state.clock.advance(LIFE)
    run(state, "Remove-MailboxPermission", Identity=erin, User=APP, AccessRights="FullAccess")
    run(state, "Remove-RecipientPermission", Identity="carol.diaz", Trustee=APP, AccessRights="SendAs")
    state.clock.advance(10)
    report = state.check({(APP, CAROL), (APP, erin)})
    assert not report.ok
    assert [(g.app_id, g.mailbox) for g in report.gaps] == [(APP, erin)]
    if rule == "documented":  # the moment the claim went, tokens without it needed RBAC for erin
        assert report.gaps[0].start < state.clock.now() - LIFE
    assert report.imap_gaps == [] and report.overgrants == []


def test_same_migration_with_rbac_covering_the_fullaccess_mailbox_has_no_gap():
    erin = "erin.li@contoso.com"
    state = new(extra_mailbox_permissions=[(erin, CRM)])
    dn = run(state, "New-DistributionGroup", Name="CRM Senders", Type="Security",
             Members=["carol.diaz", "erin.li"])[0]["DistinguishedName"]
    run(state, "New-ManagementScope", Name="CRM Scope", RecipientRestrictionFilter=f"MemberOfGroup -eq '{dn}'")
    run(state, "New-ManagementRoleAssignment", Name="CRM SMTP", Role="Application SMTP.SendAsApp", App=CRM,
        CustomResourceScope="CRM Scope")
    state.clock.advance(DELAY)
    cut_over(state, CRM)
    state.clock.advance(LIFE)
    run(state, "Remove-RecipientPermission", Identity="carol.diaz", Trustee=CRM, AccessRights="SendAs")
    report = state.check()
    assert report.ok and report.unserved_at_start == [], report.to_dict()


def test_imap_reach_is_fullaccess_with_the_imap_claim_and_its_gap_fails_the_report():
    from sandbox_tenant import READER

    state = new()
    tl = state.timeline
    assert tl.can_open(READER, ADELE, state.clock.now(), token_imap=True)
    assert not tl.can_open(READER, BOB, state.clock.now(), token_imap=True)
    assert not state.can_send_as(READER, ADELE, token_claim=False)  # no SMTP claim, no RBAC: no SMTP reach
    state.clock.advance(100)
    run(state, "Remove-MailboxPermission", Identity="adele.vance", User=READER, AccessRights="FullAccess")
    state.clock.advance(100)
    run(state, "Add-MailboxPermission", Identity="bob.obrien", User=READER, AccessRights="FullAccess")
    report = state.check()
    assert report.gaps == [] and report.overgrants == [] and not report.ok
    assert [(g.app_id, g.mailbox, g.end) for g in report.imap_gaps] == [(READER, ADELE, None)]
    assert "FullAccess" in report.imap_gaps[0].reason
    assert [(g.app_id, g.mailbox) for g in report.imap_overgrants] == [(READER, BOB)]
    assert report.to_dict()["imap_gaps"][0]["mailbox"] == ADELE
