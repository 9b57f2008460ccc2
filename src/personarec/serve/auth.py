"""Who may call the API: service keys for the application backend, signed per-user tokens for the
person a persona is about, an admin scope for erasure on request.

A persona is personal data written about a person, so the defaults are closed:

- **service** (``X-API-Key``): the application backend. Reads recommendations for any user and
  posts events; it cannot read, edit or erase a persona (the user's own token, or an admin, does).
  Keys are configured as SHA-256 digests (``serve.auth.service_key_sha256``, safe to commit) or
  as plain keys in an environment variable (``PERSONAREC_SERVICE_KEYS``, comma-separated).
- **user** (``Authorization: Bearer <JWT>``): a token whose ``sub`` is the user id, signed with
  the configured key (an HMAC secret from ``PERSONAREC_JWT_SECRET``, or an RS256/ES256 public key
  file of your identity provider), with ``exp`` and the configured ``aud``. It reaches only its own
  user: recommendations, persona view, edit and erase.
- **admin**: a token (same key) whose ``scope`` holds ``serve.auth.admin_scope``: every endpoint, any
  user (erasure on request, support).

``/healthz``, ``/metrics`` and the OpenAPI pages carry no personal data and stay open (probes and
scrapers). Authentication is on unless ``serve.auth.mode = "off"``, which the server announces
loudly at start and in ``/healthz``. Tokens are verified with PyJWT (no hand-rolled crypto); keys
are compared in constant time.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal

import jwt
from fastapi import Security
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, ConfigDict, Field, field_validator

from personarec.errors import ConfigError

SERVICE_KEYS_ENV = "PERSONAREC_SERVICE_KEYS"
JWT_SECRET_ENV = "PERSONAREC_JWT_SECRET"
MIN_SECRET_BYTES = 32  # RFC 7518 3.2: an HS256 key at least as long as the hash output
Role = Literal["service", "user", "admin", "dev"]
Action = Literal["topics", "recommend", "events", "persona"]

#: who may do what; ``persona`` covers view, edit and erase. ``own`` = only the token's own user.
POLICY: dict[Action, dict[str, str]] = {
    "topics": {"service": "any", "user": "any", "admin": "any"},
    "recommend": {"service": "any", "user": "own", "admin": "any"},
    "events": {"service": "any", "admin": "any"},
    "persona": {"user": "own", "admin": "any"},
}


class AuthConfig(BaseModel):
    """``[serve.auth]``: credentials of the API. Secrets never live in this file: service keys
    as digests (or plain in an environment variable), the token key in an environment variable or
    a public-key file."""

    model_config = ConfigDict(extra="forbid")

    mode: Literal["on", "off"] = Field(
        "on", description='"off" = no authentication, for local development only (the server warns at start)'
    )
    service_key_sha256: list[str] = Field(
        default_factory=list,
        description="SHA-256 hex digests of the service keys (`personarec auth new-key` prints a key and its digest)",
    )
    service_keys_env: str = Field(SERVICE_KEYS_ENV, description="environment variable with plain service keys, comma-separated")
    jwt_secret_env: str = Field(JWT_SECRET_ENV, description="environment variable with the HMAC secret of user/admin tokens (HS256)")
    jwt_public_key_file: Path | None = Field(
        None, description="PEM public key of your identity provider (RS256/ES256 tokens) instead of an HMAC secret"
    )
    jwt_algorithms: list[str] = Field(
        default_factory=lambda: ["HS256"], description="accepted token algorithms (never 'none')"
    )
    audience: str = Field("personarec", description="required `aud` claim of tokens")
    issuer: str | None = Field(None, description="required `iss` claim (None = not checked)")
    admin_scope: str = Field("personarec:admin", description="scope (in the `scope` claim) that makes a token admin")
    leeway_s: float = Field(30.0, ge=0, description="clock skew allowed on `exp` / `nbf`")

    @field_validator("service_key_sha256")
    @classmethod
    def _digests(cls, v: list[str]) -> list[str]:
        out = [d.strip().lower().removeprefix("sha256:") for d in v]
        for d in out:
            if len(d) != 64 or any(c not in "0123456789abcdef" for c in d):
                raise ValueError(f"service_key_sha256 entry {d[:12]!r}... is not a SHA-256 hex digest")
        return out

    @field_validator("jwt_algorithms")
    @classmethod
    def _algorithms(cls, v: list[str]) -> list[str]:
        if not v or any(a.lower() == "none" for a in v):
            raise ValueError("jwt_algorithms must list real signature algorithms (never 'none')")
        return v


@dataclass(frozen=True)
class Principal:
    """The authenticated caller: its role and, for a token, its subject (the user id)."""

    role: Role
    subject: str | None = None


class AuthError(Exception):
    """401 (no or bad credentials) or 403 (authenticated, not allowed), with a message."""

    def __init__(self, status: int, detail: str, challenge: str | None = None) -> None:
        super().__init__(detail)
        self.status, self.detail = status, detail
        self.headers = {"WWW-Authenticate": challenge} if challenge else {}


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def new_service_key() -> str:
    """A random service key (256 bits, URL-safe)."""
    return "prk_" + secrets.token_urlsafe(32)


def new_jwt_secret() -> str:
    return secrets.token_urlsafe(48)


class Authenticator:
    """Checks credentials against the configured keys; built once per server from the config and
    the environment, so a misconfiguration fails at start, not on the first request."""

    def __init__(self, config: AuthConfig, environ: dict[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        self.config = config
        self.enabled = config.mode == "on"
        plain = [k.strip() for k in env.get(config.service_keys_env, "").split(",") if k.strip()]
        self._digests = [bytes.fromhex(d) for d in config.service_key_sha256] + [bytes.fromhex(hash_key(k)) for k in plain]
        self._key: str | bytes | None = None
        if config.jwt_public_key_file is not None:
            path = Path(config.jwt_public_key_file)
            if not path.is_file():
                raise ConfigError(f"serve.auth.jwt_public_key_file: {path} not found")
            self._key = path.read_bytes()
        elif secret := env.get(config.jwt_secret_env):
            if len(secret.encode()) < MIN_SECRET_BYTES:
                raise ConfigError(
                    f"{config.jwt_secret_env} is {len(secret.encode())} bytes; an HS256 secret needs at least {MIN_SECRET_BYTES} "
                    "(`personarec auth new-secret` prints one)"
                )
            self._key = secret
        if self.enabled and not self._digests and self._key is None:
            raise ConfigError(
                "serve.auth is on but no credentials are configured: add service keys (`personarec auth new-key`, "
                f"then serve.auth.service_key_sha256 or {config.service_keys_env}) and/or a token key "
                f"({config.jwt_secret_env} or serve.auth.jwt_public_key_file); for local development only, "
                "--set serve.auth.mode=off"
            )

    @property
    def summary(self) -> str:
        if not self.enabled:
            return "off"
        return f"on ({len(self._digests)} service keys, user tokens {'on' if self._key is not None else 'off'})"

    def authenticate(self, api_key: str | None, bearer: str | None) -> Principal:
        if not self.enabled:
            return Principal("dev")
        if api_key is not None:
            presented = hashlib.sha256(api_key.encode()).digest()
            # every digest is compared (no early exit), each in constant time
            if sum(hmac.compare_digest(presented, d) for d in self._digests) == 0:
                raise AuthError(401, "invalid API key", 'ApiKey realm="personarec"')
            return Principal("service")
        if bearer is not None:
            return self._token(bearer)
        raise AuthError(
            401,
            "missing credentials: send X-API-Key (the application backend) or Authorization: Bearer <token> (a user or admin)",
            'Bearer realm="personarec"',
        )

    def _token(self, token: str) -> Principal:
        if self._key is None:
            raise AuthError(401, "user tokens are not enabled on this server (no token key configured)", 'Bearer realm="personarec"')
        c = self.config
        try:
            claims = jwt.decode(
                token, self._key, algorithms=c.jwt_algorithms, audience=c.audience, issuer=c.issuer,
                leeway=c.leeway_s, options={"require": ["exp", "sub", "aud"]},
            )  # fmt: skip
        except jwt.ExpiredSignatureError:
            raise AuthError(401, "token expired", 'Bearer error="invalid_token", error_description="expired"') from None
        except jwt.InvalidTokenError as exc:
            raise AuthError(401, f"invalid token: {exc}", 'Bearer error="invalid_token"') from None
        scope = claims.get("scope", "")
        scopes = set(scope.split() if isinstance(scope, str) else scope if isinstance(scope, list) else [])
        return Principal("admin" if c.admin_scope in scopes else "user", str(claims["sub"]))

    def authorize(self, who: Principal, action: Action, user_id: str | None = None) -> None:
        """Raise 403 unless ``who`` may do ``action`` (for ``user_id``)."""
        if who.role == "dev":
            return
        reach = POLICY[action].get(who.role)
        if reach is None:
            hint = " (persona controls need the user's own token or an admin token)" if action == "persona" else ""
            raise AuthError(403, f"{who.role} credentials may not call this endpoint{hint}")
        if reach == "own" and user_id != who.subject:
            raise AuthError(403, f"this token is for user {who.subject!r}; it cannot access user {user_id!r}")

    def mint(self, subject: str, *, admin: bool = False, ttl_s: float = 3600.0, now: float | None = None) -> str:
        """A token signed with the HMAC secret (dev tools, tests, a backend that issues its own);
        an identity provider mints tokens for public-key verification."""
        if not isinstance(self._key, str):
            raise ConfigError(f"minting needs the HMAC secret in {self.config.jwt_secret_env}")
        t = time.time() if now is None else now
        claims = {"sub": subject, "aud": self.config.audience, "iat": int(t), "exp": int(t + ttl_s)}
        if self.config.issuer:
            claims["iss"] = self.config.issuer
        if admin:
            claims["scope"] = self.config.admin_scope
        return jwt.encode(claims, self._key, algorithm="HS256")


# -- FastAPI security schemes: declared in OpenAPI, read without failing (the authenticator decides)
ApiKey = Annotated[
    str | None,
    Security(APIKeyHeader(name="X-API-Key", auto_error=False, scheme_name="ServiceKey", description="service key of the application backend")),
]  # fmt: skip
Bearer = Annotated[
    HTTPAuthorizationCredentials | None,
    Security(HTTPBearer(auto_error=False, scheme_name="UserToken", bearerFormat="JWT", description="user token (sub = user id) or admin token (scope holds the admin scope)")),
]  # fmt: skip
