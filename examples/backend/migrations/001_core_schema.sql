-- Core chat schema: users own assistants, assistants own dialogs, dialogs hold messages.
CREATE TABLE users (
  id bigserial PRIMARY KEY,
  email text NOT NULL UNIQUE,
  name text NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE assistants (
  id bigserial PRIMARY KEY,
  user_id bigint NOT NULL REFERENCES users(id) ON DELETE CASCADE,
  name text NOT NULL,
  -- Hosts a widget may be embedded on: exact ("localhost") or one-level wildcard ("*.example.com").
  allowed_domains text[] NOT NULL DEFAULT '{}'
);
CREATE INDEX assistants_user_id_idx ON assistants(user_id);

CREATE TABLE dialogs (
  id bigserial PRIMARY KEY,
  assistant_id bigint NOT NULL REFERENCES assistants(id) ON DELETE CASCADE,
  created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX dialogs_assistant_id_idx ON dialogs(assistant_id);

CREATE TABLE messages (
  id bigserial PRIMARY KEY,
  dialog_id bigint NOT NULL REFERENCES dialogs(id) ON DELETE CASCADE,
  sender text NOT NULL CHECK (sender IN ('operator', 'user', 'site', 'assistant')),
  text text NOT NULL,
  -- The broker's event id (Redis stream id) once published; NULL if publishing failed.
  event_id text,
  created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX messages_dialog_id_id_idx ON messages(dialog_id, id);
