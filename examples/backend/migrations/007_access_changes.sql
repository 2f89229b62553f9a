-- Access change signal: whoever writes the tables behind the gateway's two views (this backend,
-- a person in psql) makes Postgres NOTIFY the channel the ws-gateway LISTENs on, with what
-- changed, so a revocation reaches open sockets and handshakes at once instead of within
-- REAUTH_INTERVAL_MS / ACCESS_CACHE_TTL_MS (docs/gateway.md, "Access changes"). The channel's
-- name is the gateway's ACCESS_CHANGES_CHANNEL (gateway/src/access/access-changes.ts); its tests
-- load this file and hold the two to each other. Payloads: {"dialog_id":N}, {"assistant_id":N},
-- {"site_token":"jti"}, or empty (anything may have changed: TRUNCATE). Notifications are sent
-- at commit, and identical ones of one transaction only once. LISTEN needs no privilege, so the
-- gateway's role (005) needs nothing more.

CREATE FUNCTION replyx_notify_access_change(payload text) RETURNS void
LANGUAGE sql AS $$ SELECT pg_notify('replyx_access_changes', payload) $$;

-- A row behind replyx_dialog_access changed: its id is sent under the key the trigger names
-- (TG_ARGV[0]), and its new id too when it was renumbered. Dialogs: moved to another assistant,
-- renumbered or deleted; new dialogs send nothing (they revoke nothing, and NOTIFY serialises
-- the commits that send one). Assistants: owner or allowed domains changed, renumbered or
-- deleted (its dialogs' cascaded deletes notify for themselves too).
CREATE FUNCTION replyx_access_row_changed() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  PERFORM replyx_notify_access_change(json_build_object(TG_ARGV[0], OLD.id)::text);
  IF TG_OP = 'UPDATE' AND NEW.id IS DISTINCT FROM OLD.id THEN
    PERFORM replyx_notify_access_change(json_build_object(TG_ARGV[0], NEW.id)::text);
  END IF;
  RETURN NULL;
END
$$;

CREATE TRIGGER replyx_dialogs_access_update AFTER UPDATE ON dialogs
FOR EACH ROW WHEN (OLD.id IS DISTINCT FROM NEW.id OR OLD.assistant_id IS DISTINCT FROM NEW.assistant_id)
EXECUTE FUNCTION replyx_access_row_changed('dialog_id');
CREATE TRIGGER replyx_dialogs_access_delete AFTER DELETE ON dialogs
FOR EACH ROW EXECUTE FUNCTION replyx_access_row_changed('dialog_id');

CREATE TRIGGER replyx_assistants_access_update AFTER UPDATE ON assistants
FOR EACH ROW WHEN (OLD.id IS DISTINCT FROM NEW.id OR OLD.user_id IS DISTINCT FROM NEW.user_id OR OLD.allowed_domains IS DISTINCT FROM NEW.allowed_domains)
EXECUTE FUNCTION replyx_access_row_changed('assistant_id');
CREATE TRIGGER replyx_assistants_access_delete AFTER DELETE ON assistants
FOR EACH ROW EXECUTE FUNCTION replyx_access_row_changed('assistant_id');

-- A site token revoked (insert), or a revocation changed or removed.
CREATE FUNCTION replyx_site_token_revocations_changed() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  IF TG_OP <> 'INSERT' THEN
    PERFORM replyx_notify_access_change(json_build_object('site_token', OLD.jti)::text);
  END IF;
  IF TG_OP <> 'DELETE' THEN
    PERFORM replyx_notify_access_change(json_build_object('site_token', NEW.jti)::text);
  END IF;
  RETURN NULL;
END
$$;

CREATE TRIGGER replyx_site_token_revocations_access AFTER INSERT OR UPDATE OR DELETE ON site_token_revocations
FOR EACH ROW EXECUTE FUNCTION replyx_site_token_revocations_changed();

-- TRUNCATE fires no row trigger: an empty payload says anything may have changed.
CREATE FUNCTION replyx_access_truncated() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  PERFORM replyx_notify_access_change('');
  RETURN NULL;
END
$$;

CREATE TRIGGER replyx_dialogs_access_truncate AFTER TRUNCATE ON dialogs
FOR EACH STATEMENT EXECUTE FUNCTION replyx_access_truncated();
CREATE TRIGGER replyx_assistants_access_truncate AFTER TRUNCATE ON assistants
FOR EACH STATEMENT EXECUTE FUNCTION replyx_access_truncated();
CREATE TRIGGER replyx_site_token_revocations_access_truncate AFTER TRUNCATE ON site_token_revocations
FOR EACH STATEMENT EXECUTE FUNCTION replyx_access_truncated();
