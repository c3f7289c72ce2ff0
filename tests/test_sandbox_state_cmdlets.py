"""Exchange cmdlet semantics of the sandbox tenant state (no HTTP): outputs, errors, hazards."""

from __future__ import annotations

import pytest

from migrator.sandbox import Caller, CmdletError
from sandbox_tenant import ADMIN, BILLING, CRM, DUP1, DUP2, READER, SUFFIX, make_state, run

SALES_DN = f"CN=Sales Senders 7f3a,{SUFFIX}"


def err(state, cmdlet, **params) -> CmdletError:
    with pytest.raises(CmdletError) as info:
        run(state, cmdlet, **params)
    return info.value


@pytest.fixture
def state():
    return make_state()


# ---------------------------------------------------------------------------------------------- authorization
def test_writes_need_exchange_administrator_reads_need_manage_as_app(state):
    reader = Caller(ADMIN, frozenset({"Exchange.ManageAsApp"}), frozenset({"Global Reader"}))
    assert len(state.invoke("Get-Mailbox", {}, caller=reader)) == 5
    with pytest.raises(CmdletError) as info:
        state.invoke("New-DistributionGroup", {"Name": "x", "Type": "Security"}, caller=reader)
    assert info.value.http_status == 403
    no_role = Caller(ADMIN, frozenset(), frozenset({"Exchange Administrator"}))
    with pytest.raises(CmdletError) as info:
        state.invoke("Get-Mailbox", {}, caller=no_role)
    assert info.value.http_status == 403 and "isn't supported" in info.value.message
    nobody = Caller(ADMIN, frozenset({"Exchange.ManageAsApp"}), frozenset())
    with pytest.raises(CmdletError):
        state.invoke("Get-Mailbox", {}, caller=nobody)


def test_unknown_cmdlet_and_parameter(state):
    assert err(state, "Get-Nothing").exception_type == "CommandNotFoundException"
    e = err(state, "Get-Mailbox", Shoe="x")
    assert e.exception_type == "ParameterBindingException" and "'Shoe'" in e.message
    # Get-ManagementRoleAssignment has no -App: clients must filter client-side (docs/exchange.md §3)
    assert err(state, "Get-ManagementRoleAssignment", App=BILLING).exception_type == "ParameterBindingException"


def test_whatif_changes_nothing(state):
    out = run(state, "Remove-DistributionGroup", Identity="sales-senders", WhatIf=True)
    assert out == [] and out.warnings and "What if" in out.warnings[0]
    assert run(state, "Get-DistributionGroup", Identity="sales-senders")


def test_error_detail_is_errid_type_text(state):
    e = err(state, "Get-Mailbox", Identity="nobody@contoso.com")
    errid, full_type, text = e.detail().split("|", 2)
    assert errid.startswith("Ex") and full_type.endswith(".ManagementObjectNotFoundException")
    assert "nobody@contoso.com" in text and e.http_status == 404
    body = e.to_body()
    assert body["error"]["details"][0]["message"] == e.detail()


# ---------------------------------------------------------------------------------------------- mailboxes
def test_get_mailbox_fields(state):
    row = run(state, "Get-Mailbox", Identity="adele.vance@contoso.com")[0]
    assert row["PrimarySmtpAddress"] == "adele.vance@contoso.com"
    assert row["DistinguishedName"] == f"CN=adele.vance,{SUFFIX}"
    assert row["RecipientTypeDetails"] == "UserMailbox" and row["Department"] == "Sales"
    assert row["EmailAddresses"] == ["SMTP:adele.vance@contoso.com", "smtp:adele@contoso.onmicrosoft.com"]
    assert row["CustomAttribute1"] == "emea"
    assert run(state, "Get-Mailbox", RecipientTypeDetails="SharedMailbox")[0]["Name"] == "erin.li"


