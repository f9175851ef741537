-- pgcordon tamper-proof identity: the database accepts an identity only with a proof that only
-- pgcordon can produce.
--
-- With `identity.proof` configured, pgcordon sets three settings on every backend session it
-- gives a client: app.current_user_id (the identity), app.identity_nonce (a fresh random value)
-- and app.identity_proof = hex(HMAC-SHA256(secret, identity || ':' || nonce)). The secret is the
-- text of pgcordon's `identity.proof.key_file`; the same text is stored below in a table the
-- application role cannot read. pgcordon_identity() recomputes the HMAC and returns the identity
-- only when it matches, so an identity changed by anything pgcordon cannot see (a function, a DO
-- block, dynamic SQL) verifies as nothing and the policies below return no rows.
--
-- Run as a superuser or the schema owner. Replace :'proof_key' with the secret, e.g.
--   psql -v proof_key="$(cat /run/secrets/pgcordon-proof-key)" -f tamper-proof.sql
-- The application role (pgcordon_app) must not own these objects nor have BYPASSRLS.

CREATE EXTENSION IF NOT EXISTS pgcrypto;

CREATE SCHEMA IF NOT EXISTS pgcordon_private;
REVOKE ALL ON SCHEMA pgcordon_private FROM PUBLIC;

CREATE TABLE IF NOT EXISTS pgcordon_private.proof_key (
    singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    secret    bytea NOT NULL
);
REVOKE ALL ON pgcordon_private.proof_key FROM PUBLIC;
INSERT INTO pgcordon_private.proof_key (secret)
    VALUES (convert_to(:'proof_key', 'UTF8'))
    ON CONFLICT (singleton) DO UPDATE SET secret = EXCLUDED.secret;

-- Returns the verified identity, or NULL. SECURITY DEFINER so it can read the key; a fixed
-- search_path so a caller's objects cannot stand in for pgcrypto or the key table.
CREATE OR REPLACE FUNCTION public.pgcordon_identity() RETURNS text
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pgcordon_private
AS $$
DECLARE
    identity text := NULLIF(current_setting('app.current_user_id', true), '');
    nonce    text := NULLIF(current_setting('app.identity_nonce', true), '');
    proof    text := NULLIF(current_setting('app.identity_proof', true), '');
    key      bytea;
BEGIN
    IF identity IS NULL OR nonce IS NULL OR proof IS NULL THEN
        RETURN NULL;
    END IF;
    SELECT secret INTO key FROM pgcordon_private.proof_key;
    IF key IS NULL THEN
        RETURN NULL;
    END IF;
    IF encode(public.hmac(convert_to(identity || ':' || nonce, 'UTF8'), key, 'sha256'), 'hex')
       = proof THEN
        RETURN identity;
    END IF;
    RETURN NULL;
END
$$;
REVOKE ALL ON FUNCTION public.pgcordon_identity() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION public.pgcordon_identity() TO pgcordon_app;

-- The example policy, verifying instead of trusting the setting. Fails closed: no identity, a
-- changed identity or a missing proof all match no row.
ALTER TABLE documents ALTER COLUMN owner_id SET DEFAULT public.pgcordon_identity();
DROP POLICY IF EXISTS tenant_isolation ON documents;
CREATE POLICY tenant_isolation ON documents
    USING (owner_id = public.pgcordon_identity())
    WITH CHECK (owner_id = public.pgcordon_identity());
