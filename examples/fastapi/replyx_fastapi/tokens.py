"""The credential contract of gateway/src/auth/tokens.ts, verified and signed with PyJWT: three
kinds, three keys, three audiences, HS256 only, ``iss``/``iat``/``exp`` required, lifetimes
bounded, 5 s of clock skew for ``iat``. Tokens this module signs pass the gateway and back."""

from __future__ import annotations

import re
import time
import uuid
from dataclasses import dataclass
from typing import Any, Dict, Optional, Union

import jwt

from .access import origin_host
from .config import TokenPolicy

TOKEN_TYPE = {"admin": "access", "site": "site", "widget": "widget"}
SITE_AUDIENCE = "replyx-site"
WIDGET_AUDIENCE = "replyx-widget"
CLOCK_TOLERANCE_S = 5
_ID = re.compile(r"\d{1,16}")
_JTI = re.compile(r"[A-Za-z0-9._:-]{8,128}")
MAX_SAFE_INTEGER = 2**53 - 1


@dataclass(frozen=True)
class Identity:
    """What a verified token says: its kind and the claims the access check needs."""

    kind: str
    exp: int
    user_id: Optional[int] = None
    assistant_id: Optional[int] = None
    dialog_id: Optional[int] = None
    jti: Optional[str] = None
    origin: Optional[str] = None


class TokenRefused(Exception):
    """Why a token was refused: missing, expired, invalid, wrong-type, claims, lifetime."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _id_claim(value: Any) -> int:
    if isinstance(value, bool):
        raise TokenRefused("claims")
    if isinstance(value, str) and _ID.fullmatch(value):
        value = int(value)
    if not isinstance(value, int) or not 1 <= value <= MAX_SAFE_INTEGER:
        raise TokenRefused("claims")
    return value


def _jti(value: Any) -> str:
    if not isinstance(value, str) or not _JTI.fullmatch(value):
        raise TokenRefused("claims")
    return value


class Tokens:
    """Verifies the three kinds of token and signs site and widget tokens."""

    def __init__(self, jwt_secret: str, site_secret: str, widget_secret: str, policy: TokenPolicy) -> None:
        self._policy = policy
        self._keys = {
            "admin": (jwt_secret, policy.admin_audience, policy.admin_max_ttl_s),
            "site": (site_secret, SITE_AUDIENCE, policy.site_max_ttl_s),
            "widget": (widget_secret, WIDGET_AUDIENCE, policy.widget_ttl_s),
        }

    def _claims(self, kind: str, token: Optional[str]) -> Dict[str, Any]:
        if not token:
            raise TokenRefused("missing")
        secret, audience, max_ttl = self._keys[kind]
        try:
            claims = jwt.decode(
                token,
                secret,
                algorithms=["HS256"],
                audience=audience,
                issuer=self._policy.issuer,
                options={"require": ["exp", "iat", "iss", "aud"], "verify_iat": False},
            )
        except jwt.ExpiredSignatureError:
            raise TokenRefused("expired") from None
        except (jwt.InvalidAudienceError, jwt.InvalidIssuerError, jwt.MissingRequiredClaimError, jwt.ImmatureSignatureError):
            raise TokenRefused("claims") from None
        except jwt.InvalidTokenError:
            raise TokenRefused("invalid") from None
        now = time.time()
        exp, iat = claims["exp"], claims["iat"]
        if not isinstance(exp, (int, float)) or not isinstance(iat, (int, float)):
            raise TokenRefused("claims")
        if exp <= now:
            raise TokenRefused("expired")
        if iat > now + CLOCK_TOLERANCE_S:
            raise TokenRefused("claims")
        if exp - iat > max_ttl:
            raise TokenRefused("lifetime")
        if claims.get("type") != TOKEN_TYPE[kind]:
            raise TokenRefused("wrong-type")
        return claims

    def verify(self, kind: str, token: Optional[str]) -> Identity:
        """The identity of a ``kind`` token; raises TokenRefused."""
        c = self._claims(kind, token)
        exp = int(c["exp"])
        if kind == "admin":
            sub = c.get("sub")
            if not isinstance(sub, str) or not _ID.fullmatch(sub):
                raise TokenRefused("claims")
            return Identity("admin", exp, user_id=int(sub))
        if kind == "site":
            dialog = c.get("dialog_id")
            return Identity(
                "site", exp, user_id=_id_claim(c.get("user_id")), assistant_id=_id_claim(c.get("assistant_id")),
                dialog_id=None if dialog is None else _id_claim(dialog), jti=_jti(c.get("jti")),
            )
        origin = c.get("origin")
        if not isinstance(origin, str) or len(origin) > 2048 or origin_host(origin) is None:
            raise TokenRefused("claims")
        return Identity(
            "widget", exp, assistant_id=_id_claim(c.get("assistant_id")), dialog_id=_id_claim(c.get("dialog_id")),
            jti=_jti(c.get("jti")), origin=origin,
        )

    def _sign(self, kind: str, claims: Dict[str, Any], ttl_s: int) -> Dict[str, Union[str, int]]:
        secret, audience, max_ttl = self._keys[kind]
        if not 1 <= ttl_s <= max_ttl:
            raise ValueError(f"{kind} token lifetime must be 1-{max_ttl} s, got {ttl_s}")
        iat = int(time.time())
        payload = {**claims, "iss": self._policy.issuer, "aud": audience, "iat": iat, "exp": iat + ttl_s}
        return {"token": jwt.encode(payload, secret, algorithm="HS256"), "jti": claims["jti"], "exp": iat + ttl_s}

    def sign_widget(self, dialog_id: int, assistant_id: int, origin: str) -> Dict[str, Union[str, int]]:
        """A widget session token bound to one dialog, assistant and page origin."""
        claims = {"type": "widget", "jti": str(uuid.uuid4()), "dialog_id": dialog_id, "assistant_id": assistant_id, "origin": origin}
        return self._sign("widget", claims, self._policy.widget_ttl_s)

    def sign_site(self, user_id: int, assistant_id: int, dialog_id: Optional[int], ttl_s: int) -> Dict[str, Union[str, int]]:
        """A site token for an operator's assistant (optionally one dialog)."""
        claims: Dict[str, Any] = {"type": "site", "jti": str(uuid.uuid4()), "user_id": user_id, "assistant_id": assistant_id}
        if dialog_id is not None:
            claims["dialog_id"] = dialog_id
        return self._sign("site", claims, ttl_s)


def claimed_kind(token: str) -> Optional[str]:
    """The kind a token claims (unverified ``type``), to pick its verifier on shared routes."""
    try:
        kind = jwt.decode(token, options={"verify_signature": False}).get("type")
    except jwt.InvalidTokenError:
        return None
    return next((k for k, v in TOKEN_TYPE.items() if v == kind), None)
