"""Connection profiles (TOML, INTERNALS.md §4): which tenant, which cloud, which app, where its secret lives.

A profile never holds a secret: it names an environment variable or a file. An inline secret is an InputError
(the file would end up in a repository or a ticket). Clouds are chosen by name; their hosts come from Microsoft's
national-cloud documentation (Connect-ExchangeOnline -ExchangeEnvironmentName, Graph national cloud endpoints).
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

from migrator.errors import InputError
from migrator.exchange.redact import register_secret


@dataclass(frozen=True)
class Cloud:
    login: str  # authority host
    exchange: str  # Exchange Online base URL (also the token audience)
    graph: str  # Graph base URL (also the token audience)
    smtp: str = "smtp.office365.com"  # SMTP AUTH submission host (port 587, STARTTLS)


CLOUDS: dict[str, Cloud] = {
    "global": Cloud("https://login.microsoftonline.com", "https://outlook.office365.com", "https://graph.microsoft.com"),
    # Microsoft 365 GCC High: -ExchangeEnvironmentName O365USGovGCCHigh
    "usgovgcchigh": Cloud("https://login.microsoftonline.us", "https://outlook.office365.us", "https://graph.microsoft.us",
                          "smtp.office365.us"),
    # Microsoft 365 DoD: -ExchangeEnvironmentName O365USGovDoD
    "usgovdod": Cloud("https://login.microsoftonline.us", "https://webmail.apps.mil", "https://dod-graph.microsoft.us",
                      "smtp.office365.us"),
    # Microsoft 365 operated by 21Vianet: -ExchangeEnvironmentName O365China
    "china": Cloud("https://login.chinacloudapi.cn", "https://partner.outlook.cn", "https://microsoftgraph.chinacloudapi.cn",
                   "smtp.partner.outlook.cn"),
}

# Authority hosts msal knows; any other host needs instance_discovery=False.
MICROSOFT_LOGIN_HOSTS = frozenset(
    {"login.microsoftonline.com", "login.microsoftonline.us", "login.chinacloudapi.cn",
     "login.partner.microsoftonline.cn", "login.windows.net", "login.microsoft.com", "sts.windows.net"}
)

CREDENTIAL_KINDS = ("secret", "certificate", "device_code")
# Keys that would hold a secret inline: refused wherever they appear.
_INLINE_SECRET_KEYS = ("secret", "client_secret", "password", "pfx_password", "private_key", "passphrase", "key")
# Where each inline secret belongs instead (keys that exist).
_SECRET_ADVICE = {"secret": "secret_env or secret_file", "client_secret": "secret_env or secret_file",
                  "password": "secret_env or secret_file", "pfx_password": "pfx_password_env or pfx_password_file",
                  "passphrase": "pfx_password_env or pfx_password_file",
                  "private_key": "key_file (or cert_file holding the key)",
                  "key": "key_file (or cert_file holding the key)"}
# Every key a profile may hold: a misspelt one is an error naming it, never silently ignored.
PROFILE_KEYS = ("name", "tenant_id", "client_id", "cloud", "authority", "exchange_url", "graph_url",
                "exchange_resource", "graph_resource", "credential", "ca_bundle", "timeout", "smtp_host", "smtp_port",
                "exo_cmdlets")
CREDENTIAL_KEYS = ("kind", "secret_env", "secret_file", "cert_file", "key_file", "pfx_file", "pfx_password_env",
                   "pfx_password_file", "thumbprint")


@dataclass(frozen=True)
class Credential:
    kind: str = "secret"
    secret_env: str = ""
    secret_file: str = ""
    cert_file: str = ""
    key_file: str = ""
    pfx_file: str = ""
    pfx_password_env: str = ""
    pfx_password_file: str = ""
    thumbprint: str = ""
    source: str = field(default="", compare=False)  # the profile file, for messages

    def secret(self) -> str:
        """Read the client secret from its environment variable or file (never stored on the object)."""
        value = _read_reference(self.secret_env, self.secret_file, what="client secret", source=self.source)
        register_secret(value)
        return value

    def pfx_password(self) -> str | None:
        if not (self.pfx_password_env or self.pfx_password_file):
            return None
        value = _read_reference(self.pfx_password_env, self.pfx_password_file, what="PFX password", source=self.source)
        register_secret(value)
        return value

    def __repr__(self) -> str:  # names only; there is nothing secret on the object, but keep reprs short
        return f"Credential(kind={self.kind!r})"


@dataclass(frozen=True)
class Profile:
    name: str
    tenant_id: str
    client_id: str
    cloud: str
    authority: str
    exchange_url: str
    graph_url: str
    exchange_resource: str
    graph_resource: str
    credential: Credential
    ca_bundle: str = ""
    path: str = ""
    timeout: float = 60.0  # seconds per HTTP read (REST cmdlets can run long)
    connect_timeout: float = 10.0
    smtp_host: str = "smtp.office365.com"  # SMTP AUTH submission (verify-smtp only)
    smtp_port: int = 587
    # Send Get-EXO* cmdlet names through InvokeCommand (no public client does; the endpoint most likely refuses
    # them). Off by default; a check against the tenant (doctor) may turn it on.
    exo_cmdlets: bool = False

    @property
    def verify(self) -> str | bool:
        """What to pass as requests' `verify=` on every call (per request: REQUESTS_CA_BUNDLE cannot override it)."""
        return self.ca_bundle or True

    @property
    def invoke_url(self) -> str:
        if "/adminapi/" in self.exchange_url:
            return self.exchange_url
        return f"{self.exchange_url}/adminapi/beta/{self.tenant_id}/InvokeCommand"

    @property
    def graph_base(self) -> str:
        return self.graph_url if self.graph_url.rstrip("/").endswith("/v1.0") else f"{self.graph_url}/v1.0"

    @property
    def authority_is_microsoft(self) -> bool:
        return (urlparse(self.authority).hostname or "").lower() in MICROSOFT_LOGIN_HOSTS

    def scope(self, resource: str) -> str:
        return resource.rstrip("/") + "/.default"