def test_get_mailbox_refuses_groups_and_empty_identity(state):
    assert err(state, "Get-Mailbox", Identity="sales-senders").exception_type == "ManagementObjectNotFoundException"
    assert err(state, "Get-Mailbox", Identity="").exception_type == "ParameterBindingException"
    assert len(run(state, "Get-Mailbox", Identity=None)) == 5  # $null is "not given"


def test_get_exo_mailbox_properties(state):
    row = run(state, "Get-EXOMailbox", Identity="carol.diaz")[0]
    assert "Department" not in row and row["ExternalDirectoryObjectId"] and row["PrimarySmtpAddress"]
    row = run(state, "Get-EXOMailbox", Identity="carol.diaz", Properties=["Department", "CustomAttribute1"])[0]
    assert row["Department"] == "Finance" and row["CustomAttribute1"] == "amer"
    assert "Department" in run(state, "Get-EXOMailbox", PropertySets="All", ResultSize="Unlimited")[0]
    assert err(state, "Get-EXOMailbox", Properties="ShoeSize").exception_type == "ArgumentException"
    by_ext = run(state, "Get-EXOMailbox", ExternalDirectoryObjectId=row["ExternalDirectoryObjectId"])
    assert by_ext[0]["Name"] == "carol.diaz"


def test_get_recipient_includes_groups_and_previews_filters(state):
    rows = run(state, "Get-Recipient", ResultSize="Unlimited")
    assert {r["RecipientTypeDetails"] for r in rows} >= {"UserMailbox", "MailUniversalSecurityGroup"}
    preview = run(state, "Get-Recipient", RecipientPreviewFilter=f"MemberOfGroup -eq '{SALES_DN}'")
    assert [r["Name"] for r in preview] == ["adele.vance", "bob.obrien"]
    e = err(state, "Get-Recipient", RecipientPreviewFilter="Alias -like '*x'")
    assert e.exception_type == "ParameterBindingException" and "first character" in e.message


# ---------------------------------------------------------------------------------------------- service principals
def test_service_principal_lookup_and_lifecycle(state):
    by_app = run(state, "Get-ServicePrincipal", Identity=BILLING)
    assert len(by_app) == 1 and by_app[0]["DisplayName"] == "EXO SP for Billing Mailer"
    oid = by_app[0]["ObjectId"]
    assert run(state, "Get-ServicePrincipal", Identity=oid.upper())[0]["AppId"] == BILLING
    assert run(state, "Get-ServicePrincipal", Identity="exo sp for billing mailer")[0]["AppId"] == BILLING
    assert run(state, "Get-ServicePrincipal", Identity=by_app[0]["Sid"])[0]["AppId"] == BILLING
    # the Entra name is not the pointer's: Exchange does not know it (an unknown identity returns every SP)
    assert len(run(state, "Get-ServicePrincipal", Identity="Billing Mailer")) == 5
    assert err(state, "New-ServicePrincipal", AppId=BILLING, ObjectId=oid).exception_type == \
        "ADObjectAlreadyExistsException"
    run(state, "Remove-ServicePrincipal", Identity=oid)
    assert BILLING not in {r["AppId"] for r in run(state, "Get-ServicePrincipal")}
    # the SendAs ACE stays behind as an orphaned SID, as in Exchange
    trustees = {r["Trustee"] for r in run(state, "Get-RecipientPermission", Identity="bob.obrien")}
    assert len(trustees) == 1 and trustees.pop().startswith("S-1-5-21-")
    # a wrong ObjectId (say, the app registration's) is refused
    assert err(state, "New-ServicePrincipal", AppId=BILLING, ObjectId="0" * 8 + "-0000-0000-0000-" + "0" * 12
               ).exception_type == "ManagementObjectNotFoundException"
    row = run(state, "New-ServicePrincipal", AppId=BILLING, ObjectId=oid, DisplayName="Billing Mailer")[0]
    assert row["ObjectId"] == oid
    assert run(state, "Get-RecipientPermission", Identity="bob.obrien")[0]["Trustee"] == "Billing Mailer"


