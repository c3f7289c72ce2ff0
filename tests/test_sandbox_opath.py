"""OPATH RecipientRestrictionFilter: parsing, quoting and set evaluation (DN-only, direct-members MemberOfGroup)."""

from __future__ import annotations

import pytest

from migrator.sandbox import opath
from sandbox_tenant import SUFFIX, make_state

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


# ---------------------------------------------------------------------------------------------- property test
from hypothesis import example, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

_VALUES = st.sampled_from(["Sales", "sales", "Finance", "emea", "amer", "Bob O'Brien", "x'y", "", "adele.vance"])
_PROPS = st.sampled_from(["Department", "CustomAttribute1", "DisplayName", "Alias", "Name"])
_DNS = st.sampled_from([SALES_DN, ALL_STAFF_DN, "Sales Senders", SALES_DN.lower()])


@st.composite
def _filters(draw, depth=0):
    kind = draw(st.integers(0, 5 if depth < 3 else 1))
    if kind == 0:
        return f"{draw(_PROPS)} {draw(st.sampled_from(['-eq', '-ne']))} {opath.quote(draw(_VALUES))}"
    if kind == 1:
        return f"MemberOfGroup {draw(st.sampled_from(['-eq', '-ne']))} {opath.quote(draw(_DNS))}"
    if kind == 2:
        return f"{draw(_PROPS)} -like {opath.quote(draw(st.sampled_from(['a*', 'S*s', 'b*n', 'e*'])))}"
    if kind == 3:
        return f"-not ({draw(_filters(depth + 1))})"
    op = "-and" if kind == 4 else "-or"
    return f"({draw(_filters(depth + 1))}) {op} ({draw(_filters(depth + 1))})"


def _naive(state, node, rec) -> bool:
    """Per-recipient meaning of a filter, written independently of the set evaluator."""
    if isinstance(node, opath.And):
        return all(_naive(state, p, rec) for p in node.parts)
    if isinstance(node, opath.Or):
        return any(_naive(state, p, rec) for p in node.parts)
    if isinstance(node, opath.Not):
        return not _naive(state, node.part, rec)
    if node.key == "memberofgroup":
        hit = any(g.is_group and g.dn.lower() == node.value.lower() and rec.guid in g.members
                  for g in state.recipients.values())
    else:
        values = [v.lower() for v in state.property_values(rec, node.key)]
        if node.op in ("-like", "-notlike"):
            import fnmatch
            hit = any(fnmatch.fnmatchcase(v, node.value.lower()) for v in values)
        else:
            hit = node.value.lower() in values if node.value else not values
    return not hit if node.op in ("-ne", "-notlike") else hit


_STATE = make_state()


@settings(max_examples=150, deadline=None)
@given(_filters())
@example("Department -eq ''")
@example(f"-not (MemberOfGroup -ne '{SALES_DN}') -or Alias -like 'e*'")
def test_set_evaluation_matches_per_recipient_meaning(text):
    node = _STATE.parse_filter(text)
    got = _STATE.filter_members(node)
    want = {g for g, rec in _STATE.recipients.items() if _naive(_STATE, node, rec)}
    assert got == want, text
