-- Locks only registrar can take, audit appends only through one function, views that do not
-- leak to a caller's functions.
--
-- Locks. Advisory locks are open to every role that can connect, so a researcher taking the
-- nightly's key could stop every night. registrar now locks tables instead, in modes that need
-- UPDATE, DELETE or TRUNCATE on the table (PostgreSQL's rule for LOCK TABLE beyond ACCESS SHARE
-- and ROW EXCLUSIVE), which only the ETL role (and the audit owner) have:
--   - the nightly holds EXCLUSIVE on registry.run_lock for its whole run (NOWAIT: a second run
--     exits at once, naming the holder);
--   - an import unit holds SHARE ROW EXCLUSIVE on registry.person_map while it resolves and
--     adds persons;
--   - an audit append holds EXCLUSIVE on registry.audit_log (taken inside
--     registry.audit_append, below) until its transaction ends;
--   - migrations hold SHARE UPDATE EXCLUSIVE on public.__diesel_schema_migrations.
-- Plain readers (ACCESS SHARE) never conflict with these modes.
CREATE TABLE registry.run_lock ();
COMMENT ON TABLE registry.run_lock IS
    'No rows: the nightly run holds an EXCLUSIVE lock on it while it runs.';

-- The origin line of this registry's signed audit checkpoints (C2SP tlog-checkpoint): a
-- random id made once, so checkpoints of two registries can never be mistaken for each other.
CREATE TABLE registry.audit_origin (
    singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    origin    text    NOT NULL
);
INSERT INTO registry.audit_origin (origin)
VALUES ('registrar-audit/' || replace(gen_random_uuid()::text, '-', ''));

-- The one way to append to the audit log. It takes the lock, reads the head, and computes the
-- sequence number, the time, the database role (session_user: the login, not the function's
-- owner) and the registrar-audit-v1 hash itself; the caller supplies only what the entry says.
-- After `registrar roles apply` it is owned by registrar_audit_owner (which owns the log) and
-- executable by the ETL role; nobody else may INSERT into registry.audit_log.
CREATE FUNCTION registry.audit_append(p_action text, p_run_id bigint, p_locator_hash text,
                                      p_key_id text, p_detail text, p_actor_os_user text)
RETURNS TABLE (seq bigint, entry_hash text)
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_seq  bigint;
    v_prev text;
    v_at   timestamptz := date_trunc('microseconds', clock_timestamp());
    v_role text := session_user;
    v_hash text;
BEGIN
    IF p_action IS NULL OR p_detail IS NULL OR p_actor_os_user IS NULL THEN
        RAISE EXCEPTION 'an audit entry needs an action, a detail and an actor'
            USING ERRCODE = 'null_value_not_allowed';
    END IF;
    LOCK TABLE registry.audit_log IN EXCLUSIVE MODE;
    SELECT l.seq, l.entry_hash INTO v_seq, v_prev
      FROM registry.audit_log l ORDER BY l.seq DESC LIMIT 1;
    IF NOT FOUND THEN
        v_seq := 0;
        v_prev := repeat('0', 64);
    END IF;
    v_seq := v_seq + 1;
    v_hash := encode(sha256(
           registry.audit_field('registrar-audit-v1')
        || registry.audit_field(v_seq::text)
        || registry.audit_field(to_char(v_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'))
        || registry.audit_field(p_actor_os_user)
        || registry.audit_field(v_role)
        || registry.audit_field(p_action)
        || CASE WHEN p_run_id IS NULL THEN '\x00'::bytea
                ELSE '\x01'::bytea || registry.audit_field(p_run_id::text) END
        || CASE WHEN p_locator_hash IS NULL THEN '\x00'::bytea
                ELSE '\x01'::bytea || registry.audit_field(p_locator_hash) END
        || CASE WHEN p_key_id IS NULL THEN '\x00'::bytea
                ELSE '\x01'::bytea || registry.audit_field(p_key_id) END
        || registry.audit_field(p_detail)
        || registry.audit_field(v_prev)), 'hex');
    INSERT INTO registry.audit_log (seq, logged_at, actor_os_user, actor_db_role, action, run_id,
                                    locator_hash, key_id, detail, prev_hash, entry_hash)
    VALUES (v_seq, v_at, p_actor_os_user, v_role, p_action, p_run_id, p_locator_hash, p_key_id,
            p_detail, v_prev, v_hash);
    seq := v_seq;
    entry_hash := v_hash;
    RETURN NEXT;
END $$;
REVOKE ALL ON FUNCTION registry.audit_append(text, bigint, text, text, text, text) FROM PUBLIC;
COMMENT ON FUNCTION registry.audit_append(text, bigint, text, text, text, text) IS
    'The only way to append to registry.audit_log: computes seq, time, role and hash itself.';

-- The federation's three-argument form (used by federation.cohort_summary) now goes through it.
CREATE OR REPLACE FUNCTION registry.audit_append(p_action text, p_detail text, p_actor_os_user text)
RETURNS bigint
LANGUAGE sql VOLATILE SET search_path = pg_catalog, pg_temp AS $$
    SELECT a.seq FROM registry.audit_append(p_action, NULL::bigint, NULL::text, NULL::text,
                                            p_detail, p_actor_os_user) a
$$;
REVOKE ALL ON FUNCTION registry.audit_append(text, text, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION registry.audit_field(text) FROM PUBLIC;

-- Research views are security barriers: a caller's function in a WHERE clause never sees the
-- rows a view's own conditions hide. (`registrar roles apply` sets it on views added later.)
DO $$
DECLARE v record;
BEGIN
    FOR v IN SELECT c.oid::regclass AS name FROM pg_class c
              JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE n.nspname = 'research' AND c.relkind = 'v' LOOP
        EXECUTE format('ALTER VIEW %s SET (security_barrier = true)', v.name);
    END LOOP;
END $$;

-- A nightly run's report is written after its run record is finished; a run killed in
-- between has no report, and the next run reports it (like a run killed earlier).
ALTER TABLE registry.import_run ADD COLUMN reported_at timestamptz;
UPDATE registry.import_run SET reported_at = finished_at
 WHERE command = 'nightly' AND status <> 'running';