def test_service_principal_ambiguous_display_name(state):
    assert {r["AppId"] for r in run(state, "Get-ServicePrincipal", Identity="EXO SP for Twin App")} == {DUP1, DUP2}
    e = err(state, "Add-RecipientPermission", Identity="dan.wu", Trustee="EXO SP for Twin App",
            AccessRights="SendAs")
    assert e.exception_type == "ManagementObjectAmbiguousException"


# ---------------------------------------------------------------------------------------------- permissions
def test_recipient_permission_rows_with_noise(state):
    rows = run(state, "Get-RecipientPermission", ResultSize="Unlimited")
    trustees = {r["Trustee"] for r in rows}
    assert {"EXO SP for Billing Mailer", "EXO SP for CRM Notifier", "NT AUTHORITY\\SELF", "S-1-5-21-1-2-3-4444",
            "dan.wu@contoso.com"} <= trustees
    dan = [r for r in rows if r["Identity"] == "dan.wu"]
    assert {(r["AccessControlType"], r["IsInherited"]) for r in dan} == {("Allow", True), ("Deny", False)}
    assert all(r["AccessRights"] == ["SendAs"] for r in rows)


def test_trustee_display_setting():
    state = make_state(trustee_display="object_id")
    oid = state.apps[BILLING].object_id
    assert run(state, "Get-RecipientPermission", Identity="adele.vance", Trustee=BILLING)[0]["Trustee"] == oid
    reader = state.apps[READER].object_id
    assert run(state, "Get-MailboxPermission", Identity="adele.vance", User=READER)[0]["User"] == reader


def test_trustee_filter_resolves_every_identity_form(state):
    oid = state.apps[BILLING].object_id
    sid = run(state, "Get-ServicePrincipal", Identity=BILLING)[0]["Sid"]
    for who in (BILLING, oid, "EXO SP for Billing Mailer", sid):
        rows = run(state, "Get-RecipientPermission", Trustee=who)
        assert sorted(r["Identity"] for r in rows) == ["adele.vance", "bob.obrien"]
    assert err(state, "Get-RecipientPermission", Trustee="ghost").exception_type == \
        "ManagementObjectNotFoundException"


def test_add_remove_recipient_permission(state):
    row = run(state, "Add-RecipientPermission", Identity="dan.wu@contoso.com", Trustee=BILLING,
              AccessRights="SendAs", Confirm=False)
    assert row[0] == {"Identity": "dan.wu", "Trustee": "EXO SP for Billing Mailer", "AccessControlType": "Allow",
                      "AccessRights": ["SendAs"], "IsInherited": False, "InheritanceType": "None"}
    again = run(state, "Add-RecipientPermission", Identity="dan.wu", Trustee=BILLING, AccessRights=["SendAs"])
    assert again.warnings and len(run(state, "Get-RecipientPermission", Identity="dan.wu", Trustee=BILLING)) == 1
    assert err(state, "Add-RecipientPermission", Identity="dan.wu", Trustee=BILLING,
               AccessRights="FullAccess").exception_type == "ParameterBindingException"
    run(state, "Remove-RecipientPermission", Identity="dan.wu", Trustee=BILLING, AccessRights="SendAs",
        Confirm=False)
    assert run(state, "Get-RecipientPermission", Identity="dan.wu", Trustee=BILLING) == []
    gone = run(state, "Remove-RecipientPermission", Identity="dan.wu", Trustee=BILLING, AccessRights="SendAs")
    assert gone.warnings and "doesn't exist" in gone.warnings[0]
    assert err(state, "Add-RecipientPermission", Identity="ghost@contoso.com", Trustee=BILLING,
               AccessRights="SendAs").exception_type == "ManagementObjectNotFoundException"


