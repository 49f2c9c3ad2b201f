"""Who may use the dashboard: HTTP Basic with hashed passwords or a bearer token, the
CSRF token of the page's forms, and the rule that refuses to listen beyond this host
without either.

Passwords are hashed with the standard library's ``hashlib.scrypt`` (memory-hard, no extra
dependency): ``scrypt$<n>$<r>$<p>$<salt hex>$<hash hex>``, made by :func:`hash_password`
(``python -m dyrygent.web hash-password``). CSRF tokens are HMACs of a random nonce under a
per-process key (the standard library's ``hmac``; no itsdangerous needed for one token).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from dyrygent.errors import ConfigurationError

__all__ = ["Auth", "CsrfTokens", "check_bind", "hash_password", "verify_password"]

_N, _R, _P = 2**14, 8, 1
LOCAL_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
HOW_TO = (
    "configure authentication: HTTP Basic users with hashed passwords "
    "(app.conf.dyrygent_web_users = {'alice': '<hash>'} or DYRYGENT_WEB_USERS='alice:<hash>', "
    "hashes from `python -m dyrygent.web hash-password`), or a bearer token "
    "(app.conf.dyrygent_web_token or DYRYGENT_WEB_TOKEN)"
)


def hash_password(password: str, salt: bytes | None = None) -> str:
    """The stored form of ``password`` (scrypt, random salt)."""
    salt = salt or os.urandom(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=_N, r=_R, p=_P, dklen=32)
    return f"scrypt${_N}${_R}${_P}${salt.hex()}${digest.hex()}"


def verify_password(password: str, stored: str) -> bool:
    """Whether ``password`` matches ``stored`` (a :func:`hash_password` string); false for
    a malformed one."""
    try:
        kind, n, r, p, salt, digest = stored.split("$")
        if kind != "scrypt":
            return False
        got = hashlib.scrypt(
            password.encode(), salt=bytes.fromhex(salt), n=int(n), r=int(r), p=int(p), dklen=32
        )
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(got.hex(), digest)


@dataclass
class Auth:
    """The configured credentials (none: anyone on this host may use the dashboard)."""

    users: dict[str, str] = field(default_factory=dict)
    token: str | None = None
    _verified: dict[tuple[str, str], bool] = field(default_factory=dict, repr=False)

    @classmethod
    def from_config(cls, conf: Mapping[str, Any], environ: Mapping[str, str]) -> Auth:
        """Users and token from the app's config, else from the environment
        (``DYRYGENT_WEB_USERS="alice:<hash>,bob:<hash>"``, ``DYRYGENT_WEB_TOKEN``)."""
        users = dict(conf.get("dyrygent_web_users") or {})
        if not users and environ.get("DYRYGENT_WEB_USERS"):
            for item in environ["DYRYGENT_WEB_USERS"].split(","):
                user, sep, hashed = item.strip().partition(":")
                if not sep or not user:
                    raise ConfigurationError(
                        f"DYRYGENT_WEB_USERS: {item!r} is not user:<hash>; {HOW_TO}"
                    )
                users[user] = hashed
        token = conf.get("dyrygent_web_token") or environ.get("DYRYGENT_WEB_TOKEN") or None
        return cls(users, token)

    @property
    def enabled(self) -> bool:
        return bool(self.users or self.token)

    def check(self, header: str | None) -> str | None:
        """The user an Authorization header proves (``"token"`` for the bearer token), or
        None. Verified Basic pairs are remembered (hashed, at most 1,000) so scrypt runs once
        per good pair; every wrong password pays scrypt's cost."""
        if not header:
            return None
        scheme, _, value = header.partition(" ")
        scheme = scheme.lower()
        if scheme == "bearer" and self.token:
            return "token" if hmac.compare_digest(value.strip(), self.token) else None
        if scheme != "basic" or not self.users:
            return None
        try:
            user, _, password = base64.b64decode(value.strip()).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            return None
        stored = self.users.get(user)
        if stored is None:
            return None
        key = (user, hashlib.sha256(f"{stored}\0{password}".encode()).hexdigest())
        if key in self._verified:
            return user
        if not verify_password(password, stored):  # failures are not kept: no memory to fill
            return None
        if len(self._verified) >= 1000:
            self._verified.clear()
        self._verified[key] = True
        return user


class CsrfTokens:
    """Tokens the page sends back in ``X-CSRF-Token`` (and as a cookie): HMACs of a nonce."""

    def __init__(self, key: bytes | None = None) -> None:
        self.key = key or secrets.token_bytes(32)

    def new(self) -> str:
        nonce = secrets.token_hex(16)
        return f"{nonce}.{self._mac(nonce)}"

    def valid(self, token: str | None, cookie: str | None) -> bool:
        """The header's token is one of ours and equals the cookie's."""
        if not token or not cookie or not hmac.compare_digest(token, cookie):
            return False
        nonce, _, mac = token.partition(".")
        return hmac.compare_digest(mac, self._mac(nonce))

    def _mac(self, nonce: str) -> str:
        return hmac.new(self.key, nonce.encode(), hashlib.sha256).hexdigest()


def check_bind(host: str, auth: Auth) -> None:
    """Refuse to listen on ``host`` beyond this machine without authentication."""
    if host not in LOCAL_HOSTS and not auth.enabled:
        raise ConfigurationError(
            f"refusing to serve the dashboard on {host} without authentication: anyone who "
            f"can reach it could cancel or start workflows. Either bind to 127.0.0.1 "
            f"(the default), or {HOW_TO}"
        )
