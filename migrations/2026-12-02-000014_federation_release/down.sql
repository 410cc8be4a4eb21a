-- Back to answers computed in SQL at every call (migration 2026-11-27-000008_federation).
DROP FUNCTION federation.release_info();
DROP FUNCTION federation.cohort_summary(text);
DROP FUNCTION federation.latest_release();
DROP TABLE federation.release_summary;
DROP TABLE federation.release;

-- Complementary cell suppression. p_counts are the cells; p_groups lists groups of cell
-- indexes (1-based) whose members are tied by a published sum (a one-way table with its total;
-- a row or column of a two-way table with its margin). Cells of 1 .. p_min - 1 are suppressed
-- (primary); then, while a group holds exactly one suppressed cell, the smallest unsuppressed
-- cell of that group (non-zero cells first) is suppressed too (complementary), so no
-- suppressed cell can be recovered by subtraction from its group's sum. Zero cells are
-- published.
CREATE FUNCTION registry.audit_append(p_action text, p_detail text, p_actor_os_user text)
RETURNS bigint
LANGUAGE sql VOLATILE SET search_path = pg_catalog, pg_temp AS $$
    SELECT a.seq FROM registry.audit_append(p_action, NULL::bigint, NULL::text, NULL::text,
                                            p_detail, p_actor_os_user) a
$$;
REVOKE ALL ON FUNCTION registry.audit_append(text, text, text) FROM PUBLIC;

CREATE FUNCTION federation.suppress(p_counts bigint[], p_groups jsonb, p_min integer)
RETURNS boolean[]
LANGUAGE plpgsql IMMUTABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_len     int := coalesce(array_length(p_counts, 1), 0);
    v_sup     boolean[] := array_fill(false, ARRAY[coalesce(array_length(p_counts, 1), 0)]);
    v_group   jsonb;
    v_idx     int[];
    v_nsup    int;
    v_pick    int;
    v_changed boolean;
BEGIN
    FOR i IN 1 .. v_len LOOP
        v_sup[i] := p_counts[i] BETWEEN 1 AND p_min - 1;
    END LOOP;
    LOOP
        v_changed := false;
        FOR v_group IN SELECT value FROM jsonb_array_elements(p_groups) LOOP
            v_idx := ARRAY(SELECT x::int FROM jsonb_array_elements_text(v_group) x);
            SELECT count(*) INTO v_nsup FROM unnest(v_idx) i WHERE v_sup[i];
            IF v_nsup = 1 THEN
                SELECT i INTO v_pick FROM unnest(v_idx) i WHERE NOT v_sup[i]
                 ORDER BY p_counts[i] = 0, p_counts[i], i LIMIT 1;
                IF v_pick IS NOT NULL THEN
                    v_sup[v_pick] := true;
                    v_changed := true;
                END IF;
            END IF;
        END LOOP;
        EXIT WHEN NOT v_changed;
    END LOOP;
    RETURN v_sup;
END $$;

CREATE OR REPLACE FUNCTION federation.cohorts() RETURNS TABLE (name text, description text)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
    SELECT c.name, c.description FROM federation.cohort c
     WHERE EXISTS (SELECT 1 FROM pg_catalog.pg_views v
                    WHERE v.schemaname = 'research' AND v.viewname = c.name)
     ORDER BY c.name
$$;
COMMENT ON FUNCTION federation.cohorts() IS 'The cohorts this node answers for.';

-- The aggregate summary of one askable cohort, with disclosure control applied inside.
CREATE FUNCTION federation.cohort_summary(p_cohort text) RETURNS jsonb
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_policy   federation.policy;
    v_version  text := federation.schema_version();
    v_profiles jsonb;
    v_cells    jsonb;
    v_groups   jsonb;
    v_counts   bigint[];
    v_sup      boolean[];
    v_tables   jsonb;
    v_raw      jsonb;
    v_stats    jsonb;
    v_nsup     int;
    v_seq      bigint;
    v_total    bigint;
