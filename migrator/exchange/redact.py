"""Strip secrets from text and parameter dicts before they reach a log, an error message or a file.

Two layers: patterns (bearer tokens, JWTs, `client_secret=...`, `client_assertion=...`, passwords, PEM keys), and
the exact values of secrets this process loaded (`register_secret`), so a secret is caught even where no pattern
would recognise it (e.g. echoed back inside a server's error text).
"""

from __future__ import annotations

import re
import threading
from typing import Any

MASK = "***"

_SECRET_KEY = re.compile(
    r"(secret|password|passwd|passphrase|pwd|token|assertion|private[_-]?key|authorization|credential|apikey|api_key)",
    re.IGNORECASE,
)

_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    # PEM blocks (private keys, certificates with keys)
    (re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----.*?(-----END [A-Z ]*PRIVATE KEY-----|$)", re.DOTALL),
     "-----BEGIN PRIVATE KEY----- *** -----END PRIVATE KEY-----"),
    # Authorization: Bearer <token>
    (re.compile(r"(\bBearer\s+)[A-Za-z0-9\-._~+/]+=*", re.IGNORECASE), r"\1" + MASK),
    # JWTs anywhere (header.payload.signature, base64url)
    (re.compile(r"\beyJ[A-Za-z0-9_\-]{5,}\.[A-Za-z0-9_\-]{5,}\.[A-Za-z0-9_\-]*"), MASK),
    # form / query / key=value style: client_secret=..., client_assertion=..., password=..., access_token=...
    (re.compile(r"(?i)\b((?:client_secret|client_assertion|password|passwd|pfx_password|passphrase|access_token|"
                r"refresh_token|id_token|secret)\s*[=:]\s*)(\"[^\"]*\"|'[^']*'|[^\s&,;\"'}]+)"), r"\1" + MASK),
    # JSON style: "client_secret": "..."
    (re.compile(r"(?i)(\"(?:[a-z_]*secret|[a-z_]*password|client_assertion|access_token|refresh_token|id_token|"
                r"authorization)\"\s*:\s*)\"[^\"]*\""), r'\1"' + MASK + '"'),
)

_known: set[str] = set()
_lock = threading.Lock()


def register_secret(value: str | None) -> None:
    """Remember a secret value this process holds, so `redact` removes it verbatim wherever it shows up."""
    if value and len(value) >= 6:
        with _lock:
            _known.add(value)


def redact(text: object) -> str:
    """Return `text` with secrets masked. Accepts any object (str() is taken)."""
    if text is None:
        return ""
    out = str(text)
    with _lock:
        known = sorted(_known, key=len, reverse=True)
    for value in known:
        if value in out:
            out = out.replace(value, MASK)
    for pattern, repl in _PATTERNS:
        out = pattern.sub(repl, out)
    return out


def redact_params(params: dict[str, Any] | None) -> dict[str, Any]:
    """A copy of `params` with secret-looking keys masked and every string value passed through `redact`."""
    if not params:
        return {}
    return {k: _redact_value(k, v) for k, v in params.items()}


def _redact_value(key: str, value: Any) -> Any:
    if _SECRET_KEY.search(str(key)):
        return MASK
    if isinstance(value, dict):
        return redact_params(value)
    if isinstance(value, (list, tuple)):
        return [_redact_value("", v) for v in value]
    if isinstance(value, str):
        return redact(value)
    return value
