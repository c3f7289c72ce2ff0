"""The PowerShell an admin runs to produce the exports `migrator inventory --from-exports` reads.

ExchangeOnlineManagement V3 (REST cmdlets). The permission exports are filtered client-side to the rows that can
matter (not inherited, not NT AUTHORITY\\SELF), so the files stay small on a large tenant; the tool copes with the
unfiltered forms too. Multi-valued properties are joined explicitly, because Export-Csv would otherwise write a
.NET type name (`System.Collections.ArrayList`) instead of their values. Get-DistributionGroupMember does not say
which group a member row belongs to, so the script adds a GroupIdentity column. The apps' Entra app-role
assignments come from Microsoft Graph PowerShell (Get-MgServicePrincipalAppRoleAssignment), with each role's value
added: they decide which FullAccess grants carry SMTP (SMTP.SendAsApp) and which serve IMAP/POP. For the Graph/EWS
side (docs/exchange.md §8) it reads the Application Access Policies and, from the Microsoft Graph and Office 365
Exchange Online resources' appRoleAssignedTo, every app holding a permission such a policy fences (apps without an
Exchange pointer included). Files that come out empty still carry their header, so "read, none" stays apart from
"not read" (an older export without the file). Existing RBAC for Applications (each app's `Application ...` role
assignments, every management scope) comes last, so the plan builds on what is already there.
"""

from __future__ import annotations

from migrator.model import AAP_PERMISSIONS

