-- Credentials (issue 12): widget sessions resume a dialog by its visitor key, stored only as a
-- SHA-256 hash; site tokens are registered when issued (who may revoke them) and revoked by id.

ALTER TABLE dialogs ADD COLUMN visitor_key_hash bytea;
CREATE UNIQUE INDEX dialogs_visitor_key_hash_idx ON dialogs (visitor_key_hash) WHERE visitor_key_hash IS NOT NULL;

-- Every site token POST /api/site-tokens issued (the demo seed registers its three).
CREATE TABLE site_tokens (
  jti text PRIMARY KEY,
  user_id bigint NOT NULL REFERENCES users(id) ON DELETE CASCADE,
  assistant_id bigint NOT NULL REFERENCES assistants(id) ON DELETE CASCADE,
  -- NULL: every dialog of the assistant; else only this one.
  dialog_id bigint REFERENCES dialogs(id) ON DELETE CASCADE,
  issued_at timestamptz NOT NULL DEFAULT now(),
  expires_at timestamptz NOT NULL
);
CREATE INDEX site_tokens_user_id_idx ON site_tokens(user_id);

-- Revoked site token ids until the token would have expired anyway.
CREATE TABLE site_token_revocations (
  jti text PRIMARY KEY,
  revoked_at timestamptz NOT NULL DEFAULT now(),
  expires_at timestamptz NOT NULL
);
CREATE INDEX site_token_revocations_expires_at_idx ON site_token_revocations(expires_at);

-- The second relation the ws-gateway reads: revoked ids that still matter (a minute of slack
-- for clock skew). Other backends define the same view over their own revocation store.
CREATE VIEW replyx_revoked_site_tokens AS
SELECT jti::text AS jti
FROM site_token_revocations
WHERE expires_at > now() - interval '1 minute';