def test_mailbox_permissions(state):
    rows = run(state, "Get-MailboxPermission", Identity="adele.vance")
    assert {r["User"] for r in rows} == {"EXO SP for Helpdesk Reader", "NT AUTHORITY\\SELF"}
    billing = next(r for r in rows if r["User"] == "EXO SP for Helpdesk Reader")
    assert billing["AccessRights"] == ["FullAccess"] and billing["Deny"] is False
    assert billing["InheritanceType"] == "All" and billing["UserSid"].startswith("S-1-5-21-")
    run(state, "Add-MailboxPermission", Identity="bob.obrien", User=CRM, AccessRights="FullAccess",
        InheritanceType="All", AutoMapping=False)
    assert run(state, "Get-EXOMailboxPermission", Identity="bob.obrien", User=CRM)[0]["User"] == "EXO SP for CRM Notifier"
    assert run(state, "Add-MailboxPermission", Identity="bob.obrien", User=CRM, AccessRights="FullAccess").warnings
    run(state, "Remove-MailboxPermission", Identity="bob.obrien", User=CRM, AccessRights="FullAccess",
        InheritanceType="All", Confirm=False)
    assert run(state, "Get-MailboxPermission", Identity="bob.obrien", User=CRM) == []
    e = err(state, "Get-EXOMailboxPermission", Identity="ghost@contoso.com")
    assert e.exception_type == "ManagementObjectNotFoundException"


# ---------------------------------------------------------------------------------------------- the $null hazard
@pytest.mark.parametrize("cmdlet,every", [
    ("Get-ServicePrincipal", 5), ("Get-RecipientPermission", 8), ("Get-MailboxPermission", 2),
    ("Get-ManagementRoleAssignment", 2), ("Get-DistributionGroupMember", 4), ("Get-ApplicationAccessPolicy", 1),
])
@pytest.mark.parametrize("identity", [None, "", "   ", "does-not-exist@contoso.com"])
def test_bad_identity_returns_every_object(state, cmdlet, every, identity):
    run(state, "New-ManagementRoleAssignment", Name="A1", Role="Application SMTP.SendAsApp", App=BILLING,
        RecipientGroupScope="sales-senders")
    run(state, "New-ManagementRoleAssignment", Name="A2", Role="Application Mail.Send", App=CRM)
    rows = run(state, cmdlet, Identity=identity, **({"ResultSize": "Unlimited"} if "Permission" in cmdlet
                                                    or "Member" in cmdlet else {}))
    assert len(rows) == every


def test_good_identity_narrows_the_hazard_cmdlets(state):
    assert len(run(state, "Get-ServicePrincipal", Identity=CRM)) == 1
    assert len(run(state, "Get-RecipientPermission", Identity="carol.diaz")) == 1
    assert len(run(state, "Get-DistributionGroupMember", Identity="sales-senders")) == 2
    assert len(run(state, "Get-ApplicationAccessPolicy", Identity=CRM)) == 1


# ---------------------------------------------------------------------------------------------- groups
def test_new_security_group_shape(state):
    row = run(state, "New-DistributionGroup", Name="SendAs Billing 01", Alias="sendas-billing-01", Type="Security",
              MemberJoinRestriction="Closed", MemberDepartRestriction="Closed",
              Members=["adele.vance", "bob.obrien@contoso.com"])[0]
    assert row["RecipientTypeDetails"] == "MailUniversalSecurityGroup"
    assert row["DistinguishedName"] == f"CN=SendAs Billing 01,{SUFFIX}"
    assert row["PrimarySmtpAddress"] == "sendas-billing-01@contoso.com"  # the main accepted domain
    assert row["GroupType"] == "Universal, SecurityEnabled" and row["HiddenFromAddressListsEnabled"] is False
    assert run(state, "Get-DistributionGroup", Identity=row["Guid"])[0]["Name"] == "SendAs Billing 01"
    members = run(state, "Get-DistributionGroupMember", Identity=row["DistinguishedName"])
    assert [m["PrimarySmtpAddress"] for m in members] == ["adele.vance@contoso.com", "bob.obrien@contoso.com"]
    run(state, "Set-DistributionGroup", Identity="sendas-billing-01", HiddenFromAddressListsEnabled=True)
    assert run(state, "Get-DistributionGroup", Identity="sendas-billing-01")[0]["HiddenFromAddressListsEnabled"]


