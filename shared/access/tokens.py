"""JWTs from a tenant's own identity provider, beside API keys.

A tenant trusts its issuer (PATCH /v1/admin/tenants/{id} {"jwt": {issuer, jwks_url, audience}}); an issuer
belongs to one tenant, so a token's `iss` names the tenant. A token is accepted only when:

- its algorithm is an asymmetric one (RS*, PS*, ES*, EdDSA): `none` and the HMAC ones are refused, so the
  public key can never serve as a shared secret;
- its signature checks against a key of the tenant's JWKS (cached; fetched again, at most every 30 s, when a
  token names a key id it does not know: that is how key rotation shows up);
- `iss` is the tenant's issuer, `aud` its audience, and `exp` / `nbf` hold, with a minute of leeway.

Scopes come from `scope` (space-separated) or `scp` (a list or a string).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from shared.data.outbound import OutboundHttp, UnsafeUrl
from shared.errors import Unauthorized
from shared.models import Tenant

ALLOWED_ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA")
LEEWAY_SECONDS = 60
JWKS_TTL_SECONDS = 600
JWKS_REFETCH_SECONDS = 30  # the least time between two fetches of one JWKS, however many unknown kids come


class IssuerLookup(Protocol):
    def tenant_for_issuer(self, issuer: str) -> Tenant | None: ...


def looks_like_jwt(credential: str) -> bool:
    return credential.count(".") == 2 and credential.startswith("ey")


@dataclass
class _Jwks:
    keys: dict[str, Any]  # kid -> a key PyJWT can verify with
    fetched_at: float


class JwksCache:
    def __init__(self, http: OutboundHttp, clock: Callable[[], float] = time.monotonic) -> None:
        self._http = http
        self._clock = clock
        self._lock = threading.Lock()
        self._by_url: dict[str, _Jwks] = {}

    def key(self, url: str, kid: str | None) -> Any:
        cached = self._by_url.get(url)
        now = self._clock()
        stale = cached is None or now - cached.fetched_at > JWKS_TTL_SECONDS
        unknown = cached is not None and kid not in cached.keys
        if stale or (unknown and now - cached.fetched_at > JWKS_REFETCH_SECONDS):  # type: ignore[union-attr]
            cached = self._fetch(url)
        assert cached is not None
        if kid is None and len(cached.keys) == 1:
            return next(iter(cached.keys.values()))
        if kid not in cached.keys:
            raise Unauthorized("the token's signing key is not in the issuer's JWKS")
        return cached.keys[kid]

    def _fetch(self, url: str) -> _Jwks:
        import jwt  # with cryptography, ~130 ms: paid by the first JWT, not by every cold start

        try:
            document = self._http.get_json(url)
            key_set = jwt.PyJWKSet.from_dict(document)
        except UnsafeUrl as error:
            raise Unauthorized(f"the issuer's JWKS URL is refused: {error}") from error
        except Exception as error:  # a JWKS that times out, is junk, or holds no usable key
            raise Unauthorized(f"the issuer's JWKS could not be read: {type(error).__name__}") from error
        keys = {k.key_id or "": k.key for k in key_set.keys}
        fetched = _Jwks(keys=keys, fetched_at=self._clock())
        with self._lock:
            self._by_url[url] = fetched
        return fetched


@dataclass(frozen=True)
class VerifiedToken:
    tenant: Tenant
    subject: str
    scopes: frozenset[str]


class TokenVerifier:
    def __init__(self, issuers: IssuerLookup, jwks: JwksCache) -> None:
        self._issuers = issuers
        self._jwks = jwks

    def verify(self, token: str) -> VerifiedToken:
        import jwt

        try:
            header = jwt.get_unverified_header(token)
            unverified = jwt.decode(token, options={"verify_signature": False})
        except jwt.PyJWTError as error:
            raise Unauthorized("the token is not a well-formed JWT") from error
        algorithm = header.get("alg")
        if algorithm not in ALLOWED_ALGORITHMS:
            raise Unauthorized(f"tokens signed with {algorithm!r} are refused: use an asymmetric algorithm")
        issuer = unverified.get("iss")
        tenant = self._issuers.tenant_for_issuer(issuer) if isinstance(issuer, str) and issuer else None
        if tenant is None or tenant.jwt is None or tenant.jwt.issuer != issuer:
            raise Unauthorized("the token's issuer is not trusted by any tenant")
        key = self._jwks.key(tenant.jwt.jwks_url, header.get("kid"))
        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=[algorithm],
                audience=tenant.jwt.audience,
                issuer=tenant.jwt.issuer,
                leeway=LEEWAY_SECONDS,
                options={"require": ["exp", "iss", "aud", "sub"]},
            )
        except jwt.ExpiredSignatureError as error:
            raise Unauthorized("the token has expired") from error
        except jwt.PyJWTError as error:
            raise Unauthorized(f"the token is not valid: {error}") from error
        return VerifiedToken(tenant=tenant, subject=str(claims["sub"]), scopes=_scopes(claims))


def _scopes(claims: dict[str, Any]) -> frozenset[str]:
    raw = claims.get("scope", claims.get("scp", ""))
    if isinstance(raw, str):
        return frozenset(raw.split())
    if isinstance(raw, list):
        return frozenset(str(scope) for scope in raw)
    return frozenset()