def _read_reference(env: str, path: str, *, what: str, source: str) -> str:
    if env:
        value = os.environ.get(env, "")
        if not value:
            raise InputError(f"the {what} is expected in environment variable {env}, which is not set or empty",
                             path=source)
        return value.strip()
    if path:
        p = Path(path).expanduser()
        try:
            value = p.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise InputError(f"cannot read the {what} file {p}: {exc.strerror}", path=source) from None
        if not value:
            raise InputError(f"the {what} file {p} is empty", path=source)
        return value
    raise InputError(f"no {what} reference: set `{what_key(what)}_env` or `{what_key(what)}_file` in [credential]",
                     path=source)


def what_key(what: str) -> str:
    return {"client secret": "secret", "PFX password": "pfx_password"}.get(what, what)


def _str(data: dict, key: str, source: str, default: str = "") -> str:
    value = data.get(key, default)
    if value is None:
        return default
    if not isinstance(value, str):
        raise InputError("must be a string", path=source, field=key)
    return value.strip()


def _check_https(url: str, key: str, source: str) -> str:
    url = url.rstrip("/")
    parsed = urlparse(url)
    if parsed.scheme != "https" or not parsed.hostname:
        raise InputError("must be an https:// URL", path=source, field=key, value=url)
    return url


def _relative(base: Path, value: str) -> str:
    if not value:
        return ""
    p = Path(value).expanduser()
    return str(p if p.is_absolute() else (base / p))


def _refuse_unknown(data: dict, known: tuple[str, ...], source: str, prefix: str) -> None:
    """A key the profile does not know is a mistake (a typo would otherwise be ignored): name it, suggest one."""
    import difflib

    for key in data:
        if key in known:
            continue
        close = difflib.get_close_matches(str(key), known, n=1, cutoff=0.6)
        hint = f"; did you mean {prefix}{close[0]}?" if close else f"; known keys: {', '.join(known)}"
        raise InputError(f"unknown key{hint}", path=source, field=f"{prefix}{key}")


