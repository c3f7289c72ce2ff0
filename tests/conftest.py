"""Shared test fixtures."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "migrator" / "samples"  # package data (a wheel install carries it)


@pytest.fixture
def root() -> Path:
    return ROOT


@pytest.fixture
def sandbox(tmp_path):
    """An in-process sandbox tenant over HTTPS (the bundled sample tenant, faults off, real clock that tests may
    `sandbox.state.clock.advance()`). Attributes: authority, exchange_url, graph_url (bases, as in a profile),
    invoke_url, ca_bundle, tenant_id, client_id, client_secret, profile_path, state, stop()."""
    from migrator.sandbox.server import start_sandbox

    with start_sandbox(run_dir=tmp_path / "sandbox") as sb:
        yield sb