def test_group_name_limits_and_duplicates(state):
    e = err(state, "New-DistributionGroup", Name="x" * 65, Type="Security")
    assert "maximum length is 64" in e.message
    run(state, "New-DistributionGroup", Name="x" * 64, Type="Security")
    assert err(state, "New-DistributionGroup", Name="Sales Senders", Type="Security").exception_type == \
        "ADObjectAlreadyExistsException"
    assert err(state, "New-DistributionGroup", Name="Other", Alias="sales-senders", Type="Security"
               ).exception_type == "ProxyAddressExistsException"


def test_replication_delay_hides_new_group_from_get_but_not_from_new():
    state = make_state(replication_delay=30)
    run(state, "New-DistributionGroup", Name="Fresh", Type="Security")
    assert err(state, "Get-DistributionGroup", Identity="Fresh").exception_type == \
        "ManagementObjectNotFoundException"
    assert err(state, "New-DistributionGroup", Name="Fresh", Type="Security").exception_type == \
        "ADObjectAlreadyExistsException"
    # the hazard bites here: the unreplicated group's members query returns every group's members
    assert len(run(state, "Get-DistributionGroupMember", Identity="Fresh")) == 4
    state.clock.advance(30)
    assert run(state, "Get-DistributionGroup", Identity="Fresh")[0]["Name"] == "Fresh"
    assert run(state, "Get-DistributionGroupMember", Identity="Fresh") == []


def test_primary_address_change_keeps_the_old_one_as_proxy(state):
    run(state, "Set-DistributionGroup", Identity="sales-senders", PrimarySmtpAddress="sales@contoso.com")
    row = run(state, "Get-DistributionGroup", Identity="sales@contoso.com")[0]
    assert row["PrimarySmtpAddress"] == "sales@contoso.com"
    assert row["EmailAddresses"] == ["SMTP:sales@contoso.com", "smtp:sales-senders@contoso.com"]
    assert run(state, "Get-DistributionGroup", Identity="sales-senders@contoso.com")[0]["Guid"] == row["Guid"]
    e = err(state, "Set-DistributionGroup", Identity="sales@contoso.com", PrimarySmtpAddress="carol.diaz@contoso.com")
    assert e.exception_type == "ProxyAddressExistsException"


def test_rename_moves_the_dn(state):
    run(state, "Set-DistributionGroup", Identity="sales-senders", Name="Sales Renamed")
    row = run(state, "Get-DistributionGroup", Identity="sales-senders@contoso.com")[0]
    assert row["DistinguishedName"] == f"CN=Sales Renamed,{SUFFIX}"
    assert run(state, "Get-Recipient", RecipientPreviewFilter=f"MemberOfGroup -eq '{SALES_DN}'") == []


def test_membership_update_add_remove(state):
    run(state, "Update-DistributionGroupMember", Identity="sales-senders", Members=["carol.diaz", "dan.wu"],
        Confirm=False)
    got = lambda: [m["Name"] for m in run(state, "Get-DistributionGroupMember", Identity="sales-senders")]  # noqa
    assert got() == ["carol.diaz", "dan.wu"]  # replaced, not merged
    run(state, "Add-DistributionGroupMember", Identity="sales-senders", Member="erin.li")
    assert err(state, "Add-DistributionGroupMember", Identity="sales-senders", Member="erin.li").exception_type == \
        "MemberAlreadyExistsException"
    run(state, "Remove-DistributionGroupMember", Identity="sales-senders", Member="dan.wu", Confirm=False)
    assert got() == ["carol.diaz", "erin.li"]
    assert err(state, "Remove-DistributionGroupMember", Identity="sales-senders", Member="dan.wu").exception_type \
        == "MemberNotFoundException"
    # an unknown member fails the whole update: nothing replaced
    assert err(state, "Update-DistributionGroupMember", Identity="sales-senders",
               Members=["adele.vance", "ghost"]).exception_type == "ManagementObjectNotFoundException"
    assert got() == ["carol.diaz", "erin.li"]
    e = err(state, "Update-DistributionGroupMember", Identity="sales-senders", Members=["adele.vance"] * 10_001)
    assert e.exception_type == "ParameterBindingException" and "10000" in e.message
    run(state, "Update-DistributionGroupMember", Identity="sales-senders", Members=[])
    assert got() == []


