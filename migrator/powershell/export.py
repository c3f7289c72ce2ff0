"""One batch of a plan as an idempotent PowerShell script, for admins who must run changes themselves.

The script has two halves. The data (apps, groups, scopes, assignments, grants) is generated from the plan, every
value a single-quoted literal (quote.py), so a name like `O'Neil`, `$x` or one with backticks is data, never code.
The logic is fixed text, the same for every batch: the order of docs/design.md §6, each step an "ensure" that reads
before it writes and verifies after, so running the script again converges instead of duplicating.

The waits are checks of timestamps recorded in a state folder beside the script, not sleeps: the script stops with
exit code 10 and says when to come back (or, with -Wait, counts down). Everything removed (the Entra app-role
assignment, each legacy SendAs row) is written to the state folder before the removal.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime

from migrator.exitcodes import ExitCode
from migrator.model import EXCHANGE_ONLINE_APP_ID, SMTP_SEND_AS_APP
from migrator.powershell.batch import BatchSlice, batch_slice, split_filter
from migrator.powershell.quote import ps_array, ps_literal

# Step titles, in the order the script runs them (tests check the order against docs/design.md §6).
STEPS = (
    "Connect",
    "Preflight",
    "Groups",
    "Scopes",
    "Role assignments",
    "Verify configuration",
    "Wait for propagation",
    "Cut-over",
    "Wait for token expiry",
    "Remove legacy SendAs grants",
    "Final verification",
)

MEMBERS_PER_CALL = 5000  # Microsoft's advice for Update-DistributionGroupMember (REST calls time out at 15 min)
EXIT_WAITING = int(ExitCode.WAITING)


def _comment_safe(text: object) -> str:
    """Text for a comment line: no line breaks, no block-comment end, printable ASCII only."""
    return re.sub(r"[^A-Za-z0-9 ._:@+-]", "_", str(text))[:120]


def _kv(pairs: list[tuple[str, str]]) -> str:
    return "[ordered]@{ " + "; ".join(f"{k} = {v}" for k, v in pairs) + " }"


def _filter_parts(template: str) -> str:
    items = []
    for part in split_filter(template):
        if isinstance(part, tuple):
            items.append("@{ DnOf = " + ps_literal(part[1]) + " }")
        else:
            items.append(ps_literal(part))
    return "@(" + ", ".join(items) + ")"


def _data_section(plan, s: BatchSlice, options: dict) -> str:
    meta = plan.meta or {}
    lines = ["# ---- Plan data, generated from the plan folder. Every value is a single-quoted literal. ----"]
    lines.append("$Plan = " + _kv([
        ("Name", ps_literal(plan.path.name)),
        ("Batch", str(int(s.number))),
        ("Sha256", ps_literal(_plan_digest(meta))),
        ("ExchangeAppId", ps_literal(EXCHANGE_ONLINE_APP_ID)),
        ("SendAsAppRole", ps_literal(SMTP_SEND_AS_APP)),
        ("MembersPerCall", str(int(options.get("members_per_call", MEMBERS_PER_CALL)))),
    ]))
    lines.append("$Apps = @(")
    lines += ["    " + _kv([("AppId", ps_literal(a)), ("Name", ps_literal(n))]) for a, n in s.apps]
    lines.append(")")
    lines.append("$Groups = @(")
    for g in s.groups:
        lines.append("    " + _kv([
            ("Key", ps_literal(g.key)), ("Status", ps_literal(g.status)), ("Name", ps_literal(g.name)),
            ("Alias", ps_literal(g.alias or "")), ("Address", ps_literal(g.address or "")),
            ("Dn", ps_literal(g.dn or "")),
            ("Members", ps_array(sorted(g.members), per_line=4, indent="        ")),
        ]))
    lines.append(")")
    lines.append("$Scopes = @(")
    for sc in s.scopes:
        lines.append("    " + _kv([("Key", ps_literal(sc.key)), ("Name", ps_literal(sc.name)),
                                   ("Filter", _filter_parts(sc.filter))]))
    lines.append(")")
    lines.append("$Assignments = @(")
    for a in s.assignments:
        lines.append("    " + _kv([("Key", ps_literal(a.key)), ("Name", ps_literal(a.name)),
                                   ("AppId", ps_literal(a.app_id)), ("Role", ps_literal(a.role)),
                                   ("Scope", ps_literal(a.scope))]))
    lines.append(")")
    lines.append("# Role assignments the apps already held that the plan reuses (never created or removed here): the")
    lines.append("# verification tests them with the new ones before any legacy grant goes.")
    lines.append("$ExistingAssignments = @(")
    for e in s.existing:
        lines.append("    " + _kv([("Name", ps_literal(e.assignment)), ("AppId", ps_literal(e.app_id)),
                                   ("Role", ps_literal(e.role))]))
    lines.append(")")
    lines.append("# Legacy SendAs grants this batch migrates: removed at the end, once both waits have passed.")
    lines.append("$Grants = @(")
    lines += ["    " + _kv([("AppId", ps_literal(a)), ("Mailbox", ps_literal(m))]) for a, m in s.sendas]
    lines.append(")")
    lines.append("# Mailboxes each app must reach (Expected) and must not reach (Probes) through its role assignments.")
    lines.append("$Expected = @{")
    lines += [f"    {ps_literal(a)} = {ps_array(s.expected.get(a, []), per_line=4, indent='        ')}" for a, _ in s.apps]
    lines.append("}")
    lines.append("$Probes = @{")
    lines += [f"    {ps_literal(a)} = {ps_array(s.probes.get(a, []), per_line=4, indent='        ')}" for a, _ in s.apps]
    lines.append("}")
    return "\n".join(lines)


def _plan_digest(meta: dict) -> str:
    """One fingerprint of the plan for the state file: plan.json's own hash if it has one, else its CSV hashes."""
    for key in ("sha256", "plan_sha256", "hash"):
        if isinstance(meta.get(key), str):
            return meta[key]
    files = meta.get("files") or meta.get("sha256s") or {}
    if isinstance(files, dict) and files:
        import hashlib

        joined = ";".join(f"{k}={files[k]}" for k in sorted(files))
        return hashlib.sha256(joined.encode()).hexdigest()
    return ""


