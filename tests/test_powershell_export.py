"""The exported PowerShell script: structure, the order of docs/design.md §6, idempotent ensures, safe waits, and the
quoting of hostile names (checked with a PowerShell tokenizer, since pwsh is not available)."""

from __future__ import annotations

import re
from collections import defaultdict

import pytest
from click.testing import CliRunner

from migrator.cli import main
from migrator.errors import PlanError
from migrator.planner import opath
from migrator.planner.plan import load_plan
from migrator.powershell.export import STEPS, export_batch
from ps_lexer import parse_assignments, tokenize
from report_plans import (
    APP_DOLLAR,
    APP_ONEIL,
    APP_PLAIN,
    ATTR_VALUE,
    HOSTILE_APP,
    HOSTILE_APP2,
    HOSTILE_GROUP,
    REUSED_DN,
    REUSED_GROUP,
    hostile_plan,
)

DATA_START = "# ---- Plan data"
LOGIC_START = "# ---- Helpers ----"


@pytest.fixture(scope="module")
def plan(tmp_path_factory):
    return load_plan(hostile_plan(tmp_path_factory.mktemp("plans") / "hostile"))


@pytest.fixture(scope="module")
def scripts(plan):
    return {n: export_batch(plan, n) for n in (1, 2)}


def data_of(script: str) -> dict:
    return parse_assignments(script[script.index(DATA_START):script.index(LOGIC_START)])


def code_text(tokens) -> str:
    return "".join(v for kind, v in tokens if kind == "code")


def sections(script: str) -> dict[str, str]:
    """Text of each step, from its Write-Step call to the next one (the logic half only)."""
    logic = script[script.index("# ---- Steps ----"):]
    marks = [(m.start(), m.group(1)) for m in re.finditer(r"^Write-Step '([^']*)'", logic, re.M)]
    return {title: logic[start:(marks[i + 1][0] if i + 1 < len(marks) else len(logic))]
            for i, (start, title) in enumerate(marks)}


def test_structure(scripts):
    for script in scripts.values():
        tokens = tokenize(script)  # every string and comment is terminated
        assert tokens[0][0] == "comment" and ".SYNOPSIS" in tokens[0][1]
        code = code_text(tokens)
        for open_, close in ("()", "{}", "[]"):
            assert code.count(open_) == code.count(close), f"unbalanced {open_}{close}"
        assert "#Requires -Modules ExchangeOnlineManagement, Microsoft.Graph.Applications" in script
        first_statement = code.strip().splitlines()[0]
        assert first_statement == "[CmdletBinding()]"
        assert code.index("param(") < code.index("$ErrorActionPreference = ") < code.index("Write-Step")
        assert re.search(r"^\$ErrorActionPreference = 'Stop'$", script, re.M)
        assert "Connect-ExchangeOnline" in sections(script)["Connect"]
        assert "Connect-MgGraph" in sections(script)["Connect"]


def test_steps_in_design_order(scripts):
    for script in scripts.values():
        titles = re.findall(r"^Write-Step '([^']*)'", script, re.M)
        assert tuple(titles) == STEPS
        assert STEPS.index("Groups") < STEPS.index("Scopes") < STEPS.index("Role assignments") \
            < STEPS.index("Verify configuration") < STEPS.index("Wait for propagation") < STEPS.index("Cut-over") \
            < STEPS.index("Wait for token expiry") < STEPS.index("Remove legacy SendAs grants") \
            < STEPS.index("Final verification")


def _in_order(text: str, *needles: str) -> None:
    positions = [text.index(n) for n in needles]
    assert positions == sorted(positions), list(zip(needles, positions))


