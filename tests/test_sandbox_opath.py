"""OPATH RecipientRestrictionFilter: parsing, quoting and set evaluation (DN-only, direct-members MemberOfGroup)."""

from __future__ import annotations

import pytest
from sandbox_tenant import SUFFIX, make_state

from migrator.sandbox import opath

SALES_DN = f"CN=Sales Senders 7f3a,{SUFFIX}"
ALL_STAFF_DN = f"CN=All Staff,{SUFFIX}"


def names(state, text: str) -> list[str]:
    hit = state.filter_members(state.parse_filter(text))
    return sorted(state.recipients[g].name for g in hit if state.recipients[g].kind == "mailbox")


@pytest.fixture(scope="module")
def state():
    return make_state()


def test_parse_tree_precedence_and_case():
    tree = opath.parse("department -EQ 'Sales' -or CustomAttribute1 -eq 'x' -AND -not (Alias -like 'a*')")
    assert isinstance(tree, opath.Or)
    left, right = tree.parts
    assert left == opath.Compare("department", "-eq", "Sales")
    assert isinstance(right, opath.And) and isinstance(right.parts[1], opath.Not)


def test_doubled_quote_is_one_quote():
    assert opath.parse("DisplayName -eq 'Bob O''Brien'").value == "Bob O'Brien"
    assert opath.quote("O'Brien") == "'O''Brien'"
    assert opath.parse("Name -eq " + opath.quote("a''b'")).value == "a''b'"


@pytest.mark.parametrize("text", [
    "", "Department -eq", "Department 'Sales'", "(Department -eq 'Sales'", "Department -eq 'Sales')",
    "Department -eq 'unterminated", "Department -gt 'a'", "-and Department -eq 'x'", "Department -eq 'a' -or",
])
def test_syntax_errors(text):
    with pytest.raises(opath.OpathError):
        opath.parse(text)


def test_leading_wildcard_refused_trailing_accepted():
    with pytest.raises(opath.OpathError, match="first character"):
        opath.parse("Alias -like '*vance'")
    assert opath.parse("Alias -like 'ad*'").value == "ad*"


def test_unknown_property_refused_by_tenant(state):
    with pytest.raises(opath.OpathError, match="recognized filterable property"):
        state.parse_filter("ShoeSize -eq '42'")


def test_equality_negation_and_parentheses(state):
    assert names(state, "Department -eq 'sales'") == ["adele.vance", "bob.obrien"]
    assert names(state, "Department -ne 'Sales'") == ["carol.diaz", "dan.wu", "erin.li"]
    assert names(state, "(Department -eq 'Sales' -or Department -eq 'Finance') -and -not (CustomAttribute1 -eq "
                        "'emea')") == ["bob.obrien", "carol.diaz", "dan.wu"]
    assert names(state, "DisplayName -eq 'Bob O''Brien'") == ["bob.obrien"]
    assert names(state, "CustomAttribute1 -eq $null") == ["bob.obrien", "dan.wu", "erin.li"]
    assert names(state, "CustomAttribute1 -ne $null") == ["adele.vance", "carol.diaz"]


def test_like_is_case_insensitive_with_inner_wildcards(state):
    assert names(state, "Alias -like 'C*Z'") == ["carol.diaz"]
    assert names(state, "PrimarySmtpAddress -like 'd*@contoso.com'") == ["dan.wu"]
    assert names(state, "EmailAddresses -like 'adele@*'") == ["adele.vance"]


def test_member_of_group_matches_by_dn_only(state):
    assert names(state, f"MemberOfGroup -eq '{SALES_DN}'") == ["adele.vance", "bob.obrien"]
    assert names(state, f"MemberOfGroup -eq '{SALES_DN.upper()}'") == ["adele.vance", "bob.obrien"]
    # The name, address or GUID of the same group parse fine but match nothing, silently (as Exchange does).
    group = state.find_recipients("sales-senders@contoso.com")[0]
    for other in ("Sales Senders", "sales-senders@contoso.com", group.guid, f"CN=Sales Senders,{SUFFIX}"):
        assert names(state, f"MemberOfGroup -eq '{other}'") == []


def test_member_of_group_is_direct_members_only(state):
    # All Staff contains Sales Senders (a group) and carol: only carol is a direct mailbox member.
    assert names(state, f"MemberOfGroup -eq '{ALL_STAFF_DN}'") == ["carol.diaz"]


def test_member_of_group_negated(state):
    assert names(state, f"-not (MemberOfGroup -eq '{SALES_DN}')") == ["carol.diaz", "dan.wu", "erin.li"]
    assert names(state, f"MemberOfGroup -ne '{SALES_DN}' -and Department -eq 'Sales'") == []


def test_group_dns_collects_member_of_values():
    tree = opath.parse("(MemberOfGroup -eq 'CN=A,X') -or -not (MemberOfGroup -eq 'cn=b,x' -and Name -eq 'y')")
    assert opath.group_dns(tree) == {"cn=a,x", "cn=b,x"}
