"""Access tokens through msal: client secret, certificate (PEM or PFX), or device code for an admin.

One msal application per profile (its token cache is per instance), one token per resource, cached by msal and
force-refreshed after a 401. msal reports token failures as dicts; they become AuthError with a hint naming what
the admin should check. Secrets never appear in messages (redact + register_secret).
"""

from __future__ import annotations

import hashlib
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import requests

from migrator.errors import InputError
from migrator.exchange.errors import AuthError, Unreachable
from migrator.exchange.profile import Profile
from migrator.exchange.redact import redact, register_secret

# AADSTS codes an admin meets most, with what to check. Codes from Microsoft's "Entra authentication and
# authorization error codes" page.
AADSTS_HINTS: dict[str, str] = {
    "7000215": "the client secret is wrong: check the value in {secret_ref} (copy the secret's Value, not its ID)",
    "7000222": "the client secret has expired: create a new one under the app registration's Certificates & "
               "secrets and update {secret_ref}",
    "700016": "application {client_id} was not found in tenant {tenant}: check client_id and tenant_id in the "
              "profile, and that an admin consented to the app in this tenant",
    "90002": "tenant {tenant} was not found: check tenant_id and the cloud (global, usgovgcchigh, usgovdod, china)",
    "900023": "tenant {tenant} is not a valid tenant id or domain: check tenant_id",
    "700027": "the certificate was rejected: upload its public key to the app registration (Certificates & "
              "secrets) and check the thumbprint",
    "700024": "the client assertion is outside its valid time range: check this machine's clock",
    "7000112": "application {client_id} is disabled in the tenant: re-enable its enterprise application",
    "500011": "the resource is not in this tenant: check the cloud setting and the Exchange/Graph URLs",
    "65001": "admin consent is missing: grant admin consent for the app's API permissions in Entra",
    "50034": "the user account does not exist in this tenant",
    "50126": "the user name or password is wrong",
    "50076": "multi-factor authentication is required: use device-code sign-in",
    "700082": "the sign-in has expired: sign in again",
    "1002012": "the scope is not valid: check exchange_resource / graph_resource in the profile",
}


class _PerRequestVerify:
    """The http_client handed to msal. requests lets REQUESTS_CA_BUNDLE override a Session's `verify`, but not a
    per-request `verify=`: so every get/post passes the profile's CA bundle (or True) explicitly."""

    def __init__(self, verify: str | bool, timeout: tuple[float, float]) -> None:
        self._session = requests.Session()
        self._verify = verify
        self._timeout = timeout

    def get(self, url, params=None, headers=None, **kwargs):
        kwargs.setdefault("timeout", self._timeout)
        kwargs["verify"] = self._verify
        return self._session.get(url, params=params, headers=headers, **kwargs)

    def post(self, url, params=None, data=None, headers=None, **kwargs):
        kwargs.setdefault("timeout", self._timeout)
        kwargs["verify"] = self._verify
        return self._session.post(url, params=params, data=data, headers=headers, **kwargs)

    def close(self) -> None:
        self._session.close()


def load_certificate(cred, *, source: str) -> dict[str, str]:
    """msal client_credential for a certificate: {"private_key", "thumbprint", "public_certificate"}.

    PEM: one file with the key and the certificate (or key_file beside cert_file). PFX: password from env/file.
    The thumbprint is computed from the certificate (SHA-1 of its DER form, what Entra shows) unless given.
    """
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.serialization import pkcs12

    try:
        if cred.pfx_file:
            password = cred.pfx_password()
            blob = Path(cred.pfx_file).read_bytes()
            try:
                key, cert, _extra = pkcs12.load_key_and_certificates(blob, password.encode() if password else None)
            except ValueError:
                raise InputError("cannot open the PFX file: wrong password or not a PKCS#12 file", path=source,
                                 field="credential.pfx_file", value=cred.pfx_file) from None
        else:
            text = Path(cred.cert_file).read_bytes()
            key_text = Path(cred.key_file).read_bytes() if cred.key_file else text
            cert = x509.load_pem_x509_certificate(text)
            try:
                key = serialization.load_pem_private_key(key_text, password=None)
            except (ValueError, TypeError):
                raise InputError("no unencrypted private key found in the PEM (put the key in cert_file or "
                                 "key_file)", path=source, field="credential.cert_file", value=cred.cert_file) from None
    except OSError as exc:
        raise InputError(f"cannot read the certificate: {exc.strerror}", path=source, field="credential") from None
    except ValueError:
        raise InputError("not a PEM certificate", path=source, field="credential.cert_file",
                         value=cred.cert_file) from None
    if key is None or cert is None:
        raise InputError("the certificate file needs both a certificate and its private key", path=source,
                         field="credential")
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption()).decode()
    register_secret(key_pem)
    der = cert.public_bytes(serialization.Encoding.DER)
    thumbprint = cred.thumbprint or hashlib.sha1(der).hexdigest().upper()
    return {"private_key": key_pem, "thumbprint": thumbprint,
            "public_certificate": cert.public_bytes(serialization.Encoding.PEM).decode()}


