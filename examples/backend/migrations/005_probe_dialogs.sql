-- Probe dialogs: where `npm run health` sends its synthetic messages, so users' dialogs never
-- receive them; their messages may be deleted by the assistant's owner (the probe cleans up).
ALTER TABLE dialogs ADD COLUMN IF NOT EXISTS probe boolean NOT NULL DEFAULT false;
