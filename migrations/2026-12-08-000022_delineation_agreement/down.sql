CREATE OR REPLACE FUNCTION mart.build(p_all boolean) RETURNS void
LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_name  text;
    v_big   boolean := p_all OR (SELECT count(*) FROM mart.refresh_scope) > 1000;
    v_citus boolean := EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'citus');
BEGIN
    FOREACH v_name IN ARRAY ARRAY['diagnosis', 'tumour_fact', 'systemic_therapy', 'surgery',
        'first_treatment', 'breast_cancer_patient', 'receptor_status', 'subtype',
        'neoadjuvant_treatment', 'pathologic_response', 'recurrence_event', 'recurrence',
        'radiotherapy', 'modeling_cohort', 'rt_structure_set', 'disease_status'] LOOP
        IF p_all THEN
            EXECUTE format('DELETE FROM mart.%I', v_name);
        ELSE
            EXECUTE format('DELETE FROM mart.%I t USING mart.refresh_scope s WHERE t.person_id = s.person_id', v_name);
        END IF;
        IF v_citus THEN
            EXECUTE format('WITH s AS MATERIALIZED (SELECT * FROM mart.%I) INSERT INTO mart.%I SELECT * FROM s',
                           v_name || '_src', v_name);
        ELSE
            EXECUTE format('INSERT INTO mart.%I SELECT * FROM mart.%I', v_name, v_name || '_src');
        END IF;
        IF v_big THEN
            EXECUTE format('ANALYZE mart.%I', v_name);
        END IF;
    END LOOP;
END $$;
REVOKE ALL ON FUNCTION mart.build(boolean) FROM PUBLIC;
DROP TABLE mart.catalog;
DROP VIEW research.delineation_agreement;
DROP TABLE mart.delineation_agreement;
DROP VIEW mart.delineation_agreement_src;
DROP VIEW research.rt_structure_set;
ALTER TABLE mart.rt_structure_set DROP COLUMN guideline_era;
DROP VIEW mart.rt_structure_set_src;
CREATE VIEW mart.rt_structure_set_src AS
WITH f AS (
    SELECT f.image_feature_id, f.person_id, f.image_occurrence_id, f.alg_system::jsonb AS a
      FROM mart.refresh_scope sc
      JOIN cdm.image_feature f ON f.person_id = sc.person_id
      JOIN research.concept_set cs ON cs.role = 'rt_structure_roi' AND cs.concept_id = f.image_feature_concept_id
)
SELECT f.image_feature_id,
       f.person_id,
       o.image_series_uid                              AS structure_set_series_uid,
       f.a ->> 'observer'                              AS observer,
       (f.a ->> 'structure_set_date')::date            AS structure_set_date,
       extract(year FROM (f.a ->> 'structure_set_date')::date)::int AS year,
       (f.a ->> 'structure_set_date')::date < DATE '2016-01-01' AS before_2016,
       f.a ->> 'roi_name'                              AS roi_name,
       f.a ->> 'tg263'                                 AS tg263_name,
       f.a ->> 'roi_type'                              AS roi_type,
       (f.a ->> 'volume_cc')::numeric                  AS volume_cc,
       (f.a ->> 'contour_slices')::int                 AS contour_slices,
       f.a ->> 'referenced_ct_series'                  AS referenced_ct_series
  FROM f
  JOIN cdm.image_occurrence o ON o.image_occurrence_id = f.image_occurrence_id
                           AND o.person_id = f.person_id;
CREATE VIEW research.rt_structure_set WITH (security_barrier = true) AS SELECT * FROM mart.rt_structure_set;
DELETE FROM research.concept_role WHERE role = 'delineation_agreement';
