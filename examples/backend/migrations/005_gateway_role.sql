-- The ws-gateway's own database role: it reads the two views and nothing else (issue 12, least
-- privilege). A view runs with its owner's rights, so SELECT on the views is all the gateway
-- needs; it gets no right on any table, so a leaked gateway credential cannot read messages or
-- users, nor write anything. The role starts without LOGIN: the backend gives it one with
-- GATEWAY_DATABASE_PASSWORD at start (examples/backend/src/main.ts). Roles are cluster-wide and
-- several databases (stacks, tests) may create it at once, so creating an existing one is fine.
DO $$
BEGIN
  CREATE ROLE replyx_gateway NOLOGIN;
EXCEPTION
  WHEN duplicate_object OR unique_violation THEN NULL;
END
$$;
REVOKE ALL ON ALL TABLES IN SCHEMA public FROM replyx_gateway;
GRANT SELECT ON replyx_dialog_access, replyx_revoked_site_tokens TO replyx_gateway;