def test_remove_group(state):
    run(state, "Remove-DistributionGroup", Identity="sales-senders", Confirm=False)
    assert err(state, "Get-DistributionGroup", Identity="sales-senders").exception_type == \
        "ManagementObjectNotFoundException"
    assert "Sales Senders" not in [m["Name"] for m in run(state, "Get-DistributionGroupMember",
                                                           Identity="all-staff")]


def test_group_manager_check():
    state = make_state()
    state.find_recipients("sales-senders")[0].extra["managed_by"] = ["adele.vance"]
    assert err(state, "Add-DistributionGroupMember", Identity="sales-senders", Member="dan.wu").exception_type == \
        "OperationRequiresGroupManagerException"
    run(state, "Add-DistributionGroupMember", Identity="sales-senders", Member="dan.wu",
        BypassSecurityGroupManagerCheck=True)


# ---------------------------------------------------------------------------------------------- scopes and roles
def test_scope_lifecycle_and_in_use(state):
    row = run(state, "New-ManagementScope", Name="Sales Scope",
              RecipientRestrictionFilter=f"MemberOfGroup -eq '{SALES_DN}'")[0]
    assert row["ScopeRestrictionType"] == "RecipientScope" and row["RecipientFilter"].startswith("MemberOfGroup")
    assert err(state, "New-ManagementScope", Name="sales scope", RecipientRestrictionFilter="Name -eq 'x'"
               ).exception_type == "ADObjectAlreadyExistsException"
    assert err(state, "New-ManagementScope", Name="Bad", RecipientRestrictionFilter="Name -eq"
               ).exception_type == "ParameterBindingException"
    run(state, "New-ManagementRoleAssignment", Name="A1", Role="Application SMTP.SendAsApp", App=BILLING,
        CustomResourceScope="Sales Scope")
    e = err(state, "Remove-ManagementScope", Identity="Sales Scope")
    assert e.exception_type == "InvalidOperationException" and "A1" in e.message
    assert run(state, "Get-ManagementScope", Orphan=True) == []
    run(state, "Remove-ManagementRoleAssignment", Identity="A1", Confirm=False)
    run(state, "Remove-ManagementScope", Identity="Sales Scope", Confirm=False)
    assert err(state, "Get-ManagementScope", Identity="Sales Scope").exception_type == \
        "ManagementObjectNotFoundException"


def test_exclusive_scope_accepted_but_not_honoured_for_apps(state):
    run(state, "New-ManagementScope", Name="Excl", RecipientRestrictionFilter="Department -eq 'Finance'",
        Exclusive=True, Force=True)
    assert run(state, "Get-ManagementScope", Identity="Excl")[0]["Exclusive"] is True
    run(state, "New-ManagementRoleAssignment", Name="Org", Role="Application SMTP.SendAsApp", App=CRM)
    # an organization-wide assignment still reaches mailboxes inside the exclusive scope
    rows = run(state, "Test-ServicePrincipalAuthorization", Identity=CRM, Resource="carol.diaz")
    assert rows[0]["InScope"] is True and rows[0]["ScopeType"] == "Organization"