def _header(plan, s: BatchSlice, generated: str, options: dict) -> str:
    propagation = int(options.get("propagation_minutes", 120))
    token = int(options.get("token_lifetime_minutes", 90))
    return f"""<#
.SYNOPSIS
    migrator: batch {int(s.number)} of plan {_comment_safe(plan.path.name)}, as an idempotent script.
.DESCRIPTION
    Generated by migrator on {_comment_safe(generated)}. Moves the batch's apps from per-mailbox SendAs grants to
    RBAC for Applications, in this order: groups, scopes, role assignments, verification, propagation wait,
    cut-over (removal of the app's Entra SMTP.SendAsApp app-role assignment), token-lifetime wait, removal of
    the legacy SendAs grants, final verification.
    Run it again at any time: every step reads before it writes. The two waits are checks of times recorded in
    -StateDir; when one has not passed, the script stops with exit code {EXIT_WAITING} and says when to come back
    (or counts down with -Wait). Everything removed is first written to -StateDir.
    Needs the ExchangeOnlineManagement (V3) and Microsoft.Graph.Applications modules, an Exchange administrator,
    and the Graph permissions Application.Read.All and AppRoleAssignment.ReadWrite.All for the cut-over.
.PARAMETER Organization
    The tenant, e.g. contoso.onmicrosoft.com (needed with app-only authentication).
.PARAMETER AppId
    App-only authentication: the admin app's client id (with -CertificateThumbprint).
.PARAMETER CertificateThumbprint
    App-only authentication: the thumbprint of the admin app's certificate in the certificate store.
.PARAMETER StateDir
    Where the script records its progress, its wait timestamps and everything it removes.
.PARAMETER PropagationMinutes
    How long RBAC changes take to reach the data plane (Microsoft: 30 minutes to 2 hours).
.PARAMETER TokenLifetimeMinutes
    How long a token issued before the cut-over stays valid (about 60 to 90 minutes).
.PARAMETER Wait
    Wait with a countdown instead of stopping when a wait has not passed.
.PARAMETER SkipConnect
    Use the Exchange Online and Graph sessions already open in this PowerShell session.
#>
#Requires -Modules ExchangeOnlineManagement, Microsoft.Graph.Applications
[CmdletBinding()]
param(
    [string] $Organization,
    [string] $AppId,
    [string] $CertificateThumbprint,
    [string] $StateDir = (Join-Path $PSScriptRoot 'migrator-state-batch-{int(s.number)}'),
    [int] $PropagationMinutes = {propagation},
    [int] $TokenLifetimeMinutes = {token},
    [switch] $Wait,
    [switch] $SkipConnect
)

$ErrorActionPreference = 'Stop'
"""