BEGIN
    SELECT * INTO STRICT v_policy FROM federation.policy;
    IF NOT EXISTS (SELECT 1 FROM federation.cohorts() c WHERE c.name = p_cohort) THEN
        RAISE EXCEPTION 'no askable cohort "%"; federation.cohorts() lists them', p_cohort
            USING ERRCODE = 'invalid_parameter_value';
    END IF;

    -- One row per combination of the stratifying categories, with its patient count.
    EXECUTE format($q$
        SELECT coalesce(jsonb_agg(jsonb_build_object('p', p, 'n', n)), '[]'::jsonb) FROM (
            SELECT jsonb_build_object(
                     'subtype', coalesce(subtype, 'unknown'),
                     'age_band', CASE WHEN age_at_diagnosis IS NULL THEN 'unknown'
                                      WHEN age_at_diagnosis < 40 THEN '<40'
                                      WHEN age_at_diagnosis < 50 THEN '40-49'
                                      WHEN age_at_diagnosis < 60 THEN '50-59'
                                      WHEN age_at_diagnosis < 70 THEN '60-69'
                                      ELSE '70+' END,
                     'diagnosis_year', coalesce(diagnosis_year::text, 'unknown'),
                     'pcr', CASE WHEN NOT coalesce(neoadjuvant, false) THEN 'no neoadjuvant'
                                 WHEN pcr THEN 'pCR' WHEN NOT pcr THEN 'non-pCR'
                                 ELSE 'unknown' END,
                     'recurrence', CASE WHEN rfs_event THEN 'event'
                                        WHEN NOT rfs_event THEN 'no event'
                                        ELSE 'unknown' END) AS p,
                   count(*) AS n
              FROM research.%I GROUP BY 1) x $q$, p_cohort) INTO v_profiles;

    -- The cells of every table, in output order, with their counts (zeros included).
    WITH prof AS (
        SELECT e -> 'p' AS p, (e ->> 'n')::bigint AS n FROM jsonb_array_elements(v_profiles) e
    ), cat(dim, val, ord) AS (
        SELECT 'subtype', v, o FROM unnest(ARRAY['luminal_a', 'luminal_b_her2neg',
               'luminal_b_her2pos', 'luminal_unknown', 'her2_enriched', 'tnbc', 'unknown'])
               WITH ORDINALITY u(v, o)
        UNION ALL
        SELECT 'age_band', v, o FROM unnest(ARRAY['<40', '40-49', '50-59', '60-69', '70+',
               'unknown']) WITH ORDINALITY u(v, o)
        UNION ALL
        SELECT 'diagnosis_year', v, row_number() OVER (ORDER BY v)
          FROM (SELECT DISTINCT p ->> 'diagnosis_year' AS v FROM prof) y
        UNION ALL
        SELECT 'pcr', v, o FROM unnest(ARRAY['pCR', 'non-pCR', 'unknown', 'no neoadjuvant'])
               WITH ORDINALITY u(v, o)
        UNION ALL
        SELECT 'recurrence', v, o FROM unnest(ARRAY['event', 'no event', 'unknown'])
               WITH ORDINALITY u(v, o)
    ), tabs(t_ord, tab, d1, d2) AS (VALUES
        (1, 'total', NULL::text, NULL::text),
        (2, 'subtype', 'subtype', NULL),
        (3, 'age_band', 'age_band', NULL),
        (4, 'diagnosis_year', 'diagnosis_year', NULL),
        (5, 'pcr', 'pcr', NULL),
        (6, 'recurrence', 'recurrence', NULL),
        (7, 'subtype_by_pcr', 'subtype', 'pcr'),
        (8, 'subtype_by_recurrence', 'subtype', 'recurrence')
    ), cells AS (
        SELECT row_number() OVER (ORDER BY t.t_ord, c1.ord, c2.ord) AS i, t.tab, t.d1, t.d2,
               CASE WHEN t.d1 IS NULL THEN '{}'::jsonb
                    WHEN t.d2 IS NULL THEN jsonb_build_object(t.d1, c1.val)
                    ELSE jsonb_build_object(t.d1, c1.val, t.d2, c2.val) END AS key
          FROM tabs t
          LEFT JOIN cat c1 ON c1.dim = t.d1
          LEFT JOIN cat c2 ON c2.dim = t.d2
         WHERE (t.d1 IS NULL OR c1.val IS NOT NULL) AND (t.d2 IS NULL OR c2.val IS NOT NULL)
    )
    SELECT jsonb_agg(jsonb_build_object(
               'i', c.i, 'table', c.tab, 'd1', c.d1, 'd2', c.d2, 'key', c.key,
               'n', (SELECT coalesce(sum(pr.n), 0) FROM prof pr WHERE pr.p @> c.key))
             ORDER BY c.i)
      INTO v_cells FROM cells c;

    -- The groups tied by a published sum.
    WITH c AS (
        SELECT (e ->> 'i')::int AS i, e ->> 'table' AS tab, e ->> 'd1' AS d1, e ->> 'd2' AS d2,
               e -> 'key' AS key
          FROM jsonb_array_elements(v_cells) e
    ), members(g, i) AS (
        SELECT c.tab, c.i FROM c WHERE c.d1 IS NOT NULL AND c.d2 IS NULL
        UNION
        SELECT c.tab, tot.i FROM c JOIN c tot ON tot.tab = 'total'
         WHERE c.d1 IS NOT NULL AND c.d2 IS NULL
        UNION
        SELECT c.tab || ':' || c.d1 || '=' || (c.key ->> c.d1), c.i FROM c WHERE c.d2 IS NOT NULL
        UNION
        SELECT c.tab || ':' || c.d1 || '=' || (c.key ->> c.d1), m.i
          FROM c JOIN c m ON m.key = jsonb_build_object(c.d1, c.key ->> c.d1)
         WHERE c.d2 IS NOT NULL
        UNION
        SELECT c.tab || ':' || c.d2 || '=' || (c.key ->> c.d2), c.i FROM c WHERE c.d2 IS NOT NULL
        UNION
        SELECT c.tab || ':' || c.d2 || '=' || (c.key ->> c.d2), m.i
          FROM c JOIN c m ON m.key = jsonb_build_object(c.d2, c.key ->> c.d2)
         WHERE c.d2 IS NOT NULL
    )
    SELECT coalesce(jsonb_agg(ix ORDER BY g), '[]'::jsonb) INTO v_groups
      FROM (SELECT g, jsonb_agg(i ORDER BY i) AS ix FROM members GROUP BY g) x;

    SELECT array_agg((e ->> 'n')::bigint ORDER BY (e ->> 'i')::int) INTO v_counts
      FROM jsonb_array_elements(v_cells) e;
    v_sup := federation.suppress(v_counts, v_groups, v_policy.min_cell);
    v_nsup := (SELECT count(*) FROM unnest(v_sup) s WHERE s);
    v_total := CASE WHEN v_sup[1] THEN NULL ELSE v_counts[1] END;

    SELECT jsonb_agg(jsonb_build_object('name', tab, 'dimensions', dims, 'cells', cells)
                     ORDER BY first_i)
      INTO v_tables
      FROM (SELECT e ->> 'table' AS tab, min((e ->> 'i')::int) AS first_i,
                   to_jsonb(array_remove(ARRAY[min(e ->> 'd1'), min(e ->> 'd2')], NULL)) AS dims,
                   jsonb_agg(jsonb_build_object(
                       'key', e -> 'key',
                       'n', CASE WHEN v_sup[(e ->> 'i')::int] THEN NULL ELSE e -> 'n' END,
                       'suppressed', v_sup[(e ->> 'i')::int])
                     ORDER BY (e ->> 'i')::int) AS cells
              FROM jsonb_array_elements(v_cells) e GROUP BY 1) t;

    -- Quartiles and means of age at diagnosis and of recurrence-free time, overall and per
    -- subtype; published only where the stratum's cell is published and holds at least
    -- min_cell values.
    EXECUTE format($q$
        SELECT coalesce(jsonb_agg(jsonb_build_object(
                   'variable', var, 'stratum', stratum, 'n', n, 'mean', round(mean, 1),
                   'q1', round(q[1]::numeric, 1), 'median', round(q[2]::numeric, 1),
                   'q3', round(q[3]::numeric, 1)) ORDER BY var, stratum), '[]'::jsonb)
          FROM (
            SELECT 'age_at_diagnosis' AS var,
                   CASE WHEN grouping(st) = 1 THEN '{}'::jsonb
                        ELSE jsonb_build_object('subtype', st) END AS stratum,
                   count(v) AS n, avg(v) AS mean,
                   percentile_cont(ARRAY[0.25, 0.5, 0.75]) WITHIN GROUP (ORDER BY v) AS q
              FROM (SELECT coalesce(subtype, 'unknown') AS st, age_at_diagnosis AS v
                      FROM research.%1$I) a
             GROUP BY GROUPING SETS ((), (st))
            UNION ALL
            SELECT 'rfs_days',
                   CASE WHEN grouping(st) = 1 THEN '{}'::jsonb
                        ELSE jsonb_build_object('subtype', st) END,
                   count(v), avg(v),
                   percentile_cont(ARRAY[0.25, 0.5, 0.75]) WITHIN GROUP (ORDER BY v)
              FROM (SELECT coalesce(subtype, 'unknown') AS st, rfs_days AS v
                      FROM research.%1$I) a
             GROUP BY GROUPING SETS ((), (st))
          ) x $q$, p_cohort) INTO v_raw;

    SELECT coalesce(jsonb_agg(
               CASE WHEN (s ->> 'n')::bigint >= v_policy.min_cell
                         AND NOT coalesce((SELECT v_sup[(c ->> 'i')::int]
                                             FROM jsonb_array_elements(v_cells) c
                                            WHERE c -> 'key' = s -> 'stratum'), true)
                    THEN s
                    ELSE jsonb_build_object('variable', s -> 'variable', 'stratum', s -> 'stratum',
                                            'suppressed', true) END), '[]'::jsonb)
      INTO v_stats FROM jsonb_array_elements(v_raw) s;

    v_seq := registry.audit_append(
        'federated query',
        format('{"cohort":%s,"min_cell":%s,"node_id":%s,"policy":"minimum cell size with complementary suppression","published_cells":%s,"schema_version":%s,"suppressed_cells":%s}',
               to_json(p_cohort)::text, v_policy.min_cell, to_json(v_policy.node_id)::text,
               coalesce(array_length(v_sup, 1), 0) - v_nsup, to_json(v_version)::text, v_nsup),
        'database client ' || coalesce(host(inet_client_addr()), 'on a local socket'));

    RETURN jsonb_build_object(
        'format', 'registrar-federation-summary-v1',
        'node_id', v_policy.node_id,
        'schema_version', v_version,
        'cohort', p_cohort,
        'generated_at', to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"'),
        'policy', jsonb_build_object(
            'name', 'minimum cell size with complementary suppression',
            'min_cell', v_policy.min_cell,
            'audit_seq', v_seq),
        'n', v_total,
        'tables', coalesce(v_tables, '[]'::jsonb),
        'statistics', v_stats);
END $$;
COMMENT ON FUNCTION federation.cohort_summary(text) IS
    'Aggregate summary of an askable cohort: counts by subtype, age band, diagnosis year, pCR and recurrence (and subtype by pCR and by recurrence), quartiles of age and recurrence-free days; cells below the node''s minimum are suppressed with complementary suppression; every call is written to the audit log.';

REVOKE ALL ON FUNCTION federation.suppress(bigint[], jsonb, integer) FROM PUBLIC;
REVOKE ALL ON FUNCTION federation.cohorts() FROM PUBLIC;
REVOKE ALL ON FUNCTION federation.cohort_summary(text) FROM PUBLIC;