def test_role_assignment_outputs_for_each_scope_kind(state):
    oid = state.apps[BILLING].object_id
    run(state, "New-ManagementScope", Name="S", RecipientRestrictionFilter="Department -eq 'Sales'")
    a = run(state, "New-ManagementRoleAssignment", Name="A-custom", Role="application smtp.sendasapp", App=oid,
            CustomResourceScope="S")[0]
    assert a["Role"] == "Application SMTP.SendAsApp" and a["RoleAssigneeName"] == oid
    assert a["RoleAssigneeType"] == "ServicePrincipal" and a["CustomResourceScope"] == "S"
    assert a["RecipientWriteScope"] == "CustomRecipientScope" and a["AssignmentMethod"] == "Direct"
    g = run(state, "New-ManagementRoleAssignment", Name="A-group", Role="Application SMTP.SendAsApp",
            App="EXO SP for Billing Mailer", RecipientGroupScope="sales-senders")[0]
    assert g["CustomResourceScope"].startswith("Sales Senders_") and g["RecipientGroupScope"] == "Sales Senders"
    u = run(state, "New-ManagementRoleAssignment", Name="A-au", Role="Application Mail.Send", App=BILLING,
            RecipientAdministrativeUnitScope="au000000-0000-0000-0000-000000000001")[0]
    assert u["RecipientWriteScope"] == "AdministrativeUnit"
    assert err(state, "New-ManagementRoleAssignment", Name="A-two", Role="Application SMTP.SendAsApp", App=BILLING,
               CustomResourceScope="S", RecipientGroupScope="sales-senders").exception_type == \
        "ParameterBindingException"
    assert err(state, "New-ManagementRoleAssignment", Name="A-custom", Role="Application SMTP.SendAsApp",
               App=BILLING).exception_type == "ADObjectAlreadyExistsException"
    assert err(state, "New-ManagementRoleAssignment", Role="Application Nothing", App=BILLING).exception_type == \
        "ManagementObjectNotFoundException"
    assert err(state, "New-ManagementRoleAssignment", Role="Application SMTP.SendAsApp", App="ghost"
               ).exception_type == "ManagementObjectNotFoundException"
    smtp = run(state, "Get-ManagementRoleAssignment", Role="Application SMTP.SendAsApp")
    assert [r["Name"] for r in smtp] == ["A-custom", "A-group"]
    assert [r["Name"] for r in run(state, "Get-ManagementRoleAssignment", RoleAssignee=oid)] == \
        ["A-au", "A-custom", "A-group"]
    assert run(state, "Get-ManagementRoleAssignment", Identity="A-au")[0]["Role"] == "Application Mail.Send"
    assert len(run(state, "Get-ManagementRoleAssignment", RoleAssigneeType="ServicePrincipal")) == 3
    assert run(state, "Get-ManagementRoleAssignment", RoleAssigneeType="User") == []


def test_role_assignee_name_setting():
    state = make_state(role_assignee_name="display_name")
    row = run(state, "New-ManagementRoleAssignment", Name="A", Role="Application SMTP.SendAsApp", App=BILLING)[0]
    assert row["RoleAssigneeName"] == "EXO SP for Billing Mailer" and row["RoleAssigneeType"] == "ServicePrincipal"
    with pytest.raises(ValueError):
        make_state(role_assignee_name="guid")


def test_set_role_assignment_changes_scope(state):
    run(state, "New-ManagementScope", Name="S1", RecipientRestrictionFilter="Department -eq 'Sales'")
    run(state, "New-ManagementScope", Name="S2", RecipientRestrictionFilter="Department -eq 'Finance'")
    run(state, "New-ManagementRoleAssignment", Name="A", Role="Application SMTP.SendAsApp", App=CRM,
        CustomResourceScope="S1")
    run(state, "Set-ManagementRoleAssignment", Identity="A", CustomResourceScope="S2")
    assert run(state, "Get-ManagementRoleAssignment", Identity="A")[0]["CustomResourceScope"] == "S2"
    run(state, "Remove-ManagementScope", Identity="S1")  # no longer in use


