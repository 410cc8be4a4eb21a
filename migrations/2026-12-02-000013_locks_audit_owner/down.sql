ALTER TABLE registry.import_run DROP COLUMN reported_at;
DO $$
DECLARE v record;
BEGIN
    FOR v IN SELECT c.oid::regclass AS name FROM pg_class c
              JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE n.nspname = 'research' AND c.relkind = 'v' LOOP
        EXECUTE format('ALTER VIEW %s RESET (security_barrier)', v.name);
    END LOOP;
END $$;
CREATE OR REPLACE FUNCTION registry.audit_append(p_action text, p_detail text, p_actor_os_user text)
RETURNS bigint
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_seq  bigint;
    v_prev text;
    v_at   timestamptz := date_trunc('microseconds', clock_timestamp());
    v_role text := session_user;
    v_hash text;
BEGIN
    PERFORM pg_advisory_xact_lock(8243108361250564468);
    SELECT seq, entry_hash INTO v_seq, v_prev FROM registry.audit_log ORDER BY seq DESC LIMIT 1;
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
        || '\x000000'::bytea
        || registry.audit_field(p_detail)
        || registry.audit_field(v_prev)), 'hex');
    INSERT INTO registry.audit_log (seq, logged_at, actor_os_user, actor_db_role, action, run_id,
                                    locator_hash, key_id, detail, prev_hash, entry_hash)
    VALUES (v_seq, v_at, p_actor_os_user, v_role, p_action, NULL, NULL, NULL, p_detail, v_prev,
            v_hash);
    RETURN v_seq;
END $$;
DROP FUNCTION registry.audit_append(text, bigint, text, text, text, text);
DROP TABLE registry.audit_origin;
DROP TABLE registry.run_lock;
