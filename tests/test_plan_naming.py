"""Object names: deterministic, at most 64 characters, collision-free, valid as Exchange aliases."""

from __future__ import annotations

import re

import pytest

from migrator.errors import InputError
from migrator.planner import naming


def test_names_are_deterministic_and_carry_key_and_hash():
    h = naming.members_hash(["b@contoso.com", "a@contoso.com"])
    assert h == naming.members_hash(["a@contoso.com", "b@contoso.com"])
    a = naming.Namer("migrator-sendas").name("G0001", h)
    b = naming.Namer("migrator-sendas").name("G0001", h)
    assert a == b == f"migrator-sendas-G0001-{h}"


def test_collisions_with_tenant_objects_and_within_plan_get_suffixes():
    h = "abcdef"
    taken = {"migrator-sendas-g0001-abcdef", "migrator-sendas-g0001-abcdef-2@contoso.com"}
    namer = naming.Namer("migrator-sendas", taken, domain="contoso.com")
    first = namer.name("G0001", h)
    assert first == "migrator-sendas-G0001-abcdef-3"  # -2 is free as a name but its address is taken
    assert namer.name("G0001", h) == "migrator-sendas-G0001-abcdef-4"
    assert namer.address(namer.alias(first)) == "migrator-sendas-g0001-abcdef-3@contoso.com"


def test_longest_prefix_still_fits_64_and_is_a_valid_alias():
    namer = naming.Namer("p" * naming.MAX_PREFIX)
    name = namer.name("A1000000", "abcdef")
    assert len(name) <= 64
    assert re.fullmatch(r"[a-z0-9][a-z0-9.-]*[a-z0-9]", namer.alias(name))


@pytest.mark.parametrize("prefix", ["", "-x", "a b", "x" * (naming.MAX_PREFIX + 1), "a..b", "a.", "ü", "a_b"])
def test_bad_prefixes_are_refused(prefix):
    with pytest.raises(InputError, match="--prefix"):
        naming.check_prefix(prefix)


def test_prefix_is_lower_cased():
    assert naming.check_prefix("Contoso.RBAC") == "contoso.rbac"


def test_group_domain_is_the_most_common_then_alphabetical():
    assert naming.group_domain(["a@b.com", "c@b.com", "d@a.com"]) == "b.com"
    assert naming.group_domain(["a@z.com", "c@b.com"]) == "b.com"
    assert naming.group_domain([]) == ""
