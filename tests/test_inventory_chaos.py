"""The live inventory under the sandbox's own `chaos` profile on synthetic tenants with more apps than a Graph $batch
holds (20): exact, equal to the fixture's ground truth (issue 11). The 10-seed run on 2,500-5,000 mailboxes and
270-1,200 apps is bench/inventory_chaos.py; these two small seeds keep the suite fast.
"""

from __future__ import annotations

import pytest

from migrator.inventory.tenant import live_inventory
from migrator.sandbox import synth
from migrator.sandbox.faults import PROFILES
from migrator.sandbox.truth import ground_truth

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300, method="thread")]


@pytest.mark.parametrize(("seed", "mailboxes", "apps"), [(1, 300, 45), (2, 400, 70)])
def test_live_inventory_is_exact_under_chaos(tmp_path, seed, mailboxes, apps):
    from migrator.sandbox.server import start_sandbox

    data = synth.generate(mailboxes=mailboxes, apps=apps, seed=seed)
    with start_sandbox(data, seed=300 + seed, faults=PROFILES["chaos"], run_dir=tmp_path / "sb") as sb:
        inv = live_inventory(sb.profile_path, tmp_path / "inv", progress=False, allow_unknown_trustees=True,
                             session_options={"backoff_cap": 2.0})
        fired = dict(sb.faults.counts)
    assert {(g.app_id, g.mailbox, g.right.value) for g in inv.grants} == ground_truth(data)
    assert len(inv.service_principals) > 20  # more than one $batch of app-permission reads
    assert fired.get("throttle_inner", 0) > 0  # Graph throttled inside $batch, and the inventory outlasted it
    assert sum(fired.values()) > fired.get("throttle_inner", 0)  # and the other faults fired too