def test_each_step_reads_before_it_writes(scripts):
    s = sections(scripts[1])
    _in_order(s["Groups"], "Get-DistributionGroup -Identity $ident -ErrorAction SilentlyContinue",
              "Assert-OnlyNotFound", "New-DistributionGroup @new", "Wait-Replicated $ident", "Set-DistributionGroup -Identity $gid -HiddenFromAddressListsEnabled $true",
              "Get-MemberAddresses $gid", "Set-GroupMembers", "$dn = Assert-Identity \"$($grp.DistinguishedName)\"",
              "$GroupDn[$g.Key] = $dn")
    assert "Type = 'Security'" in s["Groups"]
    _in_order(s["Scopes"], "Resolve-Filter", "Get-ManagementScope -Identity $name", "New-ManagementScope")
    _in_order(s["Role assignments"], "Get-ManagementRoleAssignment -Role", "New-ManagementRoleAssignment")
    _in_order(s["Verify configuration"], "Test-InScope", "Over-grant", "$State.RbacChangedAt = Get-Now", "Save-State")
    assert "Wait-Until 'RbacChangedAt' $PropagationMinutes" in s["Wait for propagation"]
    _in_order(s["Cut-over"], "Get-MgServicePrincipalAppRoleAssignment", "Add-Record 'removed-app-role-assignments.json'",
              "Remove-MgServicePrincipalAppRoleAssignment", "$State.CutOverAt = Get-Now", "Save-State")
    assert "Wait-Until 'CutOverAt' $TokenLifetimeMinutes" in s["Wait for token expiry"]
    _in_order(s["Remove legacy SendAs grants"], "Get-SendAsRows", "Add-Record 'removed-sendas.json'",
              "Remove-RecipientPermission")
    assert "-Confirm:$false" in s["Remove legacy SendAs grants"].split("Remove-RecipientPermission", 1)[1].splitlines()[0]
    _in_order(s["Final verification"], "Get-SendAsRows", "Test-InScope", "CompletedAt")
    # The waits are timestamp checks: the only sleep is inside Wait-Until, which compares with a recorded time.
    helpers = scripts[1][scripts[1].index(LOGIC_START):scripts[1].index("# ---- Steps ----")]
    wait_fn = helpers[helpers.index("function Wait-Until"):helpers.index("function Wait-Replicated")]
    poll_fn = helpers[helpers.index("function Wait-Replicated"):helpers.index("function Test-SameSet")]
    assert scripts[1].count("Start-Sleep") == 2 and "Start-Sleep" in wait_fn and "Start-Sleep" in poll_fn
    assert "$try -le 12" in poll_fn  # the replication poll is bounded
    assert "$State[$Key]" in wait_fn and "exit 10" in wait_fn


def test_identities_are_never_empty(scripts):
    """Every -Identity/-Resource/-Trustee argument is a checked value: Assert-Identity's result or a call to it."""
    script = scripts[2]
    checked = set(re.findall(r"\$(\w+) = Assert-Identity\b", script))
    for match in re.finditer(r"(?<=\s)-(Identity|Resource|Trustee|ServicePrincipalId) (\S+)", script[script.index(LOGIC_START):]):
        arg = match.group(2)
        if arg.startswith("(Assert-Identity"):
            continue
        assert arg.startswith("$") and arg[1:] in checked, f"unchecked identity: {match.group(0)}"


def test_no_variable_differs_only_in_case(scripts):
    """PowerShell variables are case-insensitive: $sp and $SP are the same variable."""
    spellings = defaultdict(set)
    for kind, text in tokenize(scripts[2]):
        if kind in ("code", "dq"):
            for name in re.findall(r"\$(\w+)", text):
                spellings[name.lower()].add(name)
    builtin = {"true", "false", "null", "_"}
    clashes = {k: v for k, v in spellings.items() if len(v) > 1 and k not in builtin}
    assert not clashes


def test_hostile_names_are_data_not_code(plan, scripts):
    for number, script in scripts.items():
        tokens = tokenize(script)
        literals = [v for kind, v in tokens if kind == "sq"]
        expected = {1: [HOSTILE_APP, HOSTILE_GROUP, "o'neil@contoso.com", "migrator-S0001 O'Neil"],
                    2: [HOSTILE_APP2, REUSED_GROUP, REUSED_DN, "$x@contoso.com", "migrator-S0003 $x",
                        "migrator-A00003 `$x'"]}[number]
        for value in expected:
            assert value in literals, value
        for kind, text in tokens:
            if kind != "sq":
                for marker in ("whoami", "calc", "O'Neil", "O’Brien", "$x@", "alert("):
                    assert marker not in text, (kind, marker, text[:80])


