"""One typed interface for the tenant: ExchangeApi / GraphApi (migrator/exchange/interface.py). The real clients and
the test fake implement the same raw methods with the same signatures and marks; the typed rows read Microsoft's
field variants the same way whichever implementation answered."""

from __future__ import annotations

import inspect

import pytest

from fakes import FakeExchange, FakeGraph, FakeTenant
from migrator.exchange.access import access_of
from migrator.exchange.exo import ExchangeClient
from migrator.exchange.graph import GraphClient
from migrator.exchange.interface import (
    AppRoleAssignment,
    AuthorizationResult,
    EntraServicePrincipal,
    ExchangeApi,
    GraphApi,
    GroupInfo,
    GroupMember,
    MailboxRef,
    PermissionEntry,
    RoleAssignmentInfo,
    ScopeInfo,
    raw_methods,
)

PAIRS = [(ExchangeApi, ExchangeClient, FakeExchange), (GraphApi, GraphClient, FakeGraph)]


def _shape(fn) -> list[tuple[str, str, object]]:
    """Parameter names, kinds and defaults (the fake has no annotations; the calls must bind the same way)."""
    return [(p.name, p.kind.name, p.default) for p in inspect.signature(fn).parameters.values()]


@pytest.mark.parametrize(("api", "real", "fake"), PAIRS, ids=lambda c: c.__name__)
def test_real_client_and_fake_implement_the_interface_with_the_same_signatures(api, real, fake):
    assert issubclass(real, api) and issubclass(fake, api)
    names = raw_methods(api)
    assert len(names) >= 5
    for name in names:
        for impl in (real, fake):
            method = getattr(impl, name)
            assert not getattr(method, "__isabstractmethod__", False), f"{impl.__name__}.{name} not implemented"
            assert _shape(method) == _shape(getattr(api, name)), f"{impl.__name__}.{name}"
        assert access_of(real, name) == access_of(api, name), f"{real.__name__}.{name}: mark differs"


def test_a_fake_missing_a_method_cannot_be_built():
    class Incomplete(ExchangeApi):
        def invoke(self, cmdlet, params=None, select=None, *, scan=False):
            return []

    with pytest.raises(TypeError, match="abstract"):
        Incomplete()  # type: ignore[abstract]


def test_the_executors_calls_are_all_on_the_interface():
    """Every exo./graph. call in the executor names a method of the interface (so the fake and the real client
    both answer it, and its mark is known)."""
    import re
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent / "migrator" / "executor"
    used = {(m.group(1), m.group(2)) for path in root.glob("*.py")
            for m in re.finditer(r"ctx\.(exo|graph)\.(\w+)\(", path.read_text(encoding="utf-8"))}
    assert used
    for client, name in used:
        api = ExchangeApi if client == "exo" else GraphApi
        assert hasattr(api, name), f"ctx.{client}.{name} is not on {api.__name__}"


def test_typed_rows_read_the_field_variants():
    sendas = PermissionEntry.from_row({"Identity": "Adele", "Trustee": "Billing", "AccessRights": "{SendAs, ReadPermission}",
                                       "IsInherited": "False", "AccessControlType": "Deny"})
    assert (sendas.mailbox, sendas.trustee, sendas.rights, sendas.inherited, sendas.deny) == (
        "Adele", "Billing", frozenset({"sendas", "readpermission"}), False, True)
    full = PermissionEntry.from_row({"Identity": "x", "User": "App", "AccessRights": ["FullAccess"],
                                     "IsInherited": True, "Deny": "True"})
    assert (full.trustee, full.rights, full.inherited, full.deny) == ("App", frozenset({"fullaccess"}), True, True)
    group = GroupInfo.from_row({"Name": "G", "DistinguishedName": "CN=G", "Guid": "", "HiddenFromAddressListsEnabled":
                                "True"})
    assert (group.identity, group.hidden) == ("CN=G", True)
    assert GroupMember.from_row({"Name": "Adele", "WindowsEmailAddress": "Adele@Contoso.com"}).address == \
        "adele@contoso.com"
    assert ScopeInfo.from_row({"Name": "S", "RecipientRestrictionFilter": "(a -eq 'b')"}).filter == "(a -eq 'b')"
    ra = RoleAssignmentInfo.from_row({"Name": "A", "App": "ABC", "CustomResourceScope": "S"})
    assert (ra.assignee, ra.role, ra.scope) == ("abc", "", "S")
    assert AuthorizationResult.from_row({"Role": "R", "InScope": "true"}) == AuthorizationResult("R", True)
    mb = MailboxRef.from_row({"PrimarySmtpAddress": "A@c.com", "Name": "A", "Guid": "G1"})
    assert mb.address == "a@c.com" and mb.names == ("a", "g1", "a@c.com")
    sp = EntraServicePrincipal.from_row({"id": "1", "appId": "2", "appRoles": [{"id": "r", "value": "SMTP.SendAsApp"}]})
    assert sp.role_id("SMTP.SendAsApp") == "r" and sp.role_id("Mail.Send") is None
    assert AppRoleAssignment.from_row({"id": "x", "resourceId": "R", "appRoleId": "Q"}).resource_id == "r"
    # the raw row is kept for the journal but is not part of equality or the repr
    assert sendas.raw["AccessControlType"] == "Deny" and "raw" not in repr(sendas)


def test_fake_and_interface_parse_alike():
    tenant = FakeTenant()
    tenant.add_mailbox("adele@contoso.com")
    oid = tenant.add_app("app-1", "Billing")
    tenant.grant("adele@contoso.com", oid)
    rows = [r for r in FakeExchange(tenant).sendas_entries() if r.trustee == "Billing"]
    assert [(r.mailbox, r.rights, r.deny) for r in rows] == [("adele", frozenset({"sendas"}), False)]
    sp = FakeGraph(tenant).service_principal("app-1")
    assert sp is not None and sp.id == oid and sp.display_name == "Billing"