class TokenProvider:
    """`token(resource)` -> an access token for `<resource>/.default`, cached; `force_refresh=True` after a 401."""

    def __init__(self, profile: Profile, *, http_client: Any = None,
                 device_code_prompt: Callable[[str], None] | None = None) -> None:
        self.profile = profile
        self._http_client = http_client or _PerRequestVerify(profile.verify, (profile.connect_timeout, profile.timeout))
        self._app = None
        self._lock = threading.RLock()
        self._prompt = device_code_prompt or (lambda msg: print(msg, file=sys.stderr, flush=True))
        self.acquired = 0  # tokens fetched from the token endpoint (not from cache), for tests and the manifest

    # -- msal application -------------------------------------------------------------------------------
    def _build_app(self):
        import msal

        p = self.profile
        kwargs: dict[str, Any] = {"authority": p.authority, "http_client": self._http_client}
        if not p.authority_is_microsoft:
            kwargs["instance_discovery"] = False
        try:
            if p.credential.kind == "device_code":
                return msal.PublicClientApplication(p.client_id, **kwargs)
            if p.credential.kind == "certificate":
                credential: Any = load_certificate(p.credential, source=p.path)
            else:
                credential = p.credential.secret()
            return msal.ConfidentialClientApplication(p.client_id, client_credential=credential, **kwargs)
        except requests.exceptions.RequestException as exc:
            raise self._unreachable(exc) from None
        except ValueError as exc:  # msal: authority discovery failed (bad tenant, not an identity provider)
            raise AuthError(
                f"cannot use authority {p.authority}: {redact(exc)}", operation="sign-in",
                hint="check tenant_id, the cloud and the authority URL in the profile") from None

    def _unreachable(self, exc: Exception) -> Unreachable:
        from migrator.exchange.http import describe_connection_error

        host, hint = describe_connection_error(exc, self.profile.authority, self.profile)
        return Unreachable(f"cannot reach the sign-in service at {host}", operation="sign-in", hint=hint)

    @property
    def app(self):
        with self._lock:
            if self._app is None:
                self._app = self._build_app()
            return self._app

    # -- tokens -----------------------------------------------------------------------------------------
    def token(self, resource: str, *, force_refresh: bool = False) -> str:
        scopes = [self.profile.scope(resource)]
        with self._lock:
            app = self.app
            try:
                if self.profile.credential.kind == "device_code":
                    result = self._device_code_token(app, scopes, force_refresh)
                else:
                    if force_refresh:
                        self._drop_cached(app, scopes)
                    result = app.acquire_token_for_client(scopes)
            except requests.exceptions.RequestException as exc:
                raise self._unreachable(exc) from None
        if not result or "access_token" not in result:
            raise self._auth_error(result or {}, resource)
        if result.get("token_source") == "identity_provider":
            self.acquired += 1
        register_secret(result["access_token"])
        return result["access_token"]

    @staticmethod
    def _drop_cached(app, scopes) -> None:
        cache = app.token_cache
        for item in list(cache.search(cache.CredentialType.ACCESS_TOKEN, target=scopes)):
            cache.remove_at(item)

    def _device_code_token(self, app, scopes, force_refresh: bool) -> dict:
        accounts = app.get_accounts()
        if accounts:
            result = app.acquire_token_silent(scopes, account=accounts[0], force_refresh=force_refresh)
            if result and "access_token" in result:
                return result
        flow = app.initiate_device_flow(scopes=scopes)
        if "user_code" not in flow:
            return flow
        self._prompt(flow["message"])
        return app.acquire_token_by_device_flow(flow)

    def _auth_error(self, result: dict, resource: str) -> AuthError:
        p = self.profile
        codes = [str(c) for c in (result.get("error_codes") or [])]
        description = redact(result.get("error_description") or result.get("error") or "no token returned")
        first_line = description.splitlines()[0] if description else ""
        if not codes and "AADSTS" in description:
            codes = [description.split("AADSTS", 1)[1].split(":", 1)[0].strip()]
        cred = p.credential
        secret_ref = (f"environment variable {cred.secret_env}" if cred.secret_env
                      else f"file {cred.secret_file}" if cred.secret_file else "the credential")
        hint = ""
        for code in codes:
            if code in AADSTS_HINTS:
                hint = AADSTS_HINTS[code].format(secret_ref=secret_ref, client_id=p.client_id, tenant=p.tenant_id)
                break
        if not hint:
            hint = (f"check client_id {p.client_id}, tenant_id {p.tenant_id} and the credential "
                    f"({cred.kind}) in profile {p.path or p.name}")
        return AuthError(f"sign-in for {resource} failed ({result.get('error', 'error')}): {first_line}",
                         operation="sign-in", code=str(result.get("error") or ""), hint=hint)

    def close(self) -> None:
        close = getattr(self._http_client, "close", None)
        if close:
            close()
