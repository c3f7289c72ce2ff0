"""The sandbox's Entra ID token service: OIDC discovery, JWKS and the client-credentials grant.

Speaks the v2.0 endpoint's wire format closely enough that an unmodified msal ConfidentialClientApplication works
(client secret, or a certificate: the RS256/PS256 client assertion is verified against the app's registered
certificate). Access tokens are RS256 JWTs signed by a key made at start; `validate()` is what the Exchange and
Graph endpoints use. Errors carry AAD's shape (`error`, `error_description` starting with the AADSTS code,
`error_codes`, trace/correlation ids).
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import time
import uuid
from dataclasses import dataclass
from urllib.parse import parse_qs, unquote

import jwt
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

from migrator.model import EXCHANGE_ONLINE_APP_ID
from migrator.sandbox.backend import EXCHANGE_RESOURCE, GRAPH_APP_ID, GRAPH_RESOURCE, AppCredentials, Backend, Caller
from migrator.sandbox.reply import Reply, Request, json_reply

# audience URI -> resource application id
RESOURCES: dict[str, str] = {EXCHANGE_RESOURCE: EXCHANGE_ONLINE_APP_ID, GRAPH_RESOURCE: GRAPH_APP_ID}
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
CLOCK_SKEW = 300  # seconds AAD tolerates on a client assertion's exp/nbf
RESERVED_SCOPES = {"openid", "profile", "offline_access"}
# Directory role template ids, for the `wids` claim (as Entra puts them in app tokens).
ROLE_TEMPLATE_IDS = {
    "Global Administrator": "62e90394-69f5-4237-9190-012177145e10",
    "Exchange Administrator": "29232cdf-9323-42fd-ade2-1d097af3e4de",
    "Global Reader": "f2ef992c-3afb-46b9-b7cf-a126ee74c451",
    "Exchange Recipient Administrator": "31392ffb-586c-42d1-9346-e59415a2cc4e",
}


class TokenRejected(Exception):
    """An access token a resource server refuses (401): missing, malformed, expired, wrong audience or tenant."""

    def __init__(self, error: str, description: str) -> None:
        super().__init__(description)
        self.error, self.description = error, description


@dataclass(frozen=True)
class _AadError(Exception):
    status: int
    error: str
    code: int
    text: str


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


class TokenService:
    def __init__(self, backend: Backend) -> None:
        self.backend = backend
        self._key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self._pem = self._key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                            serialization.NoEncryption())
        der = self._key.public_key().public_bytes(serialization.Encoding.DER,
                                                  serialization.PublicFormat.SubjectPublicKeyInfo)
        self.kid = _b64url(hashlib.sha1(der).digest())
        self.base_url = ""  # set by the server once its port is known
        self._verified: dict[str, dict] = {}  # access token -> its claims, signature already checked

    # ---- URLs -------------------------------------------------------------------------------------------
    def issuer(self) -> str:
        return f"{self.base_url}/{self.backend.tenant_id}/v2.0"

    def token_endpoint(self) -> str:
        return f"{self.base_url}/{self.backend.tenant_id}/oauth2/v2.0/token"

    def _known_tenant(self, tenant: str) -> bool:
        return tenant.lower() in (self.backend.tenant_id.lower(), self.backend.tenant_domain.lower())

    # ---- HTTP endpoints ---------------------------------------------------------------------------------
    def handle(self, req: Request) -> Reply | None:
        """Answer a token-service request, or None when the path is not ours."""
        parts = [p for p in req.path.split("/") if p]
        if len(parts) < 2:
            return None
        tenant, rest = parts[0], "/".join(parts[1:])
        if rest not in ("v2.0/.well-known/openid-configuration", ".well-known/openid-configuration",
                        "discovery/v2.0/keys", "discovery/keys", "oauth2/v2.0/token"):
            return None
        if not self._known_tenant(tenant):
            return self._error_reply(_AadError(400, "invalid_request", 90002,
                                               f"Tenant '{tenant}' not found. Check to make sure you have the "
                                               "correct tenant ID and are signing into the correct cloud."))
        if rest.endswith("openid-configuration") and req.method == "GET":
            return json_reply(200, self.discovery())
        if rest.endswith("keys") and req.method == "GET":
            return json_reply(200, self.jwks())
        if rest == "oauth2/v2.0/token" and req.method == "POST":
            try:
                return json_reply(200, self._token(req), {"Cache-Control": "no-store, no-cache", "Pragma": "no-cache"})
            except _AadError as err:
                return self._error_reply(err)
        return json_reply(405, {"error": "invalid_request", "error_description": "Method not allowed."})

    def discovery(self) -> dict:
        base, tid = self.base_url, self.backend.tenant_id
        return {
            "token_endpoint": self.token_endpoint(),
            "token_endpoint_auth_methods_supported": ["client_secret_post", "private_key_jwt", "client_secret_basic"],
            "jwks_uri": f"{base}/{tid}/discovery/v2.0/keys",
            "response_modes_supported": ["query", "fragment", "form_post"],
            "subject_types_supported": ["pairwise"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
            "scopes_supported": ["openid", "profile", "email", "offline_access"],
            "issuer": self.issuer(),
            "request_uri_parameter_supported": False,
            "userinfo_endpoint": f"{base}/oidc/userinfo",
            "authorization_endpoint": f"{base}/{tid}/oauth2/v2.0/authorize",
            "device_authorization_endpoint": f"{base}/{tid}/oauth2/v2.0/devicecode",
            "http_logout_supported": True,
            "frontchannel_logout_supported": True,
            "end_session_endpoint": f"{base}/{tid}/oauth2/v2.0/logout",
            "claims_supported": ["sub", "iss", "aud", "exp", "iat", "nbf", "tid", "roles", "appid"],
            "tenant_region_scope": "NA",
            "cloud_instance_name": "microsoftonline.com",
            "cloud_graph_host_name": "graph.windows.net",
            "msgraph_host": "graph.microsoft.com",
        }

    def jwks(self) -> dict:
        jwk = RSAAlgorithm.to_jwk(self._key.public_key(), as_dict=True)
        jwk.update({"kid": self.kid, "use": "sig", "alg": "RS256", "issuer": self.issuer()})
        return {"keys": [jwk]}

    def public_key(self):
        return self._key.public_key()

    # ---- the client-credentials grant -------------------------------------------------------------------
    def _token(self, req: Request) -> dict:
        form = {k: v[0] for k, v in parse_qs(req.body.decode("utf-8"), keep_blank_values=True).items()}
        grant = form.get("grant_type", "")
        if not grant:
            raise _AadError(400, "invalid_request", 900144,
                            "The request body must contain the following parameter: 'grant_type'.")
        if grant != "client_credentials":
            raise _AadError(400, "unsupported_grant_type", 70003,
                            f"The app requested an unsupported grant type '{grant}'.")
        client_id, secret = form.get("client_id", ""), form.get("client_secret")
        basic = req.header("authorization")
        if basic.lower().startswith("basic "):
            try:
                user, _, pw = base64.b64decode(basic[6:]).decode("utf-8").partition(":")
                client_id, secret = unquote(user), unquote(pw)
            except (ValueError, UnicodeDecodeError):
                raise _AadError(401, "invalid_client", 7000218, "Malformed Basic authorization header.") from None
        if not client_id:
            raise _AadError(400, "invalid_request", 900144,
                            "The request body must contain the following parameter: 'client_id'.")
        resource = self._resource_of(form.get("scope", ""))
        app = self.backend.app(client_id.strip().lower())
        if app is None:
            raise _AadError(400, "unauthorized_client", 700016,
                            f"Application with identifier '{client_id}' was not found in the directory "
                            f"'{self.backend.tenant_domain}'. This can happen if the application has not been "
                            "installed by the administrator of the tenant or consented to by any user in the "
                            "tenant. You may have sent your authentication request to the wrong tenant.")
        if secret is not None:
            if not any(hmac.compare_digest(secret.encode(), s.encode()) for s in app.secrets):
                raise _AadError(401, "invalid_client", 7000215,
                                "Invalid client secret provided. Ensure the secret being sent in the request is "
                                f"the client secret value, not the client secret ID, for a secret added to app "
                                f"'{app.client_id}'.")
            acr = "1"
        elif form.get("client_assertion"):
            if form.get("client_assertion_type") != ASSERTION_TYPE:
                raise _AadError(400, "invalid_request", 50027,
                                "Invalid client_assertion_type: expected " + ASSERTION_TYPE + ".")
            self._check_assertion(app, form["client_assertion"])
            acr = "2"
        else:
            raise _AadError(401, "invalid_client", 7000218,
                            "The request body must contain the following parameter: 'client_assertion' or "
                            "'client_secret'.")
        access_token, lifetime = self._issue(app, resource, acr)
        return {"token_type": "Bearer", "expires_in": lifetime, "ext_expires_in": lifetime,
                "access_token": access_token}

    def _resource_of(self, scope: str) -> str:
        scopes = [s for s in scope.split() if s not in RESERVED_SCOPES]
        if len(scopes) != 1 or not scopes[0].endswith("/.default"):
            raise _AadError(400, "invalid_scope", 1002012,
                            f"The provided value for scope {scope} is not valid. Client credential flows must have "
                            "a scope value with /.default suffixed to the resource identifier "
                            "(application ID URI).")
        ident = scopes[0][: -len("/.default")].rstrip("/").lower()
        for uri, app_id in RESOURCES.items():
            if ident in (uri, app_id):
                return uri
        raise _AadError(400, "invalid_resource", 500011,
                        f"The resource principal named {ident} was not found in the tenant named "
                        f"{self.backend.tenant_domain}. This can happen if the application has not been installed "
                        "by the administrator of the tenant or consented to by any user in the tenant.")

    def _assertion_audiences(self) -> set[str]:
        out = set()
        for tenant in (self.backend.tenant_id, self.backend.tenant_domain):
            out.add(f"{self.base_url}/{tenant}/oauth2/v2.0/token".lower())
            out.add(f"{self.base_url}/{tenant}/oauth2/token".lower())
        out.add(self.issuer().lower())
        return out

    def _check_assertion(self, app: AppCredentials, assertion: str) -> None:
        try:
            header = jwt.get_unverified_header(assertion)
        except jwt.PyJWTError:
            raise _AadError(401, "invalid_client", 50027, "JWT token is invalid or malformed.") from None
        if header.get("alg") not in ("RS256", "PS256"):
            raise _AadError(401, "invalid_client", 5002738, f"Invalid JWT token. '{header.get('alg')}' not supported.")
        candidates = list(app.certificates)
        # msal sends x5t with base64 padding, others without: compare unpadded.
        if header.get("x5t"):
            want = str(header["x5t"]).rstrip("=")
            candidates = [c for c in candidates if _b64url(c.fingerprint(hashes.SHA1())) == want]
        elif header.get("x5t#S256"):
            want = str(header["x5t#S256"]).rstrip("=")
            candidates = [c for c in candidates if _b64url(c.fingerprint(hashes.SHA256())) == want]
        if not candidates:
            raise _AadError(401, "invalid_client", 700027,
                            "Client assertion failed signature validation. The key was not found: no certificate "
                            f"with this thumbprint is registered for app '{app.client_id}'.")
        claims = None
        for cert in candidates:
            key = cert.public_key()
            if not isinstance(key, rsa.RSAPublicKey):  # RS256/PS256 only: another key type cannot verify
                continue
            try:
                claims = jwt.decode(assertion, key, algorithms=["RS256", "PS256"],
                                    options={"verify_aud": False, "verify_exp": False, "verify_iat": False,
                                             "verify_nbf": False})
                break
            except jwt.PyJWTError:
                continue
        if claims is None:
            raise _AadError(401, "invalid_client", 700027, "Client assertion failed signature validation.")
        if str(claims.get("aud", "")).lower() not in self._assertion_audiences():
            raise _AadError(401, "invalid_client", 700212,
                            f"The audience of the client assertion '{claims.get('aud')}' does not match the token "
                            f"endpoint '{self.token_endpoint()}'.")
        if str(claims.get("iss", "")).lower() != app.client_id or str(claims.get("sub", "")).lower() != app.client_id:
            raise _AadError(401, "invalid_client", 700021,
                            "Client assertion application identifier doesn't match 'client_id' parameter: "
                            "iss and sub must both be the client id.")
        # The assertion is made on the client's wall clock, so it is judged on ours, not the sandbox clock.
        now = time.time()
        exp = claims.get("exp")
        if not isinstance(exp, (int, float)) or exp + CLOCK_SKEW < now or claims.get("nbf", 0) - CLOCK_SKEW > now:
            raise _AadError(401, "invalid_client", 700024, "Client assertion is not within its valid time range.")

    def _issue(self, app: AppCredentials, resource: str, acr: str) -> tuple[str, int]:
        # The state decides the claims that matter (roles, lifetime) and records the issue on its timeline.
        claims = dict(self.backend.issue_claims(app.client_id, resource))
        if not claims.get("roles"):  # Entra leaves the claim out when the app holds no role on the resource
            claims.pop("roles", None)
        wids = sorted({ROLE_TEMPLATE_IDS[r] for r in self.backend.directory_roles(app.client_id)
                       if r in ROLE_TEMPLATE_IDS})
        if wids:
            claims["wids"] = wids
        claims.update({"iss": self.issuer(), "azp": app.client_id, "appidacr": acr, "sub": claims.get("oid", ""),
                       "idtyp": "app", "ver": "1.0", "uti": _b64url(uuid.uuid4().bytes),
                       "app_displayname": app.display_name})
        # The key object, not its PEM: PyJWT would re-load (and re-validate) the PEM on every call, ~70 ms each.
        token = jwt.encode(claims, self._key, algorithm="RS256", headers={"kid": self.kid, "x5t": self.kid})
        return token, max(0, int(claims["exp"]) - int(claims["iat"]))

    # ---- resource-server side ---------------------------------------------------------------------------
    def validate(self, authorization: str, audience: str) -> Caller:
        """Check a `Bearer` header for `audience`; raise TokenRejected (-> 401) when it does not hold."""
        claims = self.verified_claims(authorization, audience)
        client_id = str(claims.get("appid", "")).lower()
        # Directory roles are looked up now (Entra would put them in `wids`; they do not change in the sandbox).
        return Caller(client_id, frozenset(claims.get("roles", ())), self.backend.directory_roles(client_id))

    def verified_claims(self, authorization: str, audience: str) -> dict:
        """The claims of a `Bearer` token valid now for `audience` (signature, audience, tenant, expiry checked);
        raise TokenRejected when it does not hold. The SMTP endpoint needs the claims themselves (iat, roles)."""
        if not authorization:
            raise TokenRejected("invalid_request", "The request has no Authorization header.")
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise TokenRejected("invalid_request", "The Authorization header is not a Bearer token.")
        token = token.strip()
        claims = self._verified.get(token)
        if claims is None:  # an RSA verify costs ~0.3 ms: remember tokens already verified (exp is checked below)
            try:
                claims = jwt.decode(token, self._key.public_key(), algorithms=["RS256"],
                                    options={"verify_aud": False, "verify_exp": False, "verify_iat": False,
                                             "verify_nbf": False})
            except jwt.PyJWTError:
                raise TokenRejected("invalid_token",
                                    "The access token is malformed or its signature is invalid.") from None
            if len(self._verified) >= 4096:
                self._verified.clear()
            self._verified[token] = claims
        aud = str(claims.get("aud", "")).rstrip("/").lower()
        if aud not in (audience, RESOURCES.get(audience, audience)):
            raise TokenRejected("invalid_token", f"The audience '{claims.get('aud')}' is invalid for this resource.")
        if str(claims.get("tid", "")).lower() != self.backend.tenant_id.lower():
            raise TokenRejected("invalid_token", "The token was issued for another tenant.")
        exp = claims.get("exp")
        if not isinstance(exp, (int, float)) or exp <= self.backend.now():
            raise TokenRejected("invalid_token", "The access token has expired.")
        return claims

    # ---- errors -----------------------------------------------------------------------------------------
    def _error_reply(self, err: _AadError) -> Reply:
        trace, corr = str(uuid.uuid4()), str(uuid.uuid4())
        stamp = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M:%SZ")
        desc = f"AADSTS{err.code}: {err.text}\r\nTrace ID: {trace}\r\nCorrelation ID: {corr}\r\nTimestamp: {stamp}"
        return json_reply(err.status, {
            "error": err.error, "error_description": desc, "error_codes": [err.code], "timestamp": stamp,
            "trace_id": trace, "correlation_id": corr, "error_uri": f"{self.base_url}/error?code={err.code}",
        })