def test_data_section_matches_the_plan(plan, scripts):
    one, two = data_of(scripts[1]), data_of(scripts[2])
    assert one["Plan"]["Batch"] == 1 and two["Plan"]["Batch"] == 2
    assert [a["AppId"] for a in one["Apps"]] == [APP_ONEIL]
    assert {a["AppId"]: a["Name"] for a in two["Apps"]} == {APP_DOLLAR: HOSTILE_APP2, APP_PLAIN: "Plain App"}
    (g1,) = one["Groups"]
    assert (g1["Key"], g1["Status"], g1["Name"]) == ("G0001", "new", HOSTILE_GROUP)
    assert g1["Members"] == sorted(plan.group("G0001").members)
    (g2,) = two["Groups"]  # batch 2 uses only the reused group; G0001 belongs to batch 1
    assert (g2["Status"], g2["Dn"], g2["Name"]) == ("reuse", REUSED_DN, REUSED_GROUP)
    assert {(g["AppId"], g["Mailbox"]) for g in two["Grants"]} == {
        (g.app_id, g.mailbox) for g in plan.grants if g.batch == 2 and g.right == "SendAs"}
    assert all(g["Mailbox"] != "adele.vance@contoso.com" or g["AppId"] != APP_ONEIL for g in two["Grants"])
    # FullAccess is never removed: not in the grants list of batch 1 either
    assert len(one["Grants"]) == 2
    for app in two["Apps"]:
        assert not set(two["Probes"][app["AppId"]]) & set(two["Expected"][app["AppId"]])
    assert [a["Name"] for a in two["Assignments"]] == ["migrator-A00002", "migrator-A00003 `$x'", "migrator-A00004"]


def _resolve_filter(parts, dns):
    """What the script's Resolve-Filter does: literal parts verbatim, a DN with its OPATH quotes doubled."""
    return "".join(dns[p["DnOf"]].replace("'", "''") if isinstance(p, dict) else p for p in parts)


def test_scope_filters_round_trip_through_both_quotings(plan, scripts):
    hostile_dn = "CN=O'Neil $x `t \"q\",OU=contoso.onmicrosoft.com,DC=prod,DC=outlook,DC=com"
    (s1,) = data_of(scripts[1])["Scopes"]
    built = _resolve_filter(s1["Filter"], {"G0001": hostile_dn})
    assert built == opath.fill_dns(plan.scopes[0].filter, {"G0001": hostile_dn})
    assert [c for _s, _e, c in opath._literals(built)] == [hostile_dn]
    s2, s3 = data_of(scripts[2])["Scopes"]
    assert [c for _s, _e, c in opath._literals(_resolve_filter(s2["Filter"], {}))] == [REUSED_DN]
    assert [c for _s, _e, c in opath._literals(_resolve_filter(s3["Filter"], {}))] == [ATTR_VALUE]


def test_unknown_batch_is_a_plan_error(plan):
    with pytest.raises(PlanError, match="no batch 9"):
        export_batch(plan, 9)


def test_cli_writes_a_bom_file_and_refuses_a_bad_batch(plan, tmp_path):
    out = tmp_path / "batch-2.ps1"
    result = CliRunner().invoke(main, ["export-ps1", str(plan.path), "--batch", "2", "--out", str(out)])
    assert result.exit_code == 0, result.output
    data = out.read_bytes()
    assert data.startswith(b"\xef\xbb\xbf")  # Windows PowerShell 5.1 reads a BOM-less file as ANSI
    text = data.decode("utf-8-sig")
    assert data_of(text)["Plan"]["Batch"] == 2
    result = CliRunner().invoke(main, ["export-ps1", str(plan.path), "--batch", "7", "--out", str(tmp_path / "x.ps1")])
    assert result.exit_code == 2 and "no batch 7" in result.output
    assert not (tmp_path / "x.ps1").exists()
    result = CliRunner().invoke(main, ["export-ps1", str(plan.path), "--batch", "1", "--out", "-"])
    assert result.exit_code == 0 and "Write-Step 'Cut-over'" in result.output