def test_test_service_principal_authorization(state):
    run(state, "New-ManagementScope", Name="S", RecipientRestrictionFilter=f"MemberOfGroup -eq '{SALES_DN}'")
    run(state, "New-ManagementRoleAssignment", Name="A1", Role="Application SMTP.SendAsApp", App=BILLING,
        CustomResourceScope="S")
    run(state, "New-ManagementRoleAssignment", Name="A2", Role="Application Mail.Send", App=BILLING,
        RecipientAdministrativeUnitScope="EMEA")
    rows = run(state, "Test-ServicePrincipalAuthorization", Identity=BILLING)
    assert [(r["RoleName"], r["GrantedPermissions"], r["AllowedResourceScope"], r["ScopeType"], r["InScope"])
            for r in rows] == [("Application SMTP.SendAsApp", "SMTP.SendAsApp", "S", "CustomRecipientScope",
                                "Not Run"),
                               ("Application Mail.Send", "Mail.Send", "au000000-0000-0000-0000-000000000001",
                                "AdministrativeUnit", "Not Run")]
    bob = run(state, "Test-ServicePrincipalAuthorization", Identity=BILLING, Resource="bob.obrien@contoso.com")
    assert [r["InScope"] for r in bob] == [True, False]
    adele = run(state, "Test-ServicePrincipalAuthorization", Identity=BILLING, Resource="adele.vance")
    assert [r["InScope"] for r in adele] == [True, True]
    assert run(state, "Test-ServicePrincipalAuthorization", Identity=CRM) == []


def test_application_access_policy_rows(state):
    row = run(state, "Get-ApplicationAccessPolicy")[0]
    assert row["AppId"] == CRM and row["AccessRight"] == "RestrictAccess" and row["ScopeName"] == "Sales Senders"
    sid, oid = row["ScopeIdentityRaw"].split(";")
    assert sid.startswith("S-1-5-21-") and oid == state.find_recipients("sales-senders")[0].external_id


def test_trustee_query_misses_aces_on_another_sid_but_the_scan_shows_them():
    from migrator.sandbox import Clock, TenantState
    from sandbox_tenant import fixture

    data = fixture()
    data["recipient_permissions"].append({"mailbox": "erin.li@contoso.com", "trustee": {"app": BILLING},
                                          "access_rights": ["SendAs"], "other_sid": True})
    state = TenantState.from_fixture(data, clock=Clock.manual())
    by_trustee = {r["Identity"] for r in run(state, "Get-RecipientPermission", Trustee=BILLING)}
    scan = {r["Identity"] for r in run(state, "Get-RecipientPermission", ResultSize="Unlimited")
            if r["Trustee"] == "EXO SP for Billing Mailer"}
    assert by_trustee == {"adele.vance", "bob.obrien"} and scan == by_trustee | {"erin.li"}
    assert "erin.li@contoso.com" in state.effective_sendas(state.apps[BILLING])  # it still grants SendAs
    assert state.to_fixture()["recipient_permissions"][-1]["other_sid"] is True


def test_every_output_row_is_json_ready(state):
    import json

    from migrator.sandbox.cmdlets import registry

    run(state, "New-ManagementScope", Name="S", RecipientRestrictionFilter="Department -eq 'Sales'")
    run(state, "New-ManagementRoleAssignment", Name="A", Role="Application SMTP.SendAsApp", App=BILLING,
        CustomResourceScope="S")
    calls = {"Test-ServicePrincipalAuthorization": {"Identity": BILLING, "Resource": "adele.vance"},
             "Get-DistributionGroupMember": {"Identity": "sales-senders"},
             "Get-EXOMailboxPermission": {"Identity": "adele.vance"},
             "Test-ApplicationAccessPolicy": {"Identity": "adele.vance", "AppId": CRM}}
    gets = [name for name in registry() if name.startswith("Get-") or name.startswith("Test-")]
    assert len(gets) == 15
    for name in gets:
        rows = run(state, name, **calls.get(name, {}))
        assert rows, name
        for row in rows:
            assert json.loads(json.dumps(row)) == row, name
            assert all(isinstance(k, str) and k[:1].isupper() for k in row), name
