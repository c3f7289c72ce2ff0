"""The connection profile the sandbox writes for the tool's other commands (INTERNALS.md §4).

The secret goes to its own 0600 file next to the profile; the profile only points at it.
"""

from __future__ import annotations

import os
from pathlib import Path

import tomli_w


def write_secret_file(path: Path, secret: str) -> Path:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(secret)
    os.chmod(path, 0o600)  # in case the file existed with wider rights
    return path


def write_profile(path: Path, *, tenant_id: str, client_id: str, authority: str, exchange_url: str,
                  graph_url: str, ca_bundle: Path, secret_file: Path, name: str = "sandbox",
                  smtp: tuple[str, int] | None = None) -> Path:
    profile: dict[str, object] = {
        "name": name,
        "tenant_id": tenant_id,
        "client_id": client_id,
        "cloud": "global",
        "authority": authority,
        "exchange_url": exchange_url,
        "graph_url": graph_url,
        "exchange_resource": "https://outlook.office365.com",
        "graph_resource": "https://graph.microsoft.com",
        "ca_bundle": str(ca_bundle),
        "credential": {"kind": "secret", "secret_file": str(secret_file)},
    }
    if smtp is not None:
        profile["smtp_host"], profile["smtp_port"] = smtp
    tmp = path.with_suffix(".tmp")
    tmp.write_text("# Written by `migrator sandbox serve`; valid while that sandbox runs.\n" + tomli_w.dumps(profile),
                   encoding="utf-8")
    tmp.replace(path)
    return path