def _check_against_plan(plan, number: int, script: str) -> None:
    """The script's data is the batch, exactly: groups and members, scope filters, assignments, grants."""
    tokenize(script)
    assert tuple(re.findall(r"^Write-Step '([^']*)'", script, re.M)) == STEPS
    data = data_of(script)
    assert data["Plan"]["Batch"] == number
    batch = next(b for b in plan.batches if b.number == number)
    assert {a["AppId"] for a in data["Apps"]} == set(batch.apps)
    mine = [a for a in plan.assignments if a.batch == number]
    assert [(a["Name"], a["AppId"], a["Scope"], a["Role"]) for a in data["Assignments"]] == [
        (a.name, a.app_id, a.scope, a.role) for a in sorted(mine, key=lambda a: a.key)]
    scopes = {s.key: s for s in plan.scopes}
    keys = sorted({k for a in mine for k in scopes[a.scope].groups})
    assert [g["Key"] for g in data["Groups"]] == keys
    for g in data["Groups"]:
        planned = plan.group(g["Key"])
        assert g["Members"] == sorted(planned.members) and g["Status"] == planned.status and g["Name"] == planned.name
    dns = {k: f"CN={k} O'Test,OU=x,DC=prod" for k in keys}
    for s in data["Scopes"]:
        assert _resolve_filter(s["Filter"], dns) == opath.fill_dns(scopes[s["Key"]].filter, dns)
    sendas = {(g.app_id, g.mailbox) for g in plan.grants if g.batch == number and g.right == "SendAs"}
    assert {(g["AppId"], g["Mailbox"]) for g in data["Grants"]} == sendas
    reach = {(g.app_id, g.mailbox) for g in plan.grants if g.batch == number}  # SendAs, and FullAccess with claim
    for app in data["Apps"]:
        assert set(data["Expected"][app["AppId"]]) == {m for a, m in reach if a == app["AppId"]}


def test_sample_plan_every_batch(root):
    """plans/contoso, the plan of the bundled sample tenant."""
    plan = load_plan(root / "plans" / "contoso")
    assert len(plan.batches) >= 2
    for batch in plan.batches:
        _check_against_plan(plan, batch.number, export_batch(plan, batch.number))


def test_hostile_plan_every_batch(plan, scripts):
    for number, script in scripts.items():
        _check_against_plan(plan, number, script)


def test_split_filter_places_dns_only_where_the_planner_does():
    from migrator.powershell.batch import split_filter

    template = ("(MemberOfGroup -eq '{dn:G0001}') -or (MemberOfGroup -eq '{dn:G0002}') "
                "-or (CustomAttribute1 -eq 'x''{dn:G0003}')")
    parts = split_filter(template)
    assert [p for p in parts if isinstance(p, tuple)] == [("dn", "G0001"), ("dn", "G0002")]
    dns = {"G0001": "CN=A'1,DC=x", "G0002": "CN=B,DC=x"}
    built = "".join(dns[p[1]].replace("'", "''") if isinstance(p, tuple) else p for p in parts)
    assert built == opath.fill_dns(template, dns)
    assert "'x''{dn:G0003}'" in built  # an attribute value that looks like a placeholder stays text
    assert split_filter("CustomAttribute1 -eq 'a'") == ["CustomAttribute1 -eq 'a'"]


def test_waiting_exit_code_matches_the_executor(scripts):
    from migrator.exitcodes import ExitCode

    assert f"exit {int(ExitCode.WAITING)}" in scripts[1]


def test_a_plan_removing_fullaccess_is_refused_not_half_exported(tmp_path):
    from migrator.planner.build import PlanOptions, build_plan
    from migrator.planner.plan import write_plan
    from migrator.planner.source import Source
    from plan_helpers import make_inventory

    exo = "Office 365 Exchange Online"
    inv = make_inventory({}, fullaccess={"relay": ["m1", "m2"]}, permissions=[("relay", exo, "SMTP.SendAsApp")])
    source = Source.from_inventory(inv, "inventory", "inventory/t", "0" * 64)
    removing = load_plan(write_plan(build_plan(source, PlanOptions(pilot=0, time_limit=5, remove_fullaccess=True)),
                                    tmp_path / "removing"))
    with pytest.raises(PlanError, match="removes FullAccess grants"):
        export_batch(removing, 1)
    kept = load_plan(write_plan(build_plan(source, PlanOptions(pilot=0, time_limit=5)), tmp_path / "kept"))
    data = data_of(export_batch(kept, 1))
    assert not data["Grants"]  # no SendAs to remove; the scope covers the FullAccess mailboxes
    assert sorted(data["Expected"]["relay"]) == ["m1@contoso.com", "m2@contoso.com"]
