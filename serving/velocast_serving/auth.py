"""API keys and the two roles: ``predict`` (clients such as DAG 2) and ``admin`` (everything).

Keys come from settings (``VELOCAST_SERVING_PREDICT_API_KEYS``, a JSON list, and
``VELOCAST_SERVING_ADMIN_API_KEY``), sent as ``X-API-Key: <key>`` or ``Authorization: Bearer <key>``.
Every comparison goes through ``hmac.compare_digest`` and every configured key is compared, so the
time taken says nothing about which key (or how much of one) matched.

401: no key or an unknown key; 403: a valid key whose role is not enough for the route. The routes
declare their role with ``velocast_serving.api.deps.PredictRole`` / ``AdminRole``.
"""

from __future__ import annotations

import hmac
import logging
import re
from collections.abc import Callable, Coroutine, Iterable, Sequence
from enum import StrEnum
from typing import Annotated, Any, Final

from fastapi import Depends, HTTPException, Request, status
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from pydantic import SecretStr

from velocast.errors import ConfigurationError
from velocast.settings import VelocastSettings

log = logging.getLogger(__name__)

MIN_KEY_LENGTH: Final = 16
# Values that show up in tutorials and .env templates; compared lower-cased and stripped.
PLACEHOLDER_KEYS: Final = frozenset(
    {"", "admin", "changeme", "change-me", "change_me", "secret", "password", "default", "test", "token"}
)
_PLACEHOLDER_PATTERN: Final = re.compile(
    r"change.?me|placeholder|your.?(api.?)?key|example|xxxx", re.IGNORECASE
)


class Role(StrEnum):
    PREDICT = "predict"
    ADMIN = "admin"


class InsecureSettingsError(ConfigurationError, RuntimeError):
    """The sidecar refuses to start with these settings (a missing or placeholder admin key)."""


def _plain(value: SecretStr | str | None) -> str:
    # model_copy(update=...) does not validate: tests and callers may hand over plain strings.
    if value is None:
        return ""
    return value.get_secret_value() if isinstance(value, SecretStr) else str(value)


def key_weakness(key: str) -> str | None:
    """Why ``key`` is unfit as an API key (admin or predict), or None."""
    if not key.strip():
        return "is empty"
    if key.strip().lower() in PLACEHOLDER_KEYS or _PLACEHOLDER_PATTERN.search(key):
        return "is a placeholder"
    if len(key) < MIN_KEY_LENGTH:
        return f"is shorter than {MIN_KEY_LENGTH} characters"
    if len(set(key)) < 4:
        return "repeats too few characters"
    return None


class ApiKeys:
    """The configured keys; ``role_of`` maps a presented key to its role."""

    def __init__(self, admin_key: str, predict_keys: Sequence[str]) -> None:
        self._admin = admin_key.encode() if admin_key else None
        self._predict = [key.encode() for key in predict_keys if key]

    @classmethod
    def from_settings(cls, settings: VelocastSettings) -> ApiKeys:
        """The keys of ``settings``; raises ``InsecureSettingsError`` on a weak admin or predict key.

        ``serving_local_dev`` allows a placeholder admin key; an *empty* one then disables the
        admin role instead of opening it.
        """
        admin = _plain(settings.serving_admin_api_key)
        predict = [_plain(key) for key in settings.serving_predict_api_keys]
        weakness = key_weakness(admin)
        if weakness is not None:
            if not settings.serving_local_dev:
                raise InsecureSettingsError(
                    f"refusing to start: the admin API key (VELOCAST_SERVING_ADMIN_API_KEY) {weakness}. "
                    f"Set a random key of at least {MIN_KEY_LENGTH} characters, e.g. "
                    "`python -c 'import secrets; print(secrets.token_urlsafe(32))'`, or "
                    "VELOCAST_SERVING_LOCAL_DEV=true for local development only."
                )
            log.warning("local development: the admin API key %s", weakness)
        for position, key in enumerate(predict):
            weakness = key_weakness(key)
            if weakness is None:
                continue
            if not settings.serving_local_dev:
                raise InsecureSettingsError(
                    f"refusing to start: predict API key #{position + 1} "
                    f"(VELOCAST_SERVING_PREDICT_API_KEYS) {weakness}. Predict keys follow the admin "
                    f"key's rule: random, at least {MIN_KEY_LENGTH} characters."
                )
            log.warning("local development: predict API key #%d %s", position + 1, weakness)
        if admin and any(hmac.compare_digest(admin.encode(), key.encode()) for key in predict if key):
            raise InsecureSettingsError(
                "refusing to start: a predict API key equals the admin API key (it would grant admin)"
            )
        return cls(admin, predict)

    def role_of(self, presented: str) -> Role | None:
        # Bytes: compare_digest raises TypeError on non-ASCII str, which a header can carry.
        candidate = presented.encode("utf-8", "surrogateescape")
        is_admin = self._admin is not None and hmac.compare_digest(candidate, self._admin)
        is_predict = False
        for key in self._predict:
            is_predict |= hmac.compare_digest(candidate, key)
        if is_admin:
            return Role.ADMIN
        return Role.PREDICT if is_predict else None


# auto_error=False: a missing key is our 401 with our message, and both schemes show in OpenAPI.
_api_key_header = APIKeyHeader(name="X-API-Key", auto_error=False, description="an API key")
_bearer = HTTPBearer(auto_error=False, description="an API key as a bearer token")

ApiKeyHeader = Annotated[str | None, Depends(_api_key_header)]
BearerToken = Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]

_UNAUTHORIZED_HEADERS: Final = {"WWW-Authenticate": "Bearer"}
MISSING_KEY: Final = "missing API key: send X-API-Key or Authorization: Bearer"
INVALID_KEY: Final = "invalid API key"


def presented_key(headers: Iterable[tuple[bytes, bytes]]) -> str | None:
    """The key of raw ASGI headers, read as ``require`` reads it (X-API-Key first, then Bearer)."""
    api_key = bearer = None
    for name, value in headers:
        if name == b"x-api-key" and api_key is None:
            api_key = value.decode("latin-1")
        elif name == b"authorization" and bearer is None:
            scheme, _, credentials = value.decode("latin-1").partition(" ")
            if scheme.lower() == "bearer" and credentials:
                bearer = credentials
    return api_key or bearer or None


def require(*roles: Role) -> Callable[..., Coroutine[Any, Any, Role]]:
    """A dependency that lets through the keys of ``roles`` (admin always passes).

    async: it only compares keys, and FastAPI would run a plain function in the thread pool.
    """
    allowed = {*roles, Role.ADMIN}

    async def check(request: Request, api_key: ApiKeyHeader, bearer: BearerToken) -> Role:
        keys: ApiKeys = request.app.state.context.api_keys
        presented = api_key if api_key else (bearer.credentials if bearer is not None else None)
        if not presented:
            raise HTTPException(
                status.HTTP_401_UNAUTHORIZED,
                MISSING_KEY,
                headers=_UNAUTHORIZED_HEADERS,
            )
        role = keys.role_of(presented)
        if role is None:
            raise HTTPException(status.HTTP_401_UNAUTHORIZED, INVALID_KEY, headers=_UNAUTHORIZED_HEADERS)
        if role not in allowed:
            needed = " or ".join(sorted(allowed))
            raise HTTPException(status.HTTP_403_FORBIDDEN, f"this route needs the {needed} role")
        return role

    return check