def parse_profile(data: dict, *, source: str = "<profile>", base: Path | None = None) -> Profile:
    """Build a Profile from parsed TOML. Relative file paths are taken relative to the profile's folder."""
    base = base or Path.cwd()
    for key in _INLINE_SECRET_KEYS:
        if key in data:
            raise InputError(f"a secret must not be written in the profile; name where it is with [credential] "
                             f"{_SECRET_ADVICE[key]}", path=source, field=key)
    cred_data = data.get("credential") or {}
    if not isinstance(cred_data, dict):
        raise InputError("must be a table", path=source, field="credential")
    for key in _INLINE_SECRET_KEYS:
        if key in cred_data:
            raise InputError(f"a secret must not be written in the profile; name where it is with "
                             f"{_SECRET_ADVICE[key]} instead", path=source, field=f"credential.{key}")
    _refuse_unknown(data, PROFILE_KEYS, source, "")
    _refuse_unknown(cred_data, CREDENTIAL_KEYS, source, "credential.")
    tenant_id = _str(data, "tenant_id", source)
    client_id = _str(data, "client_id", source)
    if not tenant_id:
        raise InputError("is required (the tenant id or its onmicrosoft.com domain)", path=source, field="tenant_id")
    if not client_id:
        raise InputError("is required (the app registration's application id)", path=source, field="client_id")
    cloud_name = _str(data, "cloud", source, "global").lower()
    if cloud_name not in CLOUDS:
        raise InputError(f"unknown cloud; choose one of {', '.join(CLOUDS)}", path=source, field="cloud",
                         value=cloud_name)
    cloud = CLOUDS[cloud_name]
    authority = _check_https(_str(data, "authority", source) or f"{cloud.login}/{tenant_id}", "authority", source)
    if not urlparse(authority).path.strip("/"):
        authority = f"{authority}/{tenant_id}"
    exchange_url = _check_https(_str(data, "exchange_url", source) or cloud.exchange, "exchange_url", source)
    graph_url = _check_https(_str(data, "graph_url", source) or cloud.graph, "graph_url", source)
    kind = _str(cred_data, "kind", source, "secret").lower()
    if kind not in CREDENTIAL_KINDS:
        raise InputError(f"unknown credential kind; choose one of {', '.join(CREDENTIAL_KINDS)}", path=source,
                         field="credential.kind", value=kind)
    cred = Credential(
        kind=kind,
        secret_env=_str(cred_data, "secret_env", source),
        secret_file=_relative(base, _str(cred_data, "secret_file", source)),
        cert_file=_relative(base, _str(cred_data, "cert_file", source)),
        key_file=_relative(base, _str(cred_data, "key_file", source)),
        pfx_file=_relative(base, _str(cred_data, "pfx_file", source)),
        pfx_password_env=_str(cred_data, "pfx_password_env", source),
        pfx_password_file=_relative(base, _str(cred_data, "pfx_password_file", source)),
        thumbprint=_str(cred_data, "thumbprint", source).replace(":", "").upper(),
        source=source,
    )
    if kind == "secret" and not (cred.secret_env or cred.secret_file):
        raise InputError("a secret credential needs secret_env or secret_file", path=source, field="credential")
    if kind == "certificate" and not (cred.cert_file or cred.pfx_file):
        raise InputError("a certificate credential needs cert_file (PEM with key) or pfx_file", path=source,
                         field="credential")
    timeout = data.get("timeout", 60.0)
    if not isinstance(timeout, (int, float)) or timeout <= 0:
        raise InputError("must be a positive number of seconds", path=source, field="timeout", value=str(timeout))
    smtp_port = data.get("smtp_port", 587)
    if not isinstance(smtp_port, int) or not 0 < smtp_port < 65536:
        raise InputError("must be a TCP port number", path=source, field="smtp_port", value=str(smtp_port))
    exo_cmdlets = data.get("exo_cmdlets", False)
    if not isinstance(exo_cmdlets, bool):
        raise InputError("must be true or false", path=source, field="exo_cmdlets", value=str(exo_cmdlets))
    return Profile(
        name=_str(data, "name", source) or Path(source).stem,
        tenant_id=tenant_id,
        client_id=client_id,
        cloud=cloud_name,
        authority=authority,
        exchange_url=exchange_url,
        graph_url=graph_url,
        exchange_resource=_str(data, "exchange_resource", source).rstrip("/") or cloud.exchange,
        graph_resource=_str(data, "graph_resource", source).rstrip("/") or cloud.graph,
        credential=cred,
        ca_bundle=_relative(base, _str(data, "ca_bundle", source)),
        path=source,
        timeout=float(timeout),
        smtp_host=_str(data, "smtp_host", source) or cloud.smtp,
        smtp_port=smtp_port,
        exo_cmdlets=exo_cmdlets,
    )


def load_profile(path: str | Path) -> Profile:
    """Read and check a connection profile. InputError names the file and the field at fault."""
    p = Path(path)
    try:
        data = tomllib.loads(p.read_text(encoding="utf-8"))
    except OSError as exc:
        raise InputError(f"cannot read the profile: {exc.strerror}", path=str(p)) from None
    except tomllib.TOMLDecodeError as exc:
        raise InputError(f"not valid TOML: {exc}", path=str(p)) from None
    profile = parse_profile(data, source=str(p), base=p.resolve().parent)
    if profile.ca_bundle and not Path(profile.ca_bundle).is_file():
        raise InputError("CA bundle file not found", path=str(p), field="ca_bundle", value=profile.ca_bundle)
    return profile