# The logic: fixed text, identical for every plan and batch. It reads the data section's variables only.
_LOGIC = r"""
# ---- Helpers ----
$script:Changed = $false
$StatePath = Join-Path $StateDir 'state.json'

function Write-Step([string] $Title) {
    Write-Host ''
    Write-Host ('== ' + $Title) -ForegroundColor Cyan
}

function Assert-Identity([string] $Value, [string] $What) {
    # An empty or unresolved identity makes many Get-* cmdlets return every object: refuse it.
    if ([string]::IsNullOrWhiteSpace($Value)) {
        throw "Refusing to use an empty identity for $What."
    }
    return $Value
}

function Assert-OnlyNotFound($Errors, [string] $What) {
    # A failed read is never taken as 'absent': only ManagementObjectNotFound means absent.
    foreach ($e in @($Errors)) {
        if ($null -eq $e) { continue }
        $text = @("$($e.CategoryInfo.Reason)", "$($e.FullyQualifiedErrorId)", $e.Exception.GetType().FullName) -join ' '
        if ($text -notmatch 'ManagementObjectNotFound') {
            throw "Reading $What failed, so its absence is not assumed: $($e.Exception.Message)"
        }
    }
}

function Get-Now { return [DateTimeOffset]::UtcNow.ToUnixTimeSeconds() }

function Format-Time([int64] $Seconds) {
    return [DateTimeOffset]::FromUnixTimeSeconds($Seconds).ToLocalTime().ToString('yyyy-MM-dd HH:mm:ss zzz')
}

function Read-State {
    $loaded = [ordered]@{ Plan = $Plan.Name; PlanSha256 = $Plan.Sha256; Batch = $Plan.Batch
                         RbacChangedAt = $null; CutOverAt = $null; LegacyRemovalStartedAt = $null; CompletedAt = $null }
    if (Test-Path -LiteralPath $StatePath) {
        $saved = Get-Content -LiteralPath $StatePath -Raw -Encoding UTF8 | ConvertFrom-Json
        if ("$($saved.PlanSha256)" -ne $Plan.Sha256 -or [int]$saved.Batch -ne $Plan.Batch) {
            throw "$StatePath belongs to another plan or batch; use another -StateDir."
        }
        foreach ($p in $saved.PSObject.Properties) { $loaded[$p.Name] = $p.Value }
    }
    return $loaded
}

function Write-JsonFile([string] $Path, $Value) {
    New-Item -ItemType Directory -Force -Path $StateDir | Out-Null
    $tmp = $Path + '.tmp'
    ConvertTo-Json -InputObject $Value -Depth 8 | Set-Content -LiteralPath $tmp -Encoding UTF8
    Move-Item -LiteralPath $tmp -Destination $Path -Force
}

function Save-State { Write-JsonFile $StatePath $State }

function Add-Record([string] $File, $Record) {
    # Written (and flushed to disk) before the removal it describes: nothing is removed unrecorded.
    $recordPath = Join-Path $StateDir $File
    $records = @()
    if (Test-Path -LiteralPath $recordPath) { $records = @(Get-Content -LiteralPath $recordPath -Raw -Encoding UTF8 | ConvertFrom-Json | ForEach-Object { $_ }) }
    $Record['RecordedAt'] = (Get-Date).ToUniversalTime().ToString('o')
    Write-JsonFile $recordPath (@($records) + @([pscustomobject]$Record))
}

function Wait-Until([string] $Key, [int] $Minutes, [string] $What) {
    if ($null -eq $State[$Key]) { throw "Internal error: $Key was not recorded." }
    $due = [int64]$State[$Key] + 60 * $Minutes
    while ((Get-Now) -lt $due) {
        $secondsLeft = $due - (Get-Now)
        if (-not $Wait) {
            Write-Host "Waiting for $What until $(Format-Time $due) ($([math]::Ceiling($secondsLeft / 60)) minutes from now)." -ForegroundColor Yellow
            Write-Host 'Nothing after this point has been done. Run this script again after that time (or with -Wait).'
            exit 10
        }
        Write-Progress -Activity "Waiting for $What" -Status "until $(Format-Time $due)" -SecondsRemaining $secondsLeft
        Start-Sleep -Seconds ([math]::Min(30, [math]::Max(1, $secondsLeft)))
    }
    Write-Progress -Activity "Waiting for $What" -Completed
    Write-Host "$What`: the wait that began $(Format-Time ([int64]$State[$Key])) has passed."
}

function Wait-Replicated([string] $Identity) {
    # A new group can take a while to be readable (directory replication): poll, bounded, before using it.
    $id = Assert-Identity $Identity 'group'
    for ($try = 1; $try -le 12; $try++) {
        $readErr = $null
        $found = @(Get-DistributionGroup -Identity $id -ErrorAction SilentlyContinue -ErrorVariable readErr)
        Assert-OnlyNotFound $readErr "group $id"
        if ($found.Count -eq 1) { return $found[0] }
        Write-Host "Group $id is not readable yet (replication); trying again in 10 seconds ($try of 12)."
        Start-Sleep -Seconds 10
    }
    throw "Group $id was created but is still not readable after 2 minutes; run this script again later."
}

function Test-SameSet($Left, $Right) {
    $x = @(@($Left) | Where-Object { $_ } | ForEach-Object { "$_".ToLowerInvariant() } | Sort-Object -Unique)
    $y = @(@($Right) | Where-Object { $_ } | ForEach-Object { "$_".ToLowerInvariant() } | Sort-Object -Unique)
    if ($x.Count -ne $y.Count) { return $false }
    for ($i = 0; $i -lt $x.Count; $i++) { if ($x[$i] -cne $y[$i]) { return $false } }
    return $true
}

function Get-MemberAddresses([string] $Identity) {
    $id = Assert-Identity $Identity 'group'
    return @(Get-DistributionGroupMember -Identity $id -ResultSize Unlimited |
             ForEach-Object { "$($_.PrimarySmtpAddress)".ToLowerInvariant() })
}

function Set-GroupMembers([string] $Identity, [string[]] $Members, [string[]] $Present) {
    $id = Assert-Identity $Identity 'group'
    $extra = @(@($Present) | Where-Object { $_ -and $Members -notcontains $_ })
    $missing = @(@($Members) | Where-Object { $_ -and @($Present) -notcontains $_ })
    if ($extra.Count -eq 0) {
        # Only additions left (e.g. a run interrupted mid-way): add what is missing.
        foreach ($m in $missing) {
            Add-DistributionGroupMember -Identity $id -Member $m -BypassSecurityGroupManagerCheck -Confirm:$false
        }
        return
    }
    # Update-DistributionGroupMember replaces the whole membership; Microsoft advises about 5,000 per call,
    # so the first chunk replaces and the rest is added.
    $first = @($Members | Select-Object -First $Plan.MembersPerCall)
    Update-DistributionGroupMember -Identity $id -Members $first -BypassSecurityGroupManagerCheck -Confirm:$false
    foreach ($m in @($Members | Select-Object -Skip $Plan.MembersPerCall)) {
        Add-DistributionGroupMember -Identity $id -Member $m -BypassSecurityGroupManagerCheck -Confirm:$false
    }
}

function Resolve-Filter($Parts) {
    # Literal OPATH text from the plan, with each group's DN (read back from Exchange) quoted as an OPATH value.
    $text = ''
    foreach ($part in $Parts) {
        if ($part -is [System.Collections.IDictionary]) {
            $dn = Assert-Identity $GroupDn[$part.DnOf] "the DistinguishedName of group $($part.DnOf)"
            $text += $dn.Replace("'", "''")
        } else {
            $text += $part
        }
    }
    return $text
}

function Get-FilterKey([string] $FilterText) {
    # Exchange stores a filter with its own parentheses and spacing: compare without them, outside quoted values.
    $sb = New-Object System.Text.StringBuilder
    $inQuote = $false
    foreach ($ch in $FilterText.ToCharArray()) {
        if ($ch -eq [char]39) { $inQuote = -not $inQuote; [void]$sb.Append($ch); continue }
        if (-not $inQuote -and ($ch -eq [char]'(' -or $ch -eq [char]')' -or [char]::IsWhiteSpace($ch))) { continue }
        if ($inQuote) { [void]$sb.Append($ch) } else { [void]$sb.Append([char]::ToLowerInvariant($ch)) }
    }
    return $sb.ToString()
}

function Get-SendAsRows([string] $Mailbox, $Pointer) {
    # Rows of this mailbox only (checked on the row's Identity), for this service principal only.
    $id = Assert-Identity $Mailbox 'mailbox'
    $m = Get-EXOMailbox -Identity $id -ErrorAction Stop
    $mailboxNames = @("$($m.Identity)", "$($m.Name)", "$($m.Alias)", "$($m.DistinguishedName)",
                      "$($m.PrimarySmtpAddress)", "$($m.Guid)", "$($m.ExternalDirectoryObjectId)") | Where-Object { $_ }
    return @(Get-RecipientPermission -Identity $id -AccessRights SendAs -ResultSize Unlimited |
             Where-Object { $mailboxNames -contains "$($_.Identity)" -and $Pointer.TrusteeNames -contains "$($_.Trustee)" -and
                            "$($_.AccessControlType)" -eq 'Allow' -and -not $_.IsInherited })
}

function Test-InScope($Pointer, [string] $Mailbox, [string] $RoleName) {
    $spId = Assert-Identity "$($Pointer.ObjectId)" 'service principal'
    $mbx = Assert-Identity $Mailbox 'mailbox'
    $rows = @(Test-ServicePrincipalAuthorization -Identity $spId -Resource $mbx |
              Where-Object { "$($_.RoleName)" -eq $RoleName -and "$($_.InScope)" -eq 'True' })
    return ($rows.Count -gt 0)
}

function Get-Roles([string] $AppId) {
    return @(@($Assignments) + @($ExistingAssignments) | Where-Object { $_.AppId -eq $AppId } |
        ForEach-Object { $_.Role } | Sort-Object -Unique)
}

$State = Read-State
$ScopeByKey = @{}
foreach ($s in $Scopes) { $ScopeByKey[$s.Key] = $s }

# ---- Steps ----
Write-Step 'Connect'
if (-not $SkipConnect) {
    if ($AppId -and $CertificateThumbprint) {
        if (-not $Organization) { throw 'App-only sign-in needs -Organization (e.g. contoso.onmicrosoft.com).' }
        Connect-ExchangeOnline -AppId $AppId -CertificateThumbprint $CertificateThumbprint -Organization $Organization -ShowBanner:$false
        Connect-MgGraph -ClientId $AppId -CertificateThumbprint $CertificateThumbprint -TenantId $Organization -NoWelcome
    } else {
        Connect-ExchangeOnline -ShowBanner:$false
        Connect-MgGraph -Scopes 'Application.Read.All', 'AppRoleAssignment.ReadWrite.All' -NoWelcome
    }
}

Write-Step 'Preflight'
# Service-principal pointers, resolved client-side from the full list (Get-ServicePrincipal with an unknown
# identity returns every object). A display name shared by two pointers is not used to match trustees.
$allSp = @(Get-ServicePrincipal -ErrorAction Stop)
$Pointers = @{}
foreach ($app in $Apps) {
    $thisAppId = Assert-Identity $app.AppId "app $($app.Name)"
    $found = @($allSp | Where-Object { "$($_.AppId)" -eq $thisAppId })
    if ($found.Count -ne 1) {
        throw "App $($app.Name) ($thisAppId) has $($found.Count) Exchange service-principal pointers; exactly one is needed (New-ServicePrincipal)."
    }
    $sp = $found[0]
    $names = @("$($sp.ObjectId)", "$($sp.AppId)", "$($sp.Identity)")
    if (@($allSp | Where-Object { "$($_.DisplayName)" -eq "$($sp.DisplayName)" }).Count -eq 1) { $names += "$($sp.DisplayName)" }
    $Pointers[$thisAppId] = [pscustomobject]@{ AppId = $thisAppId; ObjectId = "$($sp.ObjectId)"; DisplayName = "$($sp.DisplayName)"
                                     TrusteeNames = @($names | Where-Object { $_ } | Sort-Object -Unique) }
}
if ($null -eq $State.LegacyRemovalStartedAt) {
    # Drift check: every grant the plan migrates must still be there, or the new scope would over-grant.
    foreach ($g in $Grants) {
        if (@(Get-SendAsRows $g.Mailbox $Pointers[$g.AppId]).Count -eq 0) {
            throw "Drift: $($Pointers[$g.AppId].DisplayName) no longer has SendAs on $($g.Mailbox). Make a new plan."
        }
    }
    Write-Host "$(@($Grants).Count) legacy SendAs grants found as planned."
}

Write-Step 'Groups'
$GroupDn = @{}
foreach ($g in $Groups) {
    $ident = Assert-Identity (@($g.Address, $g.Alias, $g.Name) | Where-Object { $_ } | Select-Object -First 1) "group $($g.Key)"
    $readErr = $null
    $grp = @(Get-DistributionGroup -Identity $ident -ErrorAction SilentlyContinue -ErrorVariable readErr)
    Assert-OnlyNotFound $readErr "group $ident"
    if ($grp.Count -gt 1) { throw "Group $ident is ambiguous ($($grp.Count) objects)." }
    if ($g.Status -eq 'reuse') {
        if ($grp.Count -eq 0) { throw "Drift: the existing group $ident that the plan reuses is gone." }
    } elseif ($grp.Count -eq 0) {
        $new = @{ Name = $g.Name; Type = 'Security'; MemberJoinRestriction = 'Closed'; MemberDepartRestriction = 'Closed' }
        if ($g.Alias) { $new['Alias'] = $g.Alias }
        if ($g.Address) { $new['PrimarySmtpAddress'] = $g.Address }
        New-DistributionGroup @new | Out-Null
        $script:Changed = $true
        Write-Host "Created group $($g.Name)."
        $grp = @(Wait-Replicated $ident)
    } elseif ("$($grp[0].Name)" -ne $g.Name -or "$($grp[0].RecipientTypeDetails)" -ne 'MailUniversalSecurityGroup') {
        throw "$ident exists but is not the security group '$($g.Name)' this plan creates."
    }
    $grp = $grp[0]
    $gid = Assert-Identity "$($grp.Guid)" "the Guid of group $ident"
    if ($g.Status -eq 'new' -and -not $grp.HiddenFromAddressListsEnabled) {
        Set-DistributionGroup -Identity $gid -HiddenFromAddressListsEnabled $true -BypassSecurityGroupManagerCheck -Confirm:$false
    }
    $current = Get-MemberAddresses $gid
    if (-not (Test-SameSet $current $g.Members)) {
        if ($g.Status -eq 'reuse') { throw "Drift: the members of $ident differ from the plan." }
        Set-GroupMembers $gid $g.Members $current
        $script:Changed = $true
        if (-not (Test-SameSet (Get-MemberAddresses $gid) $g.Members)) { throw "The members of $ident did not take." }
    }
    $dn = Assert-Identity "$($grp.DistinguishedName)" "the DistinguishedName of group $ident"
    if ($g.Status -eq 'reuse' -and $g.Dn -and $dn -ne $g.Dn) { throw "Drift: $ident has DN $dn, the plan has $($g.Dn)." }
    $GroupDn[$g.Key] = $dn
    Write-Host "Group $($g.Name): $(@($g.Members).Count) members, DN read back."
}

Write-Step 'Scopes'
foreach ($s in $Scopes) {
    $filter = Resolve-Filter $s.Filter
    $name = Assert-Identity $s.Name "scope $($s.Key)"
    $readErr = $null
    $existing = @(Get-ManagementScope -Identity $name -ErrorAction SilentlyContinue -ErrorVariable readErr |
                  Where-Object { "$($_.Name)" -eq $name })
    Assert-OnlyNotFound $readErr "scope $name"
    if ($existing.Count -gt 0) {
        if ((Get-FilterKey "$($existing[0].RecipientFilter)") -cne (Get-FilterKey $filter)) {
            throw "Scope $name exists with another filter: $($existing[0].RecipientFilter)"
        }
    } else {
        New-ManagementScope -Name $name -RecipientRestrictionFilter $filter | Out-Null
        $script:Changed = $true
        Write-Host "Created scope $name."
    }
}

Write-Step 'Role assignments'
$existingByRole = @{}
foreach ($a in $Assignments) {
    if (-not $existingByRole.ContainsKey($a.Role)) {
        # Get-ManagementRoleAssignment has no -App filter: read the role's assignments and filter here.
        $existingByRole[$a.Role] = @(Get-ManagementRoleAssignment -Role (Assert-Identity $a.Role 'role') -ErrorAction Stop)
    }
    $sp = $Pointers[$a.AppId]
    $scopeName = $ScopeByKey[$a.Scope].Name
    $found = @($existingByRole[$a.Role] | Where-Object { "$($_.Name)" -eq $a.Name })
    if ($found.Count -gt 0) {
        $assignee = "$($found[0].RoleAssigneeName)"
        if (@($sp.ObjectId, $sp.DisplayName) -notcontains $assignee -or "$($found[0].CustomResourceScope)" -ne $scopeName) {
            throw "Role assignment $($a.Name) exists for $assignee on scope $($found[0].CustomResourceScope), not as planned."
        }
    } else {
        New-ManagementRoleAssignment -Name $a.Name -Role $a.Role -App $sp.ObjectId -CustomResourceScope $scopeName | Out-Null
        $script:Changed = $true
        Write-Host "Created role assignment $($a.Name)."
    }
}

Write-Step 'Verify configuration'
# Test-ServicePrincipalAuthorization reads the configuration, not the propagated cache: it proves the scopes
# are right (every member in, probes out), not that sending works yet.
foreach ($app in $Apps) {
    $sp = $Pointers[$app.AppId]
    foreach ($role in (Get-Roles $app.AppId)) {
        foreach ($mbx in @($Expected[$app.AppId])) {
            if (-not (Test-InScope $sp $mbx $role)) { throw "$($app.Name) is not in scope for $mbx under $role." }
        }
        foreach ($mbx in @($Probes[$app.AppId])) {
            if (Test-InScope $sp $mbx $role) { throw "Over-grant: $($app.Name) is in scope for $mbx under $role." }
        }
    }
    Write-Host "$($app.Name): in scope for its $(@($Expected[$app.AppId]).Count) mailboxes, out of scope for $(@($Probes[$app.AppId]).Count) probes."
}
if ($script:Changed -or $null -eq $State.RbacChangedAt) {
    if ($script:Changed -and $null -ne $State.CutOverAt) {
        Write-Warning 'The RBAC configuration had to be repaired after the cut-over; the propagation wait starts again.'
    }
    $State.RbacChangedAt = Get-Now
    Save-State
}

Write-Step 'Wait for propagation'
Wait-Until 'RbacChangedAt' $PropagationMinutes 'RBAC propagation'

Write-Step 'Cut-over'
$exo = @(Get-MgServicePrincipal -Filter ("appId eq '" + $Plan.ExchangeAppId + "'") -ErrorAction Stop)
if ($exo.Count -ne 1) { throw "Office 365 Exchange Online service principal not found in Entra." }
$sendAsRole = @($exo[0].AppRoles | Where-Object { $_.Value -eq $Plan.SendAsAppRole })
if ($sendAsRole.Count -ne 1) { throw "App role $($Plan.SendAsAppRole) not found on Office 365 Exchange Online." }
$cut = $false
foreach ($app in $Apps) {
    $thisAppId = Assert-Identity $app.AppId "app $($app.Name)"
    $entra = @(Get-MgServicePrincipal -Filter ("appId eq '" + $thisAppId.Replace("'", "''") + "'") -ErrorAction Stop)
    if ($entra.Count -ne 1) { throw "App $($app.Name) ($thisAppId): $($entra.Count) Entra service principals." }
    $spId = Assert-Identity "$($entra[0].Id)" "the Entra service principal of $($app.Name)"
    $held = @(Get-MgServicePrincipalAppRoleAssignment -ServicePrincipalId $spId -All -ErrorAction Stop |
              Where-Object { $_.AppRoleId -eq $sendAsRole[0].Id -and $_.ResourceId -eq $exo[0].Id })
    foreach ($x in $held) {
        Add-Record 'removed-app-role-assignments.json' ([ordered]@{
            AppId = $thisAppId; ServicePrincipalId = $spId; Id = "$($x.Id)"; AppRoleId = "$($x.AppRoleId)"
            ResourceId = "$($x.ResourceId)"; PrincipalDisplayName = "$($x.PrincipalDisplayName)"
            CreatedDateTime = "$($x.CreatedDateTime)" })
        Remove-MgServicePrincipalAppRoleAssignment -ServicePrincipalId $spId -AppRoleAssignmentId $x.Id -Confirm:$false
        $cut = $true
        Write-Host "Removed the SMTP.SendAsApp app-role assignment of $($app.Name)."
    }
}
if ($cut -or $null -eq $State.CutOverAt) {
    $State.CutOverAt = Get-Now
    Save-State
}

Write-Step 'Wait for token expiry'
Wait-Until 'CutOverAt' $TokenLifetimeMinutes 'tokens issued before the cut-over to expire'
Wait-Until 'RbacChangedAt' $PropagationMinutes 'RBAC propagation'

Write-Step 'Remove legacy SendAs grants'
if ($null -eq $State.LegacyRemovalStartedAt) {
    $State.LegacyRemovalStartedAt = Get-Now
    Save-State
}
$removed = 0
foreach ($g in $Grants) {
    $sp = $Pointers[$g.AppId]
    foreach ($row in @(Get-SendAsRows $g.Mailbox $sp)) {
        Add-Record 'removed-sendas.json' ([ordered]@{
            Mailbox = $g.Mailbox; AppId = $g.AppId; Trustee = "$($row.Trustee)"; Identity = "$($row.Identity)"
            AccessControlType = "$($row.AccessControlType)"; AccessRights = "$($row.AccessRights)"
            IsInherited = [bool]$row.IsInherited; InheritanceType = "$($row.InheritanceType)" })
        Remove-RecipientPermission -Identity (Assert-Identity $g.Mailbox 'mailbox') -Trustee (Assert-Identity $sp.ObjectId 'trustee') -AccessRights SendAs -Confirm:$false
        $removed++
    }
}
Write-Host "Removed $removed legacy SendAs grants (FullAccess grants are kept: IMAP and POP have no RBAC role)."

Write-Step 'Final verification'
foreach ($g in $Grants) {
    if (@(Get-SendAsRows $g.Mailbox $Pointers[$g.AppId]).Count -gt 0) { throw "$($g.Mailbox) still has a SendAs grant for $($Pointers[$g.AppId].DisplayName)." }
}
foreach ($app in $Apps) {
    foreach ($role in (Get-Roles $app.AppId)) {
        foreach ($mbx in @($Expected[$app.AppId])) {
            if (-not (Test-InScope $Pointers[$app.AppId] $mbx $role)) { throw "$($app.Name) lost scope for $mbx." }
        }
    }
}
if ($null -eq $State.CompletedAt) { $State.CompletedAt = Get-Now; Save-State }
Write-Host "Batch $($Plan.Batch) of plan $($Plan.Name) is complete. Records: $StateDir" -ForegroundColor Green
exit 0
"""


def export_batch(plan, number: int, *, generated: datetime | None = None, options: dict | None = None) -> str:
    """The PowerShell script for batch `number` of `plan` (PlanError when the plan cannot support it)."""
    options = dict(options or {})
    s = batch_slice(plan, number)
    stamp = (generated or datetime.now(UTC)).strftime("%Y-%m-%d %H:%M UTC")
    return _header(plan, s, stamp, options) + "\n" + _data_section(plan, s, options) + "\n" + _LOGIC.lstrip("\n")
