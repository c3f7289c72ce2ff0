"""The executor's Graph/EWS tests' tenant and plan: aap_tenant.py's tenant with Billing Mailer made a mixed app (its
SendAs grants on adele and bob, plus Graph Mail.Send fenced by a RestrictAccess policy on Sales Senders), and the
real planner's plan for it, from the live inventory read through the real clients. In one batch: Billing Mailer
(SMTP and Graph), CRM Notifier (SMTP; its policy fences no permission it holds) and Mail Archiver (Graph Mail.Read
and Mail.Send, RestrictAccess on a nested group); EWS Sync (DenyAccess) and Room Booker (no policy) are reported,
not planned.
"""

from __future__ import annotations

from pathlib import Path

from aap_tenant import GRAPH, aap_fixture
from sandbox_tenant import BILLING


def mixed_fixture() -> dict:
    data = aap_fixture()
    billing = next(a for a in data["apps"] if a["app_id"] == BILLING)
    billing["app_roles"].append({"resource": GRAPH, "permission": "Mail.Send"})
    data["application_access_policies"].append(
        {"app_id": BILLING, "scope": "sales-senders@contoso.com", "access_right": "RestrictAccess",
         "description": "billing mail"})
    return data


def planned(profile_path: Path, out: Path) -> Path:
    """The planner's plan (every app in batch 1) from the live inventory of the sandbox behind `profile_path`."""
    from migrator.inventory.tenant import live_inventory
    from migrator.planner.build import PlanOptions, build_plan
    from migrator.planner.plan import write_plan
    from migrator.planner.source import Source

    inv = live_inventory(profile_path, out.parent / f"{out.name}-inventory", progress=False)
    source = Source.from_inventory(inv, "inventory", f"{out.name}-inventory", "0" * 64)
    return write_plan(build_plan(source, PlanOptions(time_limit=10, pilot=0, batch_size=10)), out)
