-- Issue 13. Stored means published: a message and its outbox row are written in one transaction,
-- and a relay publishes each row (FCALL replyx_publish, idempotency key "message:<id>:<created_at>") until it
-- succeeds, then deletes it. A Redis outage delays events instead of refusing stored messages.
CREATE TABLE message_outbox (
  message_id bigint PRIMARY KEY REFERENCES messages(id) ON DELETE CASCADE,
  created_at timestamptz NOT NULL DEFAULT now(),
  -- The relay takes a row once this has passed: the writing request publishes first, the relay
  -- is the fallback (and retries with backoff after failures).
  next_attempt_at timestamptz NOT NULL DEFAULT now(),
  attempts integer NOT NULL DEFAULT 0,
  last_error text
);
CREATE INDEX message_outbox_next_attempt_at_idx ON message_outbox (next_attempt_at);

-- Idempotency-Key of public POSTs: a retry with the same key (same caller, same dialog) answers
-- the first result instead of storing again. Rows older than the retention window are ignored
-- and deleted by the relay.
CREATE TABLE idempotency_keys (
  -- Who and where: "<kind>:<credential subject>:dialog:<id>", so two callers never share a key.
  scope text NOT NULL,
  key text NOT NULL,
  -- SHA-256 of the route and body: the same key with another request is refused (422).
  request_hash bytea NOT NULL,
  -- Set in the same transaction as the message it created.
  message_id bigint REFERENCES messages(id) ON DELETE CASCADE,
  created_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (scope, key)
);
CREATE INDEX idempotency_keys_created_at_idx ON idempotency_keys (created_at);