SCRIPT = r"""<#
  migrator: export the legacy per-mailbox grants (SendAs, FullAccess) for an offline inventory.
  Read-only: it runs Get-* cmdlets only and changes nothing in the tenant.

  Needs the ExchangeOnlineManagement module 3.x (Install-Module ExchangeOnlineManagement) and an account
  with at least the View-Only Organization Management role; for the apps' Entra permissions, the Microsoft
  Graph PowerShell module (Install-Module Microsoft.Graph.Applications) and consent to Application.Read.All.
  PowerShell 7 or Windows PowerShell 5.1.

    ./migrator-export.ps1 -OutDir .\exports
    migrator inventory --from-exports .\exports --out inventory\<name>

  The file names do not matter: migrator recognises each file by its columns.
#>
param(
    [string]$OutDir = ".\migrator-exports",
    [switch]$SkipGroups,  # leave out existing groups (then the planner cannot reuse any)
    [switch]$SkipAppRoles, # leave out the apps' Entra permissions (then the plan asks what their FullAccess serves)
    [switch]$SkipAccessPolicies, # leave out the Application Access Policies (then they are "not read")
    [switch]$SkipRbac     # leave out existing RBAC for Applications (then they are "not read")
)
$ErrorActionPreference = 'Stop'
Import-Module ExchangeOnlineManagement -MinimumVersion 3.0.0
if (-not (Get-ConnectionInformation | Where-Object State -eq 'Connected')) {
    Connect-ExchangeOnline -ShowBanner:$false
}
New-Item -ItemType Directory -Force -Path $OutDir | Out-Null
function Out-MigratorCsv([string]$Name) {
    # UTF8: Windows PowerShell 5.1 writes a BOM, PowerShell 7 does not; migrator reads both.
    $input | Export-Csv -Path (Join-Path $OutDir $Name) -NoTypeInformation -Encoding UTF8
}
function Out-MigratorCsvOrHeader([string]$Name, [string[]]$Columns) {
    # Given no rows, Out-MigratorCsv writes an empty file, which migrator cannot tell from "not exported": the header.
    $rows = @($input)
    if ($rows.Count) { $rows | Out-MigratorCsv $Name }
    else { (($Columns | ForEach-Object { '"' + $_ + '"' }) -join ',') | Out-File -FilePath (Join-Path $OutDir $Name) -Encoding UTF8 }
}
$selfName = 'NT AUTHORITY\SELF'

# 1. Service principals: Exchange's pointers to Entra apps (New-ServicePrincipal). A permission row may show one
#    by any of these names (its DisplayName is the pointer's own, often unlike the Entra name).
Get-ServicePrincipal |
    Select-Object DisplayName, AppId, ObjectId, Identity, Name, Sid |
    Out-MigratorCsv 'service-principals.csv'

# 2. Mailboxes, with the attributes a management scope can filter on. Department, Company and the address
#    fields live on the recipient, not the mailbox: take them from Get-EXORecipient, keyed by object id.
$attrs = @('Department', 'Company', 'City', 'StateOrProvince', 'CountryOrRegion')
$recipient = @{}
Get-EXORecipient -ResultSize Unlimited -RecipientTypeDetails UserMailbox, SharedMailbox, RoomMailbox, EquipmentMailbox -Properties $attrs |
    ForEach-Object { $recipient[[string]$_.ExternalDirectoryObjectId] = $_ }
$custom = 1..15 | ForEach-Object { "CustomAttribute$_" }
$mailboxes = Get-EXOMailbox -ResultSize Unlimited -Properties (@('Office') + $custom)
$columns = @('Name', 'Alias', 'DisplayName', 'PrimarySmtpAddress', 'UserPrincipalName',
    @{ n = 'EmailAddresses'; e = { ($_.EmailAddresses | Where-Object { $_ -like 'smtp:*' }) -join ';' } },
    'ExternalDirectoryObjectId', 'Guid', 'DistinguishedName', 'Identity', 'RecipientTypeDetails', 'Office') + $custom
foreach ($a in $attrs) {
    $columns += @{ n = $a; e = [scriptblock]::Create("`$recipient[[string]`$_.ExternalDirectoryObjectId].$a") }
}
$mailboxes | Select-Object $columns | Out-MigratorCsv 'mailboxes.csv'

# 3. SendAs: one scan of the whole tenant (-Trustee can miss rows), explicit rows only.
Get-RecipientPermission -ResultSize Unlimited |
    Where-Object { -not $_.IsInherited -and $_.Trustee -ne $selfName } |
    Select-Object Identity, Trustee, AccessControlType,
        @{ n = 'AccessRights'; e = { $_.AccessRights -join ', ' } }, IsInherited, InheritanceType |
    Out-MigratorCsv 'recipient-permissions.csv'

# 4. FullAccess: per mailbox (a mailbox's permissions are read one mailbox at a time), explicit rows only.
#    Identity is replaced by the mailbox's primary address, which is unambiguous. Never pass an empty identity:
#    the Get-* cmdlets answer an empty one with every object.
$i = 0
$mailboxes | ForEach-Object {
    $mbx = $_
    $i++
    Write-Progress -Activity 'Mailbox permissions' -Status $mbx.PrimarySmtpAddress -PercentComplete (100 * $i / [math]::Max(1, $mailboxes.Count))
    if ([string]::IsNullOrWhiteSpace([string]$mbx.PrimarySmtpAddress)) { return }
    Get-EXOMailboxPermission -Identity ([string]$mbx.PrimarySmtpAddress) |
        Where-Object { -not $_.IsInherited -and $_.User -ne $selfName } |
        Select-Object @{ n = 'Identity'; e = { [string]$mbx.PrimarySmtpAddress } }, User,
            @{ n = 'AccessRights'; e = { $_.AccessRights -join ', ' } }, IsInherited, Deny, InheritanceType
} | Out-MigratorCsv 'mailbox-permissions.csv'
Write-Progress -Activity 'Mailbox permissions' -Completed

# 5. Existing mail-enabled groups and their direct members, so the planner can reuse a group that matches.
if (-not $SkipGroups) {
    $groups = Get-DistributionGroup -ResultSize Unlimited
    $groups |
        Select-Object Name, Alias, DisplayName, PrimarySmtpAddress, DistinguishedName, Guid, ExternalDirectoryObjectId,
            RecipientTypeDetails, GroupType, @{ n = 'ManagedBy'; e = { $_.ManagedBy -join ';' } },
            MemberJoinRestriction, MemberDepartRestriction, HiddenFromAddressListsEnabled |
        Out-MigratorCsv 'groups.csv'
    $groups | ForEach-Object {
        $g = $_
        if ([string]::IsNullOrWhiteSpace([string]$g.PrimarySmtpAddress)) { return }
        # Get-DistributionGroupMember does not say which group a row belongs to: add it as GroupIdentity.
        Get-DistributionGroupMember -Identity ([string]$g.PrimarySmtpAddress) -ResultSize Unlimited |
            Select-Object @{ n = 'GroupIdentity'; e = { [string]$g.PrimarySmtpAddress } }, Name, DisplayName,
                PrimarySmtpAddress, RecipientType, RecipientTypeDetails, ExternalDirectoryObjectId, Identity
    } | Out-MigratorCsv 'group-members.csv'
}

# 6. The apps' Entra app-role assignments (SMTP.SendAsApp, IMAP.AccessAsApp, POP.AccessAsApp, Mail.Send, ...):
#    an app whose tokens carry SMTP.SendAsApp sends as every mailbox it holds SendAs *or FullAccess* on, and
#    FullAccess serves IMAP/POP with IMAP.AccessAsApp/POP.AccessAsApp. Graph names a role by its id only: the
#    value is looked up once per resource (its appRoles) and added as AppRoleValue.
if (-not $SkipAppRoles) {
    Import-Module Microsoft.Graph.Applications
    if (-not (Get-MgContext)) { Connect-MgGraph -Scopes 'Application.Read.All' -NoWelcome }
    $roleValue = @{}  # resource service principal id -> @{ app role id -> value }
    Get-ServicePrincipal | ForEach-Object {
        $oid = [string]$_.ObjectId
        if ([string]::IsNullOrWhiteSpace($oid)) { return }
        Get-MgServicePrincipalAppRoleAssignment -ServicePrincipalId $oid -All | ForEach-Object {
            $a = $_
            $rid = [string]$a.ResourceId
            if (-not $roleValue.ContainsKey($rid)) {
                $roleValue[$rid] = @{}
                (Get-MgServicePrincipal -ServicePrincipalId $rid -Property 'id,appRoles').AppRoles |
                    ForEach-Object { $roleValue[$rid][[string]$_.Id] = [string]$_.Value }
            }
            [pscustomobject]@{
                PrincipalId = $oid; PrincipalDisplayName = [string]$a.PrincipalDisplayName
                ResourceId = $rid; ResourceDisplayName = [string]$a.ResourceDisplayName
                AppRoleId = [string]$a.AppRoleId; AppRoleValue = $roleValue[$rid][[string]$a.AppRoleId]
            }
        }
    } | Where-Object { $_.AppRoleValue } | Out-MigratorCsv 'app-role-assignments.csv'
}

# 7. Application Access Policies (they fence Graph/EWS permissions on a group, nested members included; the group's
#    members come from step 5).
if (-not $SkipAccessPolicies) {
    $policyColumns = @('Identity', 'AppId', 'ScopeName', 'ScopeIdentity', 'ScopeIdentityRaw', 'Description',
        'AccessRight', 'IsValid')
    Get-ApplicationAccessPolicy | Select-Object $policyColumns | Out-MigratorCsvOrHeader 'access-policies.csv' $policyColumns
}

# 8. Every app holding a permission an access policy fences, from the resources' side (appRoleAssignedTo), so apps
#    without an Exchange pointer are found too. Each principal's AppId is looked up once.
if (-not $SkipAppRoles) {
    $fenced = @{ @FENCED@ }
    $principalApp = @{}
    $assignedColumns = @('PrincipalId', 'PrincipalAppId', 'PrincipalDisplayName', 'PrincipalType', 'ResourceId',
        'ResourceDisplayName', 'AppRoleId', 'AppRoleValue')
    @('00000003-0000-0000-c000-000000000000', '00000002-0000-0ff1-ce00-000000000000') | ForEach-Object {
        $res = Get-MgServicePrincipal -Filter "appId eq '$_'" -Property 'id,appId,displayName,appRoles'
        $values = @{}
        $res.AppRoles | ForEach-Object { $values[[string]$_.Id] = [string]$_.Value }
        Get-MgServicePrincipalAppRoleAssignedTo -ServicePrincipalId $res.Id -All | ForEach-Object {
            $a = $_
            $value = $values[[string]$a.AppRoleId]
            if ($fenced[$value] -ne [string]$res.DisplayName -or [string]$a.PrincipalType -ne 'ServicePrincipal') { return }
            $principalId = [string]$a.PrincipalId
            if (-not $principalApp.ContainsKey($principalId)) {
                $principalApp[$principalId] = [string](Get-MgServicePrincipal -ServicePrincipalId $principalId -Property 'id,appId').AppId
            }
            [pscustomobject]@{
                PrincipalId = $principalId; PrincipalAppId = $principalApp[$principalId]
                PrincipalDisplayName = [string]$a.PrincipalDisplayName; PrincipalType = [string]$a.PrincipalType
                ResourceId = [string]$res.Id; ResourceDisplayName = [string]$res.DisplayName
                AppRoleId = [string]$a.AppRoleId; AppRoleValue = $value
            }
        }
    } | Out-MigratorCsvOrHeader 'app-role-assigned-to.csv' $assignedColumns
}

# 9. Existing RBAC for Applications: each app's role assignments (Application SMTP.SendAsApp and the other
#    Application roles) and every management scope with its RecipientRestrictionFilter, so the plan builds on what
#    is already there (an app moved by hand is not planned twice).
if (-not $SkipRbac) {
    $raHeader = @('Name', 'Role', 'RoleAssignee', 'RoleAssigneeName', 'RoleAssigneeType', 'CustomResourceScope',
        'RecipientGroupScope', 'RecipientAdministrativeUnitScope', 'Enabled')
    Get-ServicePrincipal | ForEach-Object {
        $oid = [string]$_.ObjectId
        if ([string]::IsNullOrWhiteSpace($oid)) { return }
        Get-ManagementRoleAssignment -RoleAssignee $oid |
            Where-Object { [string]$_.Role -like 'Application *' } |
            Select-Object Name, @{ n = 'Role'; e = { [string]$_.Role } }, @{ n = 'RoleAssignee'; e = { $oid } },
                RoleAssigneeName, @{ n = 'RoleAssigneeType'; e = { [string]$_.RoleAssigneeType } },
                @{ n = 'CustomResourceScope'; e = { [string]$_.CustomResourceScope } },
                @{ n = 'RecipientGroupScope'; e = { [string]$_.RecipientGroupScope } },
                @{ n = 'RecipientAdministrativeUnitScope'; e = { [string]$_.RecipientAdministrativeUnitScope } },
                Enabled
    } | Out-MigratorCsvOrHeader 'role-assignments.csv' $raHeader
    Get-ManagementScope |
        Select-Object Name, @{ n = 'RecipientFilter'; e = { [string]$_.RecipientFilter } },
            @{ n = 'RecipientRoot'; e = { [string]$_.RecipientRoot } }, Exclusive,
            @{ n = 'ScopeRestrictionType'; e = { [string]$_.ScopeRestrictionType } } |
        Out-MigratorCsvOrHeader 'management-scopes.csv' @('Name', 'RecipientFilter', 'RecipientRoot', 'Exclusive',
            'ScopeRestrictionType')
}

Write-Host "Done. Files in $OutDir. Next: migrator inventory --from-exports $OutDir --out inventory\<name>"
"""


