-- replyx gateway: the two relations the gateway reads, and a minimal schema behind them.
--
-- The gateway only ever reads (see gateway/src/access/dialog-access.ts for the exact queries):
--   replyx_dialog_access         by dialog_id (handshakes, and many at once to re-authorize
--                                open connections), by assistant_id (legacy widget handshake only)
--   replyx_revoked_site_tokens   every row, every REAUTH_INTERVAL_MS
-- and LISTENs on replyx_access_changes, so changes reach it at once where triggers notify them
-- (examples/backend/migrations/007_access_changes.sql; docs/gateway.md, "Access changes");
-- without them, changes take effect within ACCESS_CACHE_TTL_MS / REAUTH_INTERVAL_MS.
-- so any schema works once it defines the view `replyx_dialog_access(dialog_id bigint,
-- assistant_id bigint, user_id bigint, allowed_domains text[])`:
--   dialog_id        the dialog a WebSocket attaches to
--   assistant_id     the assistant the dialog belongs to (widget assistant_id / site token assistant_id)
--   user_id          the operator who owns that assistant (admin JWT sub / site token user_id)
--   allowed_domains  hosts allowed to embed the widget: 'example.com' or '*.example.com'
--                    (a wildcard matches subdomains only, not the apex; wildcards over a public
--                    suffix such as '*.com' or '*.github.io' are ignored)
-- and the view `replyx_revoked_site_tokens(jti text)`: the ids of revoked site tokens that have
-- not expired yet (keep it small: drop rows once the token's exp has passed). A schema that
-- issues no site tokens can define it as `SELECT NULL::text AS jti WHERE false`.
-- Connect the gateway as a role of its own with SELECT on these two views and no right on any
-- table (a view runs with its owner's rights): examples/backend/migrations/005_gateway_role.sql.
-- The tables below are the reference schema the gateway tests load; the reference backend
-- (examples/backend) creates the same shape in its migrations. Idempotent.

CREATE TABLE IF NOT EXISTS users (
  id         bigserial PRIMARY KEY,
  email      text UNIQUE,
  created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS assistants (
  id              bigserial PRIMARY KEY,
  user_id         bigint NOT NULL REFERENCES users (id) ON DELETE CASCADE,
  name            text NOT NULL DEFAULT '',
  allowed_domains text[] NOT NULL DEFAULT '{}'
);

CREATE TABLE IF NOT EXISTS dialogs (
  id           bigserial PRIMARY KEY,
  assistant_id bigint NOT NULL REFERENCES assistants (id) ON DELETE CASCADE,
  created_at   timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX IF NOT EXISTS dialogs_assistant_id_idx ON dialogs (assistant_id);

CREATE OR REPLACE VIEW replyx_dialog_access AS
SELECT d.id::bigint           AS dialog_id,
       a.id::bigint           AS assistant_id,
       a.user_id::bigint      AS user_id,
       a.allowed_domains::text[] AS allowed_domains
  FROM dialogs d
  JOIN assistants a ON a.id = d.assistant_id;

CREATE TABLE IF NOT EXISTS site_token_revocations (
  jti        text PRIMARY KEY,
  revoked_at timestamptz NOT NULL DEFAULT now(),
  -- The token's own exp: past it the token is refused anyway, so the row can go.
  expires_at timestamptz NOT NULL
);

CREATE OR REPLACE VIEW replyx_revoked_site_tokens AS
SELECT jti::text AS jti
  FROM site_token_revocations
 WHERE expires_at > now() - interval '1 minute';
