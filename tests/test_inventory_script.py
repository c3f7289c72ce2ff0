"""`migrator inventory --export-script`: the PowerShell is complete, read-only, filtered, and its files are the
ones the reader recognises."""

from __future__ import annotations

import re

import pytest
from click.testing import CliRunner

from migrator.cli import main
from migrator.inventory import psexport as px
from migrator.inventory.export_script import SCRIPT_FILES, export_script


@pytest.fixture(scope="module")
def script() -> str:
    result = CliRunner().invoke(main, ["inventory", "--export-script"])
    assert result.exit_code == 0
    assert result.output == export_script()
    return result.output


def test_uses_v3_module_and_every_cmdlet(script):
    for needle in ("Import-Module ExchangeOnlineManagement -MinimumVersion 3", "Connect-ExchangeOnline",
                   "Get-ServicePrincipal", "Get-EXOMailbox -ResultSize Unlimited", "Get-EXORecipient",
                   "Get-RecipientPermission -ResultSize Unlimited", "Get-EXOMailboxPermission -Identity",
                   "Get-DistributionGroup -ResultSize Unlimited", "Get-DistributionGroupMember -Identity",
                   "Get-MgServicePrincipalAppRoleAssignment -ServicePrincipalId $oid -All",
                   "Connect-MgGraph -Scopes 'Application.Read.All'", "Get-ApplicationAccessPolicy",
                   "Get-MgServicePrincipalAppRoleAssignedTo -ServicePrincipalId $res.Id -All"):
        assert needle in script, needle


def test_read_only(script):
    code = "\n".join(line.split("#", 1)[0] for line in script.splitlines())  # comments may name cmdlets
    verbs = set(re.findall(r"\b(New|Set|Add|Remove|Update|Enable|Disable)-[A-Z]\w+", code))
    assert verbs == {"New"}  # only New-Item for the output folder
    assert re.findall(r"\bNew-\w+", code) == ["New-Item"]


def test_filters_keep_files_small(script):
    assert script.count("-not $_.IsInherited") == 2
    assert script.count("-ne $selfName") == 2 and "$selfName = 'NT AUTHORITY\\SELF'" in script


def test_csv_options_and_joined_multivalues(script):
    assert "-NoTypeInformation -Encoding UTF8" in script
    assert script.count("Export-Csv") == 1  # all files go through Out-MigratorCsv
    assert "$_.AccessRights -join ', '" in script and "GroupIdentity" in script
    assert "IsNullOrWhiteSpace" in script  # never an empty identity (Get-* would return every object)


@pytest.mark.parametrize("name", sorted(SCRIPT_FILES))
def test_each_file_is_recognised(tmp_path, script, name):
    kind, columns = SCRIPT_FILES[name]
    assert f"'{name}'" in script
    for column in columns:
        if re.fullmatch(r"CustomAttribute\d+", column):
            assert '"CustomAttribute$_"' in script and "1..15" in script
        else:
            assert column in script, (name, column)
    path = tmp_path / name
    path.write_text(",".join(f'"{c}"' for c in columns) + "\r\n", encoding="utf-8-sig")
    assert px.read_export(path).kind == kind
