-- The one relation the ws-gateway reads to authorise a connection: who owns a dialog and where
-- its widget may be embedded. Other backends define the same view over their own schema.
CREATE VIEW replyx_dialog_access AS
SELECT d.id::bigint AS dialog_id,
       a.id::bigint AS assistant_id,
       a.user_id::bigint AS user_id,
       a.allowed_domains::text[] AS allowed_domains
FROM dialogs d
JOIN assistants a ON a.id = d.assistant_id;
