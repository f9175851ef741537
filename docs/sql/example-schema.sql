-- pgcordon example schema: tenant isolation enforced by PostgreSQL row-level security.
--
-- pgcordon sets app.current_user_id on every backend session to the identity read from the
-- client's certificate. The policies below read it with NULLIF(..., '') so that a session with
-- no identity (the setting unset, or reset to the empty string) matches no rows and cannot
-- insert any: the policy fails closed.
--
-- Run as the table owner (a superuser in the demo). The application role pgcordon connects as
-- (pgcordon_app here) must be neither the table owner nor BYPASSRLS; FORCE makes the policy
-- apply to the owner too.

CREATE TABLE IF NOT EXISTS documents (
    id         bigserial PRIMARY KEY,
    owner_id   text NOT NULL DEFAULT NULLIF(current_setting('app.current_user_id', true), ''),
    title      text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);

ALTER TABLE documents ENABLE ROW LEVEL SECURITY;
ALTER TABLE documents FORCE ROW LEVEL SECURITY;

DROP POLICY IF EXISTS tenant_isolation ON documents;
CREATE POLICY tenant_isolation ON documents
    USING (owner_id = NULLIF(current_setting('app.current_user_id', true), ''))
    WITH CHECK (owner_id = NULLIF(current_setting('app.current_user_id', true), ''));

GRANT SELECT, INSERT, UPDATE, DELETE ON documents TO pgcordon_app;
GRANT USAGE ON SEQUENCE documents_id_seq TO pgcordon_app;