# The permissions an access policy fences, each with its resource (model.AAP_PERMISSIONS), as a PowerShell hashtable.
SCRIPT = SCRIPT.replace("@FENCED@", "; ".join(f"'{perm}' = '{resource}'"
                                               for perm, (resource, _role) in AAP_PERMISSIONS.items()))


def export_script() -> str:
    """The script, ready to save as a .ps1 file."""
    return SCRIPT


# The columns each file of the script carries, with the kind the reader must recognise it as
# (tests/test_inventory_script.py keeps the script, this table and the recogniser in step).
SCRIPT_FILES = {
    "service-principals.csv": ("service_principals", ["DisplayName", "AppId", "ObjectId", "Identity", "Name",
                                                      "Sid"]),
    "mailboxes.csv": ("mailboxes", ["Name", "Alias", "DisplayName", "PrimarySmtpAddress", "UserPrincipalName",
                                    "EmailAddresses", "ExternalDirectoryObjectId", "Guid", "DistinguishedName",
                                    "Identity", "RecipientTypeDetails", "Office",
                                    *(f"CustomAttribute{i}" for i in range(1, 16)),
                                    "Department", "Company", "City", "StateOrProvince", "CountryOrRegion"]),
    "recipient-permissions.csv": ("recipient_permissions", ["Identity", "Trustee", "AccessControlType",
                                                            "AccessRights", "IsInherited", "InheritanceType"]),
    "mailbox-permissions.csv": ("mailbox_permissions", ["Identity", "User", "AccessRights", "IsInherited", "Deny",
                                                        "InheritanceType"]),
    "groups.csv": ("groups", ["Name", "Alias", "DisplayName", "PrimarySmtpAddress", "DistinguishedName", "Guid",
                              "ExternalDirectoryObjectId", "RecipientTypeDetails", "GroupType", "ManagedBy",
                              "MemberJoinRestriction", "MemberDepartRestriction", "HiddenFromAddressListsEnabled"]),
    "group-members.csv": ("group_members", ["GroupIdentity", "Name", "DisplayName", "PrimarySmtpAddress",
                                            "RecipientType", "RecipientTypeDetails", "ExternalDirectoryObjectId",
                                            "Identity"]),
    "app-role-assignments.csv": ("app_role_assignments", ["PrincipalId", "PrincipalDisplayName", "ResourceId",
                                                          "ResourceDisplayName", "AppRoleId", "AppRoleValue"]),
    "access-policies.csv": ("access_policies", ["Identity", "AppId", "ScopeName", "ScopeIdentity",
                                                "ScopeIdentityRaw", "Description", "AccessRight", "IsValid"]),
    "app-role-assigned-to.csv": ("app_role_assigned_to", ["PrincipalId", "PrincipalAppId", "PrincipalDisplayName",
                                                          "PrincipalType", "ResourceId", "ResourceDisplayName",
                                                          "AppRoleId", "AppRoleValue"]),
    "role-assignments.csv": ("role_assignments", ["Name", "Role", "RoleAssignee", "RoleAssigneeName",
                                                  "RoleAssigneeType", "CustomResourceScope", "RecipientGroupScope",
                                                  "RecipientAdministrativeUnitScope", "Enabled"]),
    "management-scopes.csv": ("management_scopes", ["Name", "RecipientFilter", "RecipientRoot", "Exclusive",
                                                    "ScopeRestrictionType"]),
}
