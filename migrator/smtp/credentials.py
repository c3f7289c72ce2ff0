"""The apps' own credentials for `verify-smtp`: a TOML file that names, per app, where its secret or certificate is.

```toml
[[app]]
app_id = "<application (client) id>"
secret_env = "RELAY_SECRET"          # or secret_file = "...", or cert_file = "..." (PEM with key), or pfx_file = "..."
```
Like a connection profile, the file never holds a secret itself: an inline secret is refused, naming the file, the
entry and the key, so the file can be kept in a ticket without leaking anything.
"""

from __future__ import annotations

import tomllib
from pathlib import Path

from migrator.errors import InputError
from migrator.exchange.profile import Credential
from migrator.model import norm_id

INLINE_SECRET_KEYS = ("secret", "client_secret", "password", "pfx_password", "private_key", "passphrase", "key")
REFERENCE_KEYS = ("secret_env", "secret_file", "cert_file", "key_file", "pfx_file", "pfx_password_env",
                  "pfx_password_file", "thumbprint")
KNOWN_KEYS = frozenset(("app_id", "name", *REFERENCE_KEYS))


def load_app_credentials(path: Path) -> dict[str, Credential]:
    """{app_id: Credential} from the file; InputError names the file, the entry and the field at fault."""
    source = str(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise InputError(f"cannot read the app credentials file: {exc.strerror}", path=source) from None
    except tomllib.TOMLDecodeError as exc:
        raise InputError(f"not valid TOML: {exc}", path=source) from None
    entries = data.get("app")
    if not isinstance(entries, list) or not entries:
        raise InputError("needs at least one [[app]] table (app_id and where its secret or certificate is)",
                         path=source, field="app")
    base = path.resolve().parent
    creds: dict[str, Credential] = {}
    for i, entry in enumerate(entries):
        where = f"app[{i}]"
        if not isinstance(entry, dict):
            raise InputError("must be a table", path=source, field=where)
        for key in entry:
            if key in INLINE_SECRET_KEYS:
                raise InputError("a secret must not be written in this file; name an environment variable "
                                 "(secret_env) or a file (secret_file) instead", path=source, field=f"{where}.{key}")
            if key not in KNOWN_KEYS:
                raise InputError(f"unknown key; expected one of {', '.join(sorted(KNOWN_KEYS))}", path=source,
                                 field=f"{where}.{key}")
        app_id = norm_id(str(entry.get("app_id") or ""))
        if not app_id:
            raise InputError("is required", path=source, field=f"{where}.app_id")
        if app_id in creds:
            raise InputError("this app is listed twice", path=source, field=f"{where}.app_id", value=app_id)
        refs = {k: str(entry.get(k) or "").strip() for k in REFERENCE_KEYS}
        for key in ("secret_file", "cert_file", "key_file", "pfx_file", "pfx_password_file"):
            if refs[key]:
                p = Path(refs[key]).expanduser()
                refs[key] = str(p if p.is_absolute() else base / p)
        if refs["cert_file"] or refs["pfx_file"]:
            kind = "certificate"
        elif refs["secret_env"] or refs["secret_file"]:
            kind = "secret"
        else:
            raise InputError("names no credential: set secret_env, secret_file, cert_file or pfx_file",
                             path=source, field=where)
        creds[app_id] = Credential(kind=kind, secret_env=refs["secret_env"], secret_file=refs["secret_file"],
                                   cert_file=refs["cert_file"], key_file=refs["key_file"], pfx_file=refs["pfx_file"],
                                   pfx_password_env=refs["pfx_password_env"],
                                   pfx_password_file=refs["pfx_password_file"],
                                   thumbprint=refs["thumbprint"].replace(":", "").upper(), source=source)
    return creds
