"""The backend's settings, from the same environment variables as the reference backend
(rendered once by infra/render/service-env.ts): a bad value stops start-up with one line."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from typing import Dict, List, Mapping, Optional

#: The reference backend's configuration error code (docs/errors.md): same variables, same code.
CONFIG_ERROR = "RPX_BACKEND_CONFIG"
MIN_SECRET_LENGTH = 32


@dataclass(frozen=True)
class TokenPolicy:
    """Issuer, admin audience and lifetimes every token is checked against (the gateway's defaults)."""

    issuer: str = "replyx"
    admin_audience: str = "replyx-admin"
    admin_max_ttl_s: int = 86_400
    site_max_ttl_s: int = 30 * 86_400
    widget_ttl_s: int = 900


@dataclass(frozen=True)
class Settings:
    """Everything a worker needs."""

    host: str
    port: int
    workers: int
    database_url: str
    redis_url: str
    jwt_secret: str
    site_token_secret: str
    widget_token_secret: str
    policy: TokenPolicy
    history_length: int
    history_ttl_s: int
    max_body_bytes: int
    #: How long the outbox relay leaves a new row to the request that stored it (ms).
    outbox_claim_delay_ms: int
    #: How often an idle relay looks for rows (ms).
    outbox_poll_ms: int
    #: Longest retry delay of the relay (ms).
    outbox_retry_max_ms: int
    #: Seconds an Idempotency-Key answers retries.
    idempotency_retention_s: int
    #: Seconds Redis and Postgres commands may take.
    command_timeout_s: float
    log_level: str


class ConfigError(Exception):
    """One line naming every bad variable and its fix."""


def load_settings(env: Mapping[str, str] = os.environ) -> Settings:
    """Reads and checks the environment; raises ConfigError listing every problem."""
    problems: List[str] = []

    def text(name: str, default: Optional[str] = None) -> str:
        value = env.get(name) or default
        if value is None:
            problems.append(f"{name}: is required")
            return ""
        return value

    def integer(name: str, low: int, high: int, default: Optional[int]) -> int:
        raw = env.get(name) or None
        if raw is None:
            if default is None:
                problems.append(f"{name}: is required")
                return 0
            return default
        if not raw.isdigit() or not low <= int(raw) <= high:
            problems.append(f"{name}: must be a whole number between {low} and {high} (got {raw!r})")
            return default or 0
        return int(raw)

    def secret(name: str) -> str:
        value = env.get(name) or ""
        if len(value) < MIN_SECRET_LENGTH:
            problems.append(f"{name}: must be {MIN_SECRET_LENGTH}+ characters, the same value as the gateway's")
        return value

    settings = Settings(
        host=text("HOST", "0.0.0.0"),
        port=integer("PORT", 1, 65535, 8000),
        # BACKEND_WORKERS wins over the seed's UVICORN_WORKERS, as in the reference backend.
        workers=integer("BACKEND_WORKERS", 1, 64, None) if env.get("BACKEND_WORKERS") else integer("UVICORN_WORKERS", 1, 64, 4),
        database_url=text("DATABASE_URL"),
        redis_url=text("REDIS_URL"),
        jwt_secret=secret("JWT_SECRET"),
        site_token_secret=secret("SITE_TOKEN_SECRET"),
        widget_token_secret=secret("WIDGET_TOKEN_SECRET"),
        policy=TokenPolicy(
            issuer=text("JWT_ISSUER", TokenPolicy.issuer),
            admin_audience=text("JWT_AUDIENCE", TokenPolicy.admin_audience),
            admin_max_ttl_s=integer("ADMIN_TOKEN_MAX_TTL_S", 60, 30 * 86_400, TokenPolicy.admin_max_ttl_s),
            site_max_ttl_s=integer("SITE_TOKEN_MAX_TTL_S", 60, 365 * 86_400, TokenPolicy.site_max_ttl_s),
            widget_ttl_s=integer("WIDGET_TOKEN_TTL_S", 60, 86_400, TokenPolicy.widget_ttl_s),
        ),
        history_length=integer("HISTORY_LENGTH", 0, 1_000_000, 1000),
        history_ttl_s=integer("HISTORY_TTL_S", 60, 30 * 86_400, 86_400),
        max_body_bytes=integer("MAX_BODY_BYTES", 256, 16 * 1024 * 1024, 64 * 1024),
        outbox_claim_delay_ms=integer("OUTBOX_CLAIM_DELAY_MS", 0, 60_000, 2000),
        outbox_poll_ms=integer("OUTBOX_POLL_MS", 10, 60_000, 500),
        outbox_retry_max_ms=integer("OUTBOX_RETRY_MAX_MS", 100, 600_000, 5000),
        idempotency_retention_s=integer("IDEMPOTENCY_RETENTION_S", 60, 30 * 86_400, 86_400),
        command_timeout_s=integer("COMMAND_TIMEOUT_MS", 100, 60_000, 2000) / 1000,
        log_level=text("LOG_LEVEL", "info"),
    )
    secrets: Dict[str, str] = {"JWT_SECRET": settings.jwt_secret, "SITE_TOKEN_SECRET": settings.site_token_secret, "WIDGET_TOKEN_SECRET": settings.widget_token_secret}
    if len(set(secrets.values())) < 3 and all(secrets.values()):
        problems.append("SITE_TOKEN_SECRET/WIDGET_TOKEN_SECRET: must differ from each other and from JWT_SECRET")
    if problems:
        raise ConfigError(f"error {CONFIG_ERROR}: " + "; ".join(problems) + " — fix these variables (see docs/python.md)")
    return settings


def settings_or_exit() -> Settings:
    """The settings, or exit 1 with the one-line error on stderr."""
    try:
        return load_settings()
    except ConfigError as err:
        print(str(err), file=sys.stderr)
        raise SystemExit(1) from None
