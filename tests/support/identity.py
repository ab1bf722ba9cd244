"""A tenant's identity provider for tests: RSA signing keys, a JWKS served on loopback, and tokens to order."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

from local._http_fake import FakeRequest, FakeResponse, LoopbackFake


class FakeIdentityProvider(LoopbackFake):
    def __init__(self, issuer: str = "https://login.acme.example/", audience: str = "docuchat") -> None:
        super().__init__()
        self.issuer = issuer
        self.audience = audience
        self.keys: dict[str, Any] = {}
        self.fetches = 0
        self.junk = False
        self.rotate()

    @property
    def jwks_url(self) -> str:
        return f"{self.root_url}/.well-known/jwks.json"

    def rotate(self) -> str:
        """A new signing key (kid), published beside the old ones; returns its kid."""
        kid = uuid.uuid4().hex[:8]
        self.keys[kid] = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.current = kid
        return kid

    def token(self, key: Any = None, kid: str | None = None, algorithm: str = "RS256", **claims: Any) -> str:
        now = int(time.time())
        payload = {"iss": self.issuer, "aud": self.audience, "sub": "user-1", "iat": now, "exp": now + 600}
        payload.update(claims)
        kid = kid or self.current
        signing_key = key if key is not None else self.keys[kid]
        return jwt.encode(payload, signing_key, algorithm=algorithm, headers={"kid": kid})

    def handle(self, request: FakeRequest) -> FakeResponse:
        self.fetches += 1
        if self.junk:
            return FakeResponse(200, {"not": "a jwks"})
        entries = []
        for kid, private in self.keys.items():
            entry = json.loads(RSAAlgorithm.to_jwk(private.public_key()))
            entries.append({**entry, "kid": kid, "use": "sig", "alg": "RS256"})
        return FakeResponse(200, {"keys": entries})
