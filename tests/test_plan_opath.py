"""OPATH filters: quoting, and filling new groups' DNs into the plan's placeholder filters."""

from __future__ import annotations

import pytest

from migrator.planner import opath


def test_quote_doubles_inner_quotes():
    assert opath.quote("O'Brien") == "'O''Brien'"
    assert opath.member_of("CN=O'Brien Senders,OU=x") == "MemberOfGroup -eq 'CN=O''Brien Senders,OU=x'"


def test_member_of_refuses_empty_dn():
    with pytest.raises(ValueError):
        opath.member_of("")


def test_attribute_eq_only_for_filterable_attributes():
    assert opath.attribute_eq("CustomAttribute1", "emea") == "CustomAttribute1 -eq 'emea'"
    with pytest.raises(ValueError):
        opath.attribute_eq("Title", "x")
    with pytest.raises(ValueError):
        opath.attribute_eq("Department", "")


def test_any_of():
    assert opath.any_of(["A -eq 'x'"]) == "A -eq 'x'"
    assert opath.any_of(["A -eq 'x'", "B -eq 'y'"]) == "(A -eq 'x') -or (B -eq 'y')"
    with pytest.raises(ValueError):
        opath.any_of([])


def test_fill_dns_replaces_placeholders_with_quoted_dns():
    text = opath.any_of([opath.member_of_new("G0001"), opath.member_of("CN=old,OU=x"), opath.member_of_new("G0002")])
    filled = opath.fill_dns(text, {"G0001": "CN=a'b,OU=x", "G0002": "CN=c,OU=x"})
    assert filled == ("(MemberOfGroup -eq 'CN=a''b,OU=x') -or (MemberOfGroup -eq 'CN=old,OU=x') -or "
                      "(MemberOfGroup -eq 'CN=c,OU=x')")
    assert opath.placeholders(text) == ["G0001", "G0002"]
    assert opath.placeholders(filled) == []


def test_fill_dns_refuses_a_missing_dn():
    with pytest.raises(KeyError, match="G0002"):
        opath.fill_dns(opath.member_of_new("G0002"), {"G0002": ""})


def test_placeholder_text_inside_an_attribute_value_is_left_alone():
    tricky = opath.any_of([opath.attribute_eq("CustomAttribute1", "{dn:G0001}"),
                           opath.attribute_eq("CustomAttribute2", "x' -or MemberOfGroup -eq '{dn:G0001}")])
    assert opath.placeholders(tricky) == []
    assert opath.fill_dns(tricky, {}) == tricky
